//! Tests of building UpdateLog requests from encoded rows and of decoding them back.

use std::time::{Duration, UNIX_EPOCH};

use rand::{Rng, SeedableRng};

use super::decode::{is_plain_log_row, scan_plain};
use super::*;
use crate::client::proto::runner::LogRow;

fn row(n: usize, content_len: usize) -> LogRow {
    LogRow {
        time: Some((UNIX_EPOCH + Duration::new(1_700_000_000 + n as u64, 7)).into()),
        content: format!("{n:08}").repeat(content_len / 8 + 1)[..content_len].to_owned(),
    }
}

/// `rows` as request fields, one after the other (as the spool keeps them).
fn fields(rows: &[LogRow]) -> Vec<u8> {
    UpdateLogRequest {
        rows: rows.to_vec(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A request of `n_rows` rows starting at row `index`.
fn request_at(index: i64, n_rows: usize) -> EncodedUpdateLog {
    let mut buffer = BytesMut::new();
    let rows: Vec<LogRow> = (0..n_rows).map(|n| row(n, 8)).collect();
    let mut builder = EncodedUpdateLog::builder(&mut buffer, 1, index, 1 << 20);
    builder.push_fields(&fields(&rows), n_rows);
    builder.finish(false)
}

#[test]
fn gitea_appends_only_the_rows_past_what_it_holds_and_ignores_a_gap_or_a_repeat() {
    // Holding 5 rows: rows 3..8 overlap by two, 5..7 follow on, 6..8 leave a gap, 0..5 repeat.
    assert_eq!(request_at(3, 5).rows_already_held(5), Some(2));
    assert_eq!(request_at(5, 2).rows_already_held(5), Some(0));
    assert_eq!(request_at(6, 2).rows_already_held(5), None);
    assert_eq!(request_at(0, 5).rows_already_held(5), None);
    assert_eq!(request_at(5, 0).rows_already_held(5), None);
}

#[test]
fn space_left_keeps_bytes_for_no_more() {
    let rows: Vec<LogRow> = (0..30).map(|n| row(n, n * 3)).collect();
    let fields = fields(&rows);
    let mut buffer = BytesMut::new();
    let mut builder = EncodedUpdateLog::builder(&mut buffer, 9, 3, 1 << 20);
    let space = builder.space_left();
    builder.push_fields(&fields, rows.len());
    assert_eq!(builder.space_left(), space - fields.len());
    assert_eq!(builder.finish(true).n_rows(), rows.len());

    // Filling the space exactly still leaves space for `no_more` within the cap.
    let mut buffer = BytesMut::new();
    let mut builder = EncodedUpdateLog::builder(&mut buffer, 9, 3, 100);
    let space = builder.space_left();
    builder.push_fields(&vec![0; space], 0);
    assert_eq!(builder.space_left(), 0);
    assert_eq!(builder.finish(true).encode_to_vec().len(), 100);
}

#[test]
fn built_from_request_fields_it_is_byte_for_byte_the_generated_encoding() {
    let rows: Vec<LogRow> = (0..50).map(|n| row(n, n * 7)).collect();
    for (task_id, index, no_more) in [(42, 7, true), (0, 0, false), (-1, 1 << 40, true)] {
        let mut buffer = BytesMut::new();
        let mut builder = EncodedUpdateLog::builder(&mut buffer, task_id, index, 1 << 20);
        builder.push_fields(&fields(&rows), rows.len());
        let built = builder.finish(no_more);
        let generated = UpdateLogRequest {
            task_id,
            index,
            rows: rows.clone(),
            no_more,
        };
        assert_eq!(built.encode_to_vec(), generated.encode_to_vec());
        assert_eq!(built.encoded_len(), generated.encoded_len());
        assert_eq!(built.to_request().unwrap(), generated);
        assert_eq!(
            (
                built.task_id(),
                built.index(),
                built.n_rows(),
                built.no_more()
            ),
            (task_id, index, 50, no_more)
        );
        // Decoding gives the same message back (rows checked, not just copied).
        let decoded = EncodedUpdateLog::decode(generated.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, built);
        assert_eq!(EncodedUpdateLog::from(&generated), built);
        let rows_back: Vec<LogRow> = built
            .rows()
            .map(|row| LogRow::decode(row).unwrap())
            .collect();
        assert_eq!(rows_back, rows);
    }
}

#[test]
fn decoding_keeps_the_last_of_a_repeated_field_and_rejects_a_row_that_is_not_a_log_row() {
    let mut bytes = UpdateLogRequest {
        task_id: 5,
        index: 3,
        rows: vec![row(1, 3)],
        no_more: true,
    }
    .encode_to_vec();
    // task_id = 0 given explicitly after the rest, and an unknown field 9.
    bytes.extend_from_slice(&[0x08, 0x00, 0x48, 0x01]);
    let decoded = EncodedUpdateLog::decode(bytes.as_slice()).unwrap();
    assert_eq!((decoded.task_id(), decoded.index()), (0, 3));
    let request = decoded.to_request().unwrap();
    assert_eq!(request.task_id, 0);
    assert_eq!(request.rows, vec![row(1, 3)]);
    // Field 3 holding a varint-typed field 1 with a truncated value is no LogRow, nor is a
    // content that is not UTF-8; an unknown field inside a row is skipped, as prost does.
    assert!(EncodedUpdateLog::decode(&[0x1a, 0x02, 0x08, 0xff][..]).is_err());
    assert!(EncodedUpdateLog::decode(&[0x1a, 0x03, 0x12, 0x01, 0xff][..]).is_err());
    let odd = EncodedUpdateLog::decode(&[0x1a, 0x05, 0x12, 0x01, b'a', 0x18, 0x01][..]).unwrap();
    assert_eq!(odd.to_request().unwrap().rows[0].content, "a");
    assert_eq!(
        odd.rows().collect::<Vec<_>>(),
        [&[0x12, 0x01, b'a', 0x18, 0x01][..]]
    );
}

#[test]
fn the_in_place_row_check_accepts_what_prost_writes_and_nothing_prost_rejects() {
    let rows = [
        row(1, 0),
        row(2, 200),
        LogRow::default(),
        LogRow {
            time: Some(prost_types::Timestamp {
                seconds: -1,
                nanos: 999_999_999,
            }),
            content: "é ü \u{1f600}".to_owned(),
        },
        LogRow {
            time: Some(prost_types::Timestamp::default()),
            content: "x".repeat(70_000),
        },
    ];
    for row in &rows {
        assert!(is_plain_log_row(&row.encode_to_vec()), "{row:?}");
    }
    // A 10-byte varint above 2^64 - 1 in the seconds: prost refuses it, so must the check.
    let too_big = [
        0x0a, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
    ];
    assert!(LogRow::decode(&too_big[..]).is_err());
    assert!(!is_plain_log_row(&too_big));
    // Whatever it accepts, prost decodes: random mutations of real rows.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut bytes = rows[rng.random_range(0..3)].encode_to_vec();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bytes.len().max(1));
            match rng.random_range(0..3) {
                0 if !bytes.is_empty() => bytes[at] = rng.random(),
                1 => bytes.insert(at.min(bytes.len()), rng.random()),
                _ => bytes.truncate(at),
            }
        }
        if is_plain_log_row(&bytes) {
            accepted += 1;
            assert!(LogRow::decode(bytes.as_slice()).is_ok(), "{bytes:?}");
        }
    }
    assert!(accepted > 100, "{accepted} accepted");
}

#[test]
fn a_reused_buffer_gives_each_request_the_same_memory_once_the_last_one_is_dropped() {
    let mut buffer = BytesMut::new();
    let encoded = fields(&[row(1, 10)]);
    let mut first_address = None;
    for _ in 0..3 {
        let mut builder = EncodedUpdateLog::builder(&mut buffer, 1, 0, 64 * 1024);
        builder.push_fields(&encoded, 1);
        let body = builder.finish(false).into_body();
        let address = body.as_ptr();
        assert_eq!(*first_address.get_or_insert(address), address);
        drop(body);
    }
}

#[test]
fn a_body_decodes_in_place_to_what_the_generic_decoding_gives() {
    let rows: Vec<LogRow> = (0..40).map(|n| row(n, n * 3)).collect();
    let generated = UpdateLogRequest {
        task_id: 42,
        index: 9,
        rows,
        no_more: true,
    };
    let body = Bytes::from(generated.encode_to_vec());
    let address = body.as_ptr();
    let decoded = EncodedUpdateLog::decode_body(body).unwrap();
    assert_eq!(decoded, EncodedUpdateLog::from(&generated));
    assert_eq!(decoded.to_request().unwrap(), generated);
    assert_eq!(
        decoded.into_body().as_ptr(),
        address,
        "a body nothing else holds is kept, not copied"
    );

    // Anything else goes through the generic decoding: an unknown field, a row with one, a
    // repeated field, a content that is no UTF-8, a truncated row.
    let mut unknown = generated.encode_to_vec();
    unknown.extend_from_slice(&[0x48, 0x01, 0x08, 0x00]);
    let odd_row = [0x1a, 0x05, 0x12, 0x01, b'a', 0x18, 0x01];
    let bad_utf8 = [0x1a, 0x03, 0x12, 0x01, 0xff];
    let truncated = [0x1a, 0x02, 0x08, 0xff];
    for bytes in [&unknown[..], &odd_row, &bad_utf8, &truncated] {
        let generic = EncodedUpdateLog::decode(bytes);
        let in_place = EncodedUpdateLog::decode_body(Bytes::copy_from_slice(bytes));
        match (generic, in_place) {
            (Ok(generic), Ok(in_place)) => {
                assert_eq!(in_place.to_request(), generic.to_request(), "{bytes:?}");
                assert_eq!(
                    (in_place.task_id(), in_place.n_rows()),
                    (generic.task_id(), generic.n_rows())
                );
            }
            (Err(_), Err(_)) => {}
            (generic, in_place) => panic!("{bytes:?}: {generic:?} against {in_place:?}"),
        }
    }
}

#[test]
fn the_in_place_scan_of_rows_sharing_a_time_accepts_nothing_prost_rejects() {
    // Rows read together share their time, and the scan skips a time it has checked already:
    // whatever a mutation does to one row's time or content, what the scan accepts must decode,
    // to the same fields. (Through `decode_body` a wrong skip could hide behind the generic
    // decoding, which takes over whenever the scan gives up; so the scan is tested itself.)
    let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let rows: Vec<LogRow> = [row(9, 4), LogRow::default(), row(9, 0)]
        .into_iter()
        .chain(["1", "", "é", "three", "x"].iter().map(|content| LogRow {
            time: Some(at.into()),
            content: (*content).to_owned(),
        }))
        .collect();
    let request = UpdateLogRequest {
        task_id: 5,
        index: 2,
        rows,
        no_more: false,
    };
    let body = request.encode_to_vec();
    let scanned = scan_plain(&body).expect("a body prost wrote is plain");
    assert_eq!(scanned.n_rows, request.rows.len());
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut bytes = body.clone();
        for _ in 0..rng.random_range(1..3) {
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[at] = rng.random(),
                1 => bytes[at] ^= 1 << rng.random_range(0..8),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        if let Some(fields) = scan_plain(&bytes) {
            accepted += 1;
            let generic = UpdateLogRequest::decode(&bytes[..])
                .unwrap_or_else(|error| panic!("{bytes:02x?}: scanned, but {error}"));
            assert_eq!(
                (fields.task_id, fields.index, fields.n_rows, fields.no_more),
                (
                    generic.task_id,
                    generic.index,
                    generic.rows.len(),
                    generic.no_more
                ),
                "{bytes:02x?}"
            );
        }
    }
    assert!(accepted > 1_000, "{accepted} accepted");
}
