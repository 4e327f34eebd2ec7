//! Encoding log lines into framed rows (see [`frame`](super::frame)), the spool's hot path: a step
//! printing a million lines appends a million rows. Rows that share a time share their head but for two length bytes, and
//! the usual row (under 128 bytes, its content at most 16) is written with two copies of fixed
//! sizes, which the compiler turns into a few moves, not a call per copy.

use std::time::SystemTime;

use super::frame;

/// The longest encoded time field: its key, its length, and a `Timestamp` whose seconds take ten
/// bytes and nanos five, each with its key.
const MAX_TIME_BYTES: usize = 2 + (1 + 10) + (1 + 5);
/// How many bytes a short row's head is copied as (its whole head, and more).
const HEAD_COPY: usize = 32;
/// The longest head: the frame's key and length, the time, the content's key and length.
const MAX_HEAD: usize = 2 * frame::MAX_HEADER_BYTES + MAX_TIME_BYTES;
/// Contents up to this long are copied as this many bytes, when the text has them.
const CONTENT_COPY: usize = 16;
/// The key of `LogRow.content`: field 2, length-delimited.
const CONTENT_KEY: u8 = 2 << 3 | 2;

/// Encoded rows not yet written, in `bytes[..filled]`. The rest of `bytes` is space that rows
/// are written into in place (the buffer only grows, and is zeroed once when it does).
#[derive(Debug, Default)]
pub struct RowBuffer {
    bytes: Vec<u8>,
    filled: usize,
}

impl RowBuffer {
    pub fn filled(&self) -> &[u8] {
        &self.bytes[..self.filled]
    }

    /// Drops the first `n` filled bytes (they were written).
    pub fn consume(&mut self, n: usize) {
        self.bytes.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.space(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.filled += bytes.len();
    }

    /// At least `n` bytes of space after the filled ones.
    fn space(&mut self, n: usize) -> &mut [u8] {
        let needed = self.filled + n;
        if self.bytes.len() < needed {
            RowBuffer::grow(&mut self.bytes, needed);
        }
        &mut self.bytes[self.filled..]
    }

    /// Makes `bytes` at least `needed` long, at least doubling it.
    #[cold]
    fn grow(bytes: &mut Vec<u8>, needed: usize) {
        let grown = needed.max(2 * bytes.len()).max(64 * 1024);
        bytes.resize(grown, 0);
    }
}

/// Appends one row per span of `text`, all stamped `at`, to `out`; returns the rows and bytes
/// appended.
pub fn append_rows(
    out: &mut RowBuffer,
    at: SystemTime,
    text: &str,
    spans: impl IntoIterator<Item = (usize, usize)>,
) -> (u64, u64) {
    let text = text.as_bytes();
    let mut time = Vec::with_capacity(MAX_TIME_BYTES);
    prost::encoding::message::encode(1, &prost_types::Timestamp::from(at), &mut time);
    let head = RowHead::new(&time);
    let time_len = head.time_len;
    // A row whose content is shorter than this has one-byte lengths, the row's and the content's.
    let short_limit = 0x80 - (time_len + 2);
    let first = out.filled;
    let mut end_of_rows = out.filled;
    let mut n_rows = 0;
    // Written by index into the buffer itself: a slice borrowed per row, with its own length
    // checks, took about twice as long per row.
    let bytes = &mut out.bytes;
    for (start, end) in spans {
        let content = &text[start..end];
        let len = content.len();
        let needed = end_of_rows + MAX_HEAD.max(HEAD_COPY) + len.max(CONTENT_COPY);
        if bytes.len() < needed {
            RowBuffer::grow(bytes, needed);
        }
        n_rows += 1;
        if len == 0 || len >= short_limit {
            let head_len = head.write(len, &mut bytes[end_of_rows..]);
            let at_content = end_of_rows + head_len;
            bytes[at_content..at_content + len].copy_from_slice(content);
            end_of_rows = at_content + len;
            continue;
        }
        let row = &mut bytes[end_of_rows..end_of_rows + HEAD_COPY];
        row.copy_from_slice(&head.short);
        row[1] = (time_len + 2 + len) as u8;
        row[3 + time_len] = len as u8;
        let at_content = end_of_rows + 4 + time_len;
        match text.get(start..start + CONTENT_COPY) {
            Some(padded) if len <= CONTENT_COPY => {
                bytes[at_content..at_content + CONTENT_COPY].copy_from_slice(padded);
            }
            _ => bytes[at_content..at_content + len].copy_from_slice(content),
        }
        end_of_rows = at_content + len;
    }
    out.filled = end_of_rows;
    (n_rows, (end_of_rows - first) as u64)
}

/// Everything of a framed row before its content, for rows sharing one time: the frame key and
/// the row's length (varints), the time field, the content's key and length (varint).
struct RowHead {
    /// Laid out for a row shorter than 128 bytes (one-byte lengths): the usual log line. Only its
    /// two length bytes differ from row to row; they are patched in the copy, never here (a
    /// byte stored here and read back at once as part of a wider copy stalls the copy).
    short: [u8; HEAD_COPY],
    time_len: usize,
}

impl RowHead {
    fn new(time: &[u8]) -> RowHead {
        let time_len = time.len();
        let mut short = [0; HEAD_COPY];
        short[0] = frame::ROW_KEY;
        short[2..2 + time_len].copy_from_slice(time);
        short[2 + time_len] = CONTENT_KEY;
        RowHead { short, time_len }
    }

    /// Writes the head of a row whose content is `content_len` bytes at the start of `out`
    /// (at least [`MAX_HEAD`] bytes, which it may write past the head) and returns its length.
    /// proto3 leaves an empty string out, as prost does: such a row is its time alone.
    #[inline]
    fn write(&self, content_len: usize, out: &mut [u8]) -> usize {
        let time_len = self.time_len;
        if content_len == 0 {
            out[..HEAD_COPY].copy_from_slice(&self.short);
            // A time field is at most 19 bytes: its length fits in one.
            out[1] = time_len as u8;
            return 2 + time_len;
        }
        let row_len = time_len + 1 + varint_len(content_len) + content_len;
        if row_len < 0x80 {
            out[..HEAD_COPY].copy_from_slice(&self.short);
            out[1] = row_len as u8;
            out[3 + time_len] = content_len as u8;
            return 4 + time_len;
        }
        self.write_long(row_len, content_len, out)
    }

    fn write_long(&self, row_len: usize, content_len: usize, out: &mut [u8]) -> usize {
        let time_len = self.time_len;
        out[0] = frame::ROW_KEY;
        let mut at = 1 + put_varint(row_len, &mut out[1..]);
        out[at..at + time_len].copy_from_slice(&self.short[2..2 + time_len]);
        at += time_len;
        out[at] = CONTENT_KEY;
        at += 1;
        at + put_varint(content_len, &mut out[at..])
    }
}

/// How many bytes `value` takes as a varint.
fn varint_len(value: usize) -> usize {
    prost::encoding::encoded_len_varint(value as u64)
}

/// Writes `value` as a varint at the start of `out` (which has space for it: at most ten bytes) and
/// returns its length.
fn put_varint(mut value: usize, out: &mut [u8]) -> usize {
    let mut n = 0;
    while value >= 0x80 {
        out[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    out[n] = value as u8;
    n + 1
}
