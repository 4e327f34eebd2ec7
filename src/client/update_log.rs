//! UpdateLog requests assembled from rows that are already protobuf-encoded. The spool keeps each
//! row as its `LogRow` encoding, and a request's `rows` field is each row as a key, a length and
//! those same bytes: so a request is built by copying bytes, without decoding a `LogRow` or
//! allocating a string per row, into a buffer the caller keeps from one request to the next.
//!
//! [`EncodedUpdateLog`] is a `prost::Message` holding the request's whole encoding; the gRPC
//! transport encodes it like any message, the Connect transport sends the bytes as the body as
//! they are. It decodes too (each row checked to be a `LogRow`), so it round-trips.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{self, DecodeContext, WireType};

use super::proto::runner::{LogRow, UpdateLogRequest};

// Field numbers of `runner.v1.UpdateLogRequest`.
const TASK_ID: u32 = 1;
const INDEX: u32 = 2;
const ROWS: u32 = 3;
const NO_MORE: u32 = 4;
/// `no_more = true`: one key byte and a one-byte varint.
const NO_MORE_BYTES: usize = 2;

/// An `UpdateLogRequest` kept in its encoded form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedUpdateLog {
    task_id: i64,
    index: i64,
    n_rows: usize,
    no_more: bool,
    /// The encoding of the fields above, in the order they were set or merged (a field given
    /// twice is encoded twice; protobuf decoding keeps the last, as the fields above do).
    encoded: BytesMut,
}

impl EncodedUpdateLog {
    /// Starts a request for `task_id` whose first row is number `index`, built in `buffer` and
    /// at most `max_bytes` long once finished. The buffer's earlier request, if it was dropped
    /// since, gives its memory back, so a sender reusing one buffer allocates once.
    pub fn builder(
        buffer: &mut BytesMut,
        task_id: i64,
        index: i64,
        max_bytes: usize,
    ) -> UpdateLogBuilder<'_> {
        buffer.clear();
        buffer.reserve(max_bytes);
        if task_id != 0 {
            encoding::int64::encode(TASK_ID, &task_id, buffer);
        }
        if index != 0 {
            encoding::int64::encode(INDEX, &index, buffer);
        }
        UpdateLogBuilder {
            buffer,
            task_id,
            index,
            n_rows: 0,
            max_bytes,
        }
    }

    pub fn task_id(&self) -> i64 {
        self.task_id
    }

    /// The number of the first row (Gitea's `index`).
    pub fn index(&self) -> i64 {
        self.index
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn no_more(&self) -> bool {
        self.no_more
    }

    /// The request as the generated message (decodes every row: for tests and fakes).
    pub fn to_request(&self) -> Result<UpdateLogRequest, prost::DecodeError> {
        UpdateLogRequest::decode(&self.encoded[..])
    }

    /// Each row's `LogRow` encoding, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut rest: &[u8] = &self.encoded;
        std::iter::from_fn(move || {
            // `encoded` holds well-formed fields only (built or checked when merged).
            while !rest.is_empty() {
                let (tag, wire_type) = encoding::decode_key(&mut rest).ok()?;
                if tag == ROWS {
                    let length = encoding::decode_varint(&mut rest).ok()? as usize;
                    let (row, after) = rest.split_at_checked(length)?;
                    rest = after;
                    return Some(row);
                }
                encoding::skip_field(wire_type, tag, &mut rest, DecodeContext::default()).ok()?;
            }
            None
        })
    }

    /// The encoded request, without a copy.
    pub(super) fn into_body(self) -> Bytes {
        self.encoded.freeze()
    }
}

impl From<&UpdateLogRequest> for EncodedUpdateLog {
    fn from(request: &UpdateLogRequest) -> EncodedUpdateLog {
        EncodedUpdateLog {
            task_id: request.task_id,
            index: request.index,
            n_rows: request.rows.len(),
            no_more: request.no_more,
            encoded: BytesMut::from(request.encode_to_vec().as_slice()),
        }
    }
}

impl From<UpdateLogRequest> for EncodedUpdateLog {
    fn from(request: UpdateLogRequest) -> EncodedUpdateLog {
        EncodedUpdateLog::from(&request)
    }
}

