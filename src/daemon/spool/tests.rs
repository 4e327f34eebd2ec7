//! The spool against real files in a temporary directory: rows read back, framing, recovery.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::executor::line_batch::LineBatch;

fn row(n: usize) -> LogRow {
    LogRow {
        time: Some((UNIX_EPOCH + Duration::from_secs(n as u64)).into()),
        content: format!("line {n}"),
    }
}

fn record(task_id: i64) -> SpoolRecord {
    SpoolRecord {
        job: TaskReport::new(task_id),
        acked_rows: 0,
        acked_bytes: 0,
        log_finished: false,
        deliver_until: UNIX_EPOCH,
    }
}

/// Appends row 3, then reads every row from byte `from`: where delivery goes on after a restart.
fn append_and_read_from(spool: &mut TaskSpool, from: u64) -> Vec<LogRow> {
    spool.append(&row(3)).unwrap();
    spool.flush().unwrap();
    let mut window = Window::default();
    window
        .read(&spool.reader(), from, spool.bytes(), 1 << 20)
        .unwrap();
    decoded(&window)
}

fn decoded(window: &Window) -> Vec<LogRow> {
    window
        .rows()
        .map(|(bytes, _)| LogRow::decode(bytes).unwrap())
        .collect()
}

#[test]
fn rows_read_back_in_windows_of_whole_rows() {
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    let mut spool = root.create(&record(5)).unwrap();
    for n in 0..10_000 {
        spool.append(&row(n)).unwrap();
    }
    spool.flush().unwrap();
    let reader = spool.reader();
    let mut window = Window::default();
    let (mut from, mut n_read, mut n_windows) = (0u64, 0usize, 0);
    while from < spool.bytes() {
        window
            .read(&reader, from, spool.bytes(), 16 * 1024)
            .unwrap();
        let rows = decoded(&window);
        assert!(!rows.is_empty());
        for (offset, row_read) in rows.iter().enumerate() {
            assert_eq!(*row_read, row(n_read + offset));
        }
        let ends: Vec<u64> = window.rows().map(|(_, end)| end).collect();
        assert!(*ends.last().unwrap() - from <= 16 * 1024);
        assert_eq!(
            seek_row(
                &reader,
                n_read as u64,
                from,
                (n_read + 1) as u64,
                spool.bytes()
            )
            .unwrap(),
            ends[0]
        );
        n_read += rows.len();
        from = *ends.last().unwrap();
        n_windows += 1;
    }
    assert_eq!(n_read, 10_000);
    assert!(n_windows < 30, "{n_windows} windows");
    assert_eq!(
        seek_row(&reader, 0, 0, 10_000, spool.bytes()).unwrap(),
        spool.bytes()
    );
}

#[test]
fn the_rows_that_fit_never_pass_the_space_and_fill_it_to_within_one_row() {
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    let mut spool = root.create(&record(10)).unwrap();
    // Rows from empty to the longest the reporter spools (64 KiB of content), in a mix.
    let sizes = [0, 1, 100, 127, 128, 16_383, 16_384, 65_536, 300];
    for n in 0..2000 {
        spool
            .append(&LogRow {
                time: Some(UNIX_EPOCH.into()),
                content: "x".repeat(sizes[n % sizes.len()]),
            })
            .unwrap();
    }
    spool.flush().unwrap();
    let (reader, end) = (spool.reader(), spool.bytes());
    // As the sender reads: a window as large as a request, the space a little less (the header).
    let (window_bytes, space) = (1 << 20, (1 << 20) - 20);
    let mut window = Window::default();
    let (mut from, mut row, mut n_requests) = (0, 0, 0);
    while from < end {
        window.read(&reader, from, end, window_bytes).unwrap();
        let fit = window.fitting(space, None);
        // Counting on from any boundary the window holds gives the same, and one past the space
        // is ignored (a half space has many past it).
        let half = window.fitting(space / 2, None);
        for (n_rows, (_, bytes)) in window.rows().enumerate() {
            let known = Some(Known {
                rows: n_rows + 1,
                bytes,
            });
            assert_eq!(window.fitting(space, known), fit, "request {n_requests}");
            assert_eq!(
                window.fitting(space / 2, known),
                half,
                "request {n_requests}"
            );
        }
        assert!(fit.n_rows > 0);
        assert!(fit.end - from <= space as u64, "request {n_requests}");
        assert_eq!(window.framed_until(fit.end).len() as u64, fit.end - from);
        row += fit.n_rows as u64;
        if fit.end < end {
            // Full, the window cut through the next row or not: that row would not have fit.
            assert!(fit.full, "request {n_requests}");
            let next_end = seek_row(&reader, row, fit.end, row + 1, end).unwrap();
            assert!(next_end - from > space as u64, "request {n_requests}");
        } else {
            assert!(!fit.full);
        }
        from = fit.end;
        n_requests += 1;
    }
    assert_eq!(row, 2000);
    assert!(n_requests > 10, "{n_requests} requests");
}

