//! Decoding an UpdateLog request with its rows left encoded: each row is checked to be a
//! `LogRow` and kept as its bytes. The receiving side (the fake Gitea) runs this on every request.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{self, DecodeContext, WireType};

use super::{EncodedUpdateLog, INDEX, NO_MORE, ROWS, TASK_ID};
use crate::client::proto::runner::LogRow;

impl EncodedUpdateLog {
    /// Decodes a request body and keeps it as the request's encoding: no row is copied, and the
    /// body itself is not either when nothing else holds its memory. The result is the same as
    /// `Message::decode`'s, which still decides anything but the plain case: the four known
    /// fields, each with its wire type, and rows as [`is_plain_log_row`] accepts them.
    pub fn decode_body(body: Bytes) -> Result<EncodedUpdateLog, prost::DecodeError> {
        let Some(fields) = scan_plain(&body) else {
            return EncodedUpdateLog::decode(&body[..]);
        };
        Ok(EncodedUpdateLog {
            task_id: fields.task_id,
            index: fields.index,
            n_rows: fields.n_rows,
            no_more: fields.no_more,
            encoded: body
                .try_into_mut()
                .unwrap_or_else(|shared| BytesMut::from(&shared[..])),
        })
    }
}

/// The scalar fields of a request and how many rows it holds.
#[derive(Default)]
pub(super) struct PlainFields {
    pub(super) task_id: i64,
    pub(super) index: i64,
    pub(super) n_rows: usize,
    pub(super) no_more: bool,
}

/// Reads a request made of known fields only, each with its own wire type (one-byte keys), every
/// row a plain `LogRow`; `None` for anything else.
pub(super) fn scan_plain(body: &[u8]) -> Option<PlainFields> {
    const TASK_ID_KEY: u8 = (TASK_ID << 3) as u8;
    const INDEX_KEY: u8 = (INDEX << 3) as u8;
    const ROWS_KEY: u8 = (ROWS << 3) as u8 | 2;
    const NO_MORE_KEY: u8 = (NO_MORE << 3) as u8;
    let mut fields = PlainFields::default();
    let mut rest = body;
    let mut known_time = KnownTime::new(&[]);
    while let [key, tail @ ..] = rest {
        rest = match *key {
            ROWS_KEY => {
                let (row, after) = length_delimited(tail)?;
                // Rows read together share their time: one checked already is not checked again.
                let content = match known_time.strip_from(row) {
                    Some(content) => content,
                    None => {
                        let (time, content) = plain_time(row)?;
                        known_time = KnownTime::new(time);
                        content
                    }
                };
                if !is_plain_content(content) {
                    return None;
                }
                fields.n_rows += 1;
                after
            }
            // Protobuf's int64 and bool are varints read as they are (`as`, `!= 0`), as prost does.
            TASK_ID_KEY => {
                let (value, after) = varint(tail)?;
                fields.task_id = value as i64;
                after
            }
            INDEX_KEY => {
                let (value, after) = varint(tail)?;
                fields.index = value as i64;
                after
            }
            NO_MORE_KEY => {
                let (value, after) = varint(tail)?;
                fields.no_more = value != 0;
                after
            }
            _ => return None,
        };
    }
    Some(fields)
}

/// The last time field checked, whole (key, length, value), and its first 16 bytes as a number
/// (a time field is at most 19 bytes, usually 13): most rows compare with one masked load, not a
/// `memcmp` call.
struct KnownTime<'a> {
    field: &'a [u8],
    head: u128,
    mask: u128,
}

impl<'a> KnownTime<'a> {
    fn new(field: &'a [u8]) -> KnownTime<'a> {
        let mut padded = [0; 16];
        let n = field.len().min(16);
        padded[..n].copy_from_slice(&field[..n]);
        KnownTime {
            field,
            head: u128::from_le_bytes(padded),
            mask: u128::MAX.checked_shr(8 * (16 - n as u32)).unwrap_or(0),
        }
    }

    /// What follows this time field at the start of `row`; `None` when `row` does not start
    /// with it, or nothing is known yet.
    #[inline]
    fn strip_from<'r>(&self, row: &'r [u8]) -> Option<&'r [u8]> {
        if self.field.is_empty() {
            return None;
        }
        match row.first_chunk::<16>() {
            Some(first) if self.field.len() <= 16 => (u128::from_le_bytes(*first) & self.mask
                == self.head)
                .then(|| &row[self.field.len()..]),
            _ => row.strip_prefix(self.field),
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
pub(super) fn is_plain_log_row(row: &[u8]) -> bool {
    plain_time(row).is_some_and(|(_, content)| is_plain_content(content))
}

/// Splits the time field (key, length, a `Timestamp` of seconds then nanos, each optional) off
/// the start of a row, as prost writes it; an empty field when the row has no time. `None` when
/// the row starts with a time field written otherwise.
#[inline]
fn plain_time(row: &[u8]) -> Option<(&[u8], &[u8])> {
    let [0x0a, tail @ ..] = row else {
        return Some((&[], row));
    };
    let (time, after) = length_delimited(tail)?;
    let mut fields = time;
    for key in [0x08, 0x10] {
        if let [first, tail @ ..] = fields
            && *first == key
        {
            fields = skip_varint(tail)?;
        }
    }
    fields
        .is_empty()
        .then(|| row.split_at(row.len() - after.len()))
}

/// Whether what follows a row's time is an optional UTF-8 content field and nothing else.
#[inline]
fn is_plain_content(rest: &[u8]) -> bool {
    let [0x12, tail @ ..] = rest else {
        return rest.is_empty();
    };
    let Some((content, after)) = length_delimited(tail) else {
        return false;
    };
    after.is_empty() && (content.is_ascii() || std::str::from_utf8(content).is_ok())
}

/// Splits a varint length and that many bytes off `bytes`. Inlined always: the scan calls it
/// twice per row, and left to itself the compiler kept it a call.
#[inline(always)]
pub(super) fn length_delimited(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, rest) = varint(bytes)?;
    rest.split_at_checked(usize::try_from(length).ok()?)
}

/// A varint and what follows it; a one-byte varint (every length below 128) without a call.
#[inline(always)]
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    if let [byte, rest @ ..] = bytes
        && *byte < 0x80
    {
        return Some((u64::from(*byte), rest));
    }
    long_varint(bytes)
}

#[cold]
fn long_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut rest = bytes;
    let value = encoding::decode_varint(&mut rest).ok()?;
    Some((value, rest))
}

/// What follows a well-formed varint (at most 10 bytes, a value below 2^64, as prost requires) at
/// the start of `bytes`.
#[inline]
fn skip_varint(bytes: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while at < bytes.len().min(10) {
        let byte = bytes[at];
        at += 1;
        if byte & 0x80 == 0 {
            return (at < 10 || byte <= 1).then(|| &bytes[at..]);
        }
    }
    None
}