/// Adds pre-encoded rows to a request until it is full; see [`EncodedUpdateLog::builder`].
#[derive(Debug)]
pub struct UpdateLogBuilder<'a> {
    buffer: &'a mut BytesMut,
    task_id: i64,
    index: i64,
    n_rows: usize,
    max_bytes: usize,
}

impl UpdateLogBuilder<'_> {
    /// Adds one row given as its `LogRow` encoding, if the request stays within `max_bytes` even
    /// with `no_more` set; `false` (and nothing added) when it would not. The first row is always
    /// added, so every request makes progress: rows are at most 64 KiB, far below the cap.
    pub fn push_row(&mut self, row: &[u8]) -> bool {
        let row_bytes = 1 + encoding::encoded_len_varint(row.len() as u64) + row.len();
        if self.n_rows > 0 && self.buffer.len() + row_bytes + NO_MORE_BYTES > self.max_bytes {
            return false;
        }
        encoding::encode_key(ROWS, WireType::LengthDelimited, self.buffer);
        encoding::encode_varint(row.len() as u64, self.buffer);
        self.buffer.put_slice(row);
        self.n_rows += 1;
        true
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// The request, with `no_more` set as given.
    pub fn finish(self, no_more: bool) -> EncodedUpdateLog {
        if no_more {
            encoding::bool::encode(NO_MORE, &no_more, self.buffer);
        }
        EncodedUpdateLog {
            task_id: self.task_id,
            index: self.index,
            n_rows: self.n_rows,
            no_more,
            encoded: self.buffer.split(),
        }
    }
}

impl Message for EncodedUpdateLog {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.encoded);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            TASK_ID => {
                encoding::int64::merge(wire_type, &mut self.task_id, buf, ctx)?;
                encoding::int64::encode(TASK_ID, &self.task_id, &mut self.encoded);
            }
            INDEX => {
                encoding::int64::merge(wire_type, &mut self.index, buf, ctx)?;
                encoding::int64::encode(INDEX, &self.index, &mut self.encoded);
            }
            ROWS => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                // A contiguous input (a request body) is read in place: no copy per row.
                let chunk = buf.chunk();
                if chunk.len() == buf.remaining() {
                    let mut rest = chunk;
                    let length = encoding::decode_varint(&mut rest)? as usize;
                    if length <= rest.len() {
                        let row = &rest[..length];
                        check_log_row(row)?;
                        encoding::encode_key(ROWS, WireType::LengthDelimited, &mut self.encoded);
                        encoding::encode_varint(length as u64, &mut self.encoded);
                        self.encoded.put_slice(row);
                        self.n_rows += 1;
                        let read = chunk.len() - rest.len() + length;
                        buf.advance(read);
                        return Ok(());
                    }
                }
                let mut row = Bytes::new();
                encoding::bytes::merge(wire_type, &mut row, buf, ctx)?;
                check_log_row(&row)?;
                encoding::bytes::encode(ROWS, &row, &mut self.encoded);
                self.n_rows += 1;
            }
            NO_MORE => {
                encoding::bool::merge(wire_type, &mut self.no_more, buf, ctx)?;
                encoding::bool::encode(NO_MORE, &self.no_more, &mut self.encoded);
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx)?,
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    fn clear(&mut self) {
        *self = EncodedUpdateLog {
            encoded: std::mem::take(&mut self.encoded),
            ..EncodedUpdateLog::default()
        };
        self.encoded.clear();
    }
}

/// Checks that `row` decodes as a `LogRow`. The usual row (a time, a UTF-8 content) is checked
/// in place without allocating; anything else is decoded by the generated code, which decides.
#[inline]
fn check_log_row(row: &[u8]) -> Result<(), prost::DecodeError> {
    if is_plain_log_row(row) {
        return Ok(());
    }
    LogRow::decode(row).map(drop)
}