#[test]
fn a_row_longer_than_the_window_is_read_whole_and_a_cut_one_is_an_error() {
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    let mut spool = root.create(&record(9)).unwrap();
    let long = LogRow {
        time: None,
        content: "y".repeat(5000),
    };
    spool.append(&long).unwrap();
    spool.append(&row(1)).unwrap();
    spool.flush().unwrap();
    let mut window = Window::default();
    window.read(&spool.reader(), 0, spool.bytes(), 100).unwrap();
    assert_eq!(decoded(&window), vec![long]);
    // The log ends inside the row (as if `end` were wrong): no row, an error.
    let error = window.read(&spool.reader(), 0, 2000, 100).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

/// Appends `lines` as a batch lays them out: one text, each line a span of it.
fn append_lines(spool: &mut TaskSpool, at: SystemTime, lines: &[&str]) {
    let batch: LineBatch = lines.iter().copied().collect();
    spool.append_lines(at, batch.text(), batch.spans()).unwrap();
}

#[test]
fn lines_are_spooled_exactly_as_prost_encodes_their_rows() {
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    let mut spool = root.create(&record(6)).unwrap();
    let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    // Every length where the row's or the content's length grows a varint byte is crossed: a
    // row of 127 bytes and one of 128, a content of 127 and 128, rows around 16,384 bytes.
    let sized: Vec<String> = (0..=200)
        .chain(16_350..=16_400)
        .map(|len| "x".repeat(len))
        .collect();
    let lines: Vec<&str> = ["one", "", "é ü"]
        .into_iter()
        .chain(sized.iter().map(String::as_str))
        .collect();
    append_lines(&mut spool, at, &lines);
    // The epoch's time field is 2 bytes, not 13: the short rows' limit moves with it.
    let epoch_lines: Vec<&str> = ["epoch", ""]
        .into_iter()
        .chain(sized.iter().take(201).map(String::as_str))
        .collect();
    append_lines(&mut spool, UNIX_EPOCH, &epoch_lines);
    let before_epoch = UNIX_EPOCH - Duration::new(5, 1);
    append_lines(&mut spool, before_epoch, &["negative seconds"]);
    spool.flush().unwrap();
    let mut expected = Vec::new();
    let rows = lines
        .iter()
        .map(|line| (at, *line))
        .chain(epoch_lines.iter().map(|line| (UNIX_EPOCH, *line)))
        .chain([(before_epoch, "negative seconds")])
        .map(|(time, content)| LogRow {
            time: Some(time.into()),
            content: content.to_string(),
        });
    for row in rows {
        frame::push_header(row.encoded_len(), &mut expected);
        expected.extend_from_slice(&row.encode_to_vec());
    }
    assert_eq!(fs::read(spool.dir().join("rows")).unwrap(), expected);
    let n_rows = (lines.len() + epoch_lines.len()) as u64 + 1;
    assert_eq!(
        (spool.rows(), spool.bytes()),
        (n_rows, expected.len() as u64)
    );
}

#[test]
fn recovery_cuts_a_torn_tail_and_keeps_the_record() {
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    let mut spool = root.create(&record(8)).unwrap();
    for n in 0..3 {
        spool.append(&row(n)).unwrap();
    }
    spool.flush().unwrap();
    let good_bytes = spool.bytes();
    let mut persisted = record(8);
    persisted.acked_rows = 1;
    persisted.acked_bytes = seek_row(&spool.reader(), 0, 0, 1, good_bytes).unwrap();
    spool.persist(&persisted).unwrap();
    drop(spool);
    // A crash in the middle of the next append.
    let mut log = OpenOptions::new()
        .append(true)
        .open(temp.path().join("spool/8/rows"))
        .unwrap();
    log.write_all(&[frame::ROW_KEY, 200, 1, 1, 2]).unwrap();
    drop(log);

    let recovered = root.recover().unwrap();
    assert_eq!(recovered.len(), 1);
    let (mut spool, back) = recovered.into_iter().next().unwrap();
    assert_eq!(back, persisted);
    assert_eq!((spool.rows(), spool.bytes()), (3, good_bytes));
    assert_eq!(
        append_and_read_from(&mut spool, back.acked_bytes),
        vec![row(1), row(2), row(3)]
    );
}

/// A record replaced without a sync (what a background persist writes) is read back whole and
/// private; after a machine crash it may claim rows that were never written back, and delivery
/// then starts over from the first row, Gitea's ack deciding what is sent again.
#[test]
fn a_replaced_record_is_whole_and_one_past_the_surviving_rows_starts_over() {
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    let mut spool = root.create(&record(9)).unwrap();
    for n in 0..3 {
        spool.append(&row(n)).unwrap();
    }
    spool.flush().unwrap();
    let mut replaced = record(9);
    replaced.acked_rows = 2;
    replaced.acked_bytes = seek_row(&spool.reader(), 0, 0, 2, spool.bytes()).unwrap();
    replace_record(spool.dir(), &replaced).unwrap();
    let dir = spool.dir().to_path_buf();
    let mode = fs::metadata(dir.join("state.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!dir.join("state.json.tmp").exists());
    drop(spool);
    let (_, back) = root.recover().unwrap().into_iter().next().unwrap();
    assert_eq!(back, replaced);

    // The machine went down before its last rows reached the disk: the second is torn.
    let rows = OpenOptions::new()
        .write(true)
        .open(dir.join("rows"))
        .unwrap();
    rows.set_len(replaced.acked_bytes - 1).unwrap();
    drop(rows);
    let (mut spool, back) = root.recover().unwrap().into_iter().next().unwrap();
    assert_eq!((back.acked_rows, back.acked_bytes), (0, 0));
    assert_eq!(spool.rows(), 1);
    assert_eq!(
        append_and_read_from(&mut spool, back.acked_bytes),
        vec![row(0), row(3)]
    );
}

#[test]
fn spool_files_are_private_and_removed_when_done() {
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    let spool = root.create(&record(1)).unwrap();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(spool.dir()), 0o700);
    assert_eq!(mode(&spool.dir().join("rows")), 0o600);
    assert_eq!(mode(&spool.dir().join("state.json")), 0o600);
    let dir = spool.dir().to_path_buf();
    spool.remove().unwrap();
    assert!(!dir.exists());
    assert!(root.recover().unwrap().is_empty());
}

#[test]
fn an_unreadable_state_is_skipped_not_deleted() {
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    let spool = root.create(&record(2)).unwrap();
    fs::write(spool.dir().join("state.json"), b"{not json").unwrap();
    assert!(root.recover().unwrap().is_empty());
    assert!(spool.dir().join("rows").exists());
}

#[test]
fn the_marks_appends_leave_are_row_boundaries_and_requests_counted_from_them_agree() {
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    let mut spool = root.create(&record(11)).unwrap();
    let mut text = String::new();
    for n in 0..3000 {
        text.push_str(&"z".repeat(n % 300));
        text.push('\n');
    }
    // Batches of 1 to 300 lines, as a step's output arrives.
    let spans: Vec<(usize, usize)> = text
        .split_inclusive('\n')
        .scan(0, |at, line| {
            let span = (*at, *at + line.len() - 1);
            *at += line.len();
            Some(span)
        })
        .collect();
    let mut start = 0;
    for size in (1..=300).cycle() {
        if start == spans.len() {
            break;
        }
        let batch = &spans[start..(start + size).min(spans.len())];
        spool
            .append_lines(UNIX_EPOCH, &text, batch.iter().copied())
            .unwrap();
        start += batch.len();
    }
    spool.flush().unwrap();
    let (reader, end) = (spool.reader(), spool.bytes());
    let space = 64 * 1024;
    let mut window = Window::default();
    let (mut from, mut row, mut n_marked, mut n_requests) = (0, 0, 0, 0);
    while from < end {
        n_requests += 1;
        window.read(&reader, from, end, space).unwrap();
        let mark = spool.row_mark(from, from + space as u64);
        let known = mark.map(|mark| {
            assert_eq!(seek_row(&reader, 0, 0, mark.rows, end).unwrap(), mark.bytes);
            n_marked += 1;
            Known {
                rows: (mark.rows - row) as usize,
                bytes: mark.bytes,
            }
        });
        let fit = window.fitting(space, known);
        assert_eq!(fit, window.fitting(space, None));
        row += fit.n_rows as u64;
        from = fit.end;
    }
    assert_eq!(row, 3000);
    // Batches are far smaller than a request: each request's space holds a mark.
    assert!(n_requests > 5, "{n_requests} requests");
    assert_eq!(n_marked, n_requests);
}
