//! How a spooled row is framed: exactly as an UpdateLog request carries it, the `rows` field of
//! `UpdateLogRequest` (one key byte, the row's length as a varint, the `LogRow` encoding). A run of
//! spooled rows is then a run of request fields, and a request is built by copying the run whole.
//! This module owns that format: the spool stores frames built here and finds their boundaries
//! with [`header`] and [`frame`], without knowing what a frame holds.

/// The key of `UpdateLogRequest.rows`: field 3, length-delimited.
pub const ROW_KEY: u8 = 3 << 3 | 2;
/// The longest frame header: the key and a ten-byte varint.
pub const MAX_HEADER_BYTES: usize = 11;

/// Appends the header of a frame holding a row of `row_len` bytes.
pub fn push_header(row_len: usize, out: &mut Vec<u8>) {
    out.push(ROW_KEY);
    prost::encoding::encode_varint(row_len as u64, out);
}

/// The bytes a frame holding a row of `row_len` bytes takes.
pub fn frame_len(row_len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(row_len as u64) + row_len
}

/// The header at the start of `bytes`: the row's length and the header's. `None` when `bytes`
/// does not start with a whole, valid header.
#[inline]
pub fn header(bytes: &[u8]) -> Option<(usize, usize)> {
    let (&key, rest) = bytes.split_first()?;
    if key != ROW_KEY {
        return None;
    }
    // Most rows are shorter than 128 bytes: a one-byte length, read without the loop.
    if let Some(&length) = rest.first()
        && length < 0x80
    {
        return Some((usize::from(length), 2));
    }
    let mut row_len: u64 = 0;
    for (n, &byte) in rest.iter().take(MAX_HEADER_BYTES - 1).enumerate() {
        row_len |= u64::from(byte & 0x7f) << (7 * n);
        if byte & 0x80 == 0 {
            return Some((usize::try_from(row_len).ok()?, n + 2));
        }
    }
    None
}

/// The row framed at the start of `bytes` and the frame's whole length; `None` when `bytes` does
/// not start with a whole frame.
pub fn frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let (row_len, header_len) = header(bytes)?;
    let row = bytes.get(header_len..header_len.checked_add(row_len)?)?;
    Some((row, header_len + row_len))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::client::proto::runner::{LogRow, UpdateLogRequest};

    #[test]
    fn a_frame_is_byte_for_byte_a_requests_rows_field() {
        for content in ["", "x", &"y".repeat(200), &"z".repeat(70_000)] {
            let row = LogRow {
                time: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 5,
                }),
                content: content.to_string(),
            };
            let request = UpdateLogRequest {
                rows: vec![row.clone()],
                ..Default::default()
            };
            let mut framed = Vec::new();
            push_header(row.encoded_len(), &mut framed);
            row.encode(&mut framed).unwrap();
            assert_eq!(framed, request.encode_to_vec());
            assert_eq!(frame_len(row.encoded_len()), framed.len());
            let (inside, length) = frame(&framed).unwrap();
            assert_eq!((inside, length), (&row.encode_to_vec()[..], framed.len()));
            // Any cut short of the whole frame is no frame.
            for cut in [0, 1, framed.len() - 1] {
                assert_eq!(frame(&framed[..cut]), None);
            }
        }
    }

    #[test]
    fn other_keys_and_overlong_varints_are_no_header() {
        assert_eq!(header(&[ROW_KEY + 8, 1, 0]), None);
        assert_eq!(header(&[ROW_KEY, 0x80]), None);
        let mut overlong = vec![ROW_KEY];
        overlong.extend([0xff; 10]);
        overlong.push(1);
        assert_eq!(header(&overlong), None);
        assert_eq!(header(&[ROW_KEY, 0x80, 0x01]), Some((128, 3)));
    }
}