/// Whether `row` is a `LogRow` as prost writes one: an optional time (seconds, nanos) then an
/// optional UTF-8 content, each once and in field order. Checked in place, with no call per field:
/// the receiving side (the fake Gitea) runs this on every row it accepts.
#[inline]
fn is_plain_log_row(row: &[u8]) -> bool {
    let mut rest = row;
    if let [0x0a, tail @ ..] = rest {
        let Some((time, after)) = length_delimited(tail) else {
            return false;
        };
        let mut fields = time;
        for key in [0x08, 0x10] {
            if let [first, tail @ ..] = fields
                && *first == key
            {
                let Some(after_varint) = skip_varint(tail) else {
                    return false;
                };
                fields = after_varint;
            }
        }
        if !fields.is_empty() {
            return false;
        }
        rest = after;
    }
    if let [0x12, tail @ ..] = rest {
        let Some((content, after)) = length_delimited(tail) else {
            return false;
        };
        if !content.is_ascii() && std::str::from_utf8(content).is_err() {
            return false;
        }
        rest = after;
    }
    rest.is_empty()
}

/// Splits a varint length and that many bytes off `bytes`.
#[inline]
fn length_delimited(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut rest = bytes;
    let length = encoding::decode_varint(&mut rest).ok()?;
    rest.split_at_checked(usize::try_from(length).ok()?)
}

/// What follows a well-formed varint (at most 10 bytes, a value below 2^64, as prost requires) at
/// the start of `bytes`.
#[inline]
fn skip_varint(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().take(10).position(|byte| byte & 0x80 == 0)?;
    if end == 9 && bytes[9] > 1 {
        return None;
    }
    Some(&bytes[end + 1..])
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use rand::{Rng, SeedableRng};

    use super::*;

    fn row(n: usize, content_len: usize) -> LogRow {
        LogRow {
            time: Some((UNIX_EPOCH + Duration::new(1_700_000_000 + n as u64, 7)).into()),
            content: format!("{n:08}").repeat(content_len / 8 + 1)[..content_len].to_owned(),
        }
    }

    #[test]
    fn built_from_encoded_rows_it_is_byte_for_byte_the_generated_encoding() {
        let rows: Vec<LogRow> = (0..50).map(|n| row(n, n * 7)).collect();
        for (task_id, index, no_more) in [(42, 7, true), (0, 0, false), (-1, 1 << 40, true)] {
            let mut buffer = BytesMut::new();
            let mut builder = EncodedUpdateLog::builder(&mut buffer, task_id, index, 1 << 20);
            for row in &rows {
                assert!(builder.push_row(&row.encode_to_vec()));
            }
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
        let odd =
            EncodedUpdateLog::decode(&[0x1a, 0x05, 0x12, 0x01, b'a', 0x18, 0x01][..]).unwrap();
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
    fn a_request_never_exceeds_its_cap_and_fills_it_to_within_one_row() {
        let max = 1024 * 1024;
        let mut buffer = BytesMut::new();
        // Rows from empty to the longest the reporter spools (64 KiB of content), in a mix.
        let sizes = [0, 1, 100, 127, 128, 16_383, 16_384, 65_536, 300];
        let rows: Vec<Vec<u8>> = (0..2000)
            .map(|n| row(n, sizes[n % sizes.len()]).encode_to_vec())
            .collect();
        let mut next = 0;
        let mut requests = 0;
        while next < rows.len() {
            let mut builder = EncodedUpdateLog::builder(&mut buffer, i64::MAX, next as i64, max);
            while next < rows.len() && builder.push_row(&rows[next]) {
                next += 1;
            }
            let full = next < rows.len();
            let request = builder.finish(!full);
            let length = request.encode_to_vec().len();
            assert!(length <= max, "request {requests}: {length} bytes");
            if full {
                let refused = 1 + encoding::encoded_len_varint(rows[next].len() as u64);
                assert!(length + refused + rows[next].len() + NO_MORE_BYTES > max);
            }
            requests += 1;
        }
        assert!(requests > 10, "{requests} requests");
    }

    #[test]
    fn a_reused_buffer_gives_each_request_the_same_memory_once_the_last_one_is_dropped() {
        let mut buffer = BytesMut::new();
        let encoded = row(1, 10).encode_to_vec();
        let mut first_address = None;
        for _ in 0..3 {
            let mut builder = EncodedUpdateLog::builder(&mut buffer, 1, 0, 64 * 1024);
            assert!(builder.push_row(&encoded));
            let body = builder.finish(false).into_body();
            let address = body.as_ptr();
            assert_eq!(*first_address.get_or_insert(address), address);
            drop(body);
        }
    }
}
