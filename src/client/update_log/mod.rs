//! UpdateLog requests assembled from rows that are already protobuf-encoded. The spool keeps each
//! row as its `LogRow` encoding, and a request's `rows` field is each row as a key, a length and
//! those same bytes: so a request is built by copying bytes, without decoding a `LogRow` or
//! allocating a string per row, into a buffer the caller keeps from one request to the next.
//!
//! [`EncodedUpdateLog`] is a `prost::Message` holding the request's whole encoding; the gRPC
//! transport encodes it like any message, the Connect transport sends the bytes as the body as
//! they are. It decodes too (each row checked to be a `LogRow`), so it round-trips.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{self, DecodeContext, WireType};

use super::proto::runner::UpdateLogRequest;

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

    /// Gitea's rule for the rows of this request, given the `n_held` rows its log already holds:
    /// how many leading rows it skips as already held before appending the rest, or None when it
    /// stores none (no rows, a gap before the first, or every row already held) and only answers
    /// its `ack_index`. The reporter relies on it to resend safely; the fake Gitea and the
    /// reporter's in-memory server apply it through this one function.
    pub fn rows_already_held(&self, n_held: i64) -> Option<usize> {
        let n_rows = i64::try_from(self.n_rows).ok()?;
        if n_rows == 0 || self.index > n_held || self.index + n_rows <= n_held {
            return None;
        }
        usize::try_from(n_held - self.index).ok()
    }

    /// The request as the generated message (decodes every row: for tests and fakes).
    pub fn to_request(&self) -> Result<UpdateLogRequest, prost::DecodeError> {
        UpdateLogRequest::decode(&self.encoded[..])
    }

    /// Each row's `LogRow` encoding, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut rest: &[u8] = &self.encoded;
        std::iter::from_fn(move || {
            // `encoded` holds well-formed fields only (built or checked when decoded).
            while !rest.is_empty() {
                if let [key, tail @ ..] = rest
                    && u32::from(*key) == ROWS << 3 | WireType::LengthDelimited as u32
                {
                    let (row, after) = decode::length_delimited(tail)?;
                    rest = after;
                    return Some(row);
                }
                let (tag, wire_type) = encoding::decode_key(&mut rest).ok()?;
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
    /// Adds `n_rows` rows given as whole `rows` fields, one after the other, as a request
    /// carries them (how the spool keeps them): copied as they are. The caller makes sure they
    /// fit ([`UpdateLogBuilder::space_left`]).
    pub fn push_fields(&mut self, fields: &[u8], n_rows: usize) {
        self.buffer.put_slice(fields);
        self.n_rows += n_rows;
    }

    /// How many more bytes of rows fit, with space left for `no_more`.
    pub fn space_left(&self) -> usize {
        self.max_bytes
            .saturating_sub(self.buffer.len() + NO_MORE_BYTES)
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

mod decode;
pub mod frame;
mod rows;

pub use rows::{RowBuffer, append_rows};

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
