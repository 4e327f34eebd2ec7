//! Line splitting for exec output: Docker delivers frames of arbitrary size, and a step's log wants
//! whole lines as soon as each is complete. Pure code, no I/O.
//!
//! Rules: `\n`, `\r\n` and a lone `\r` each end a line (a `\r\n` split across two frames counts once);
//! a line longer than [`MAX_LINE_BYTES`] is cut into pieces of at most that size, on a UTF-8 boundary,
//! so one runaway line can neither exhaust memory nor hold back the log. Invalid UTF-8 is replaced.
//! The lines one chunk completes come back as one [`LineBatch`], with one allocation for all.

use crate::executor::line_batch::LineBatch;

/// Longest line delivered in one piece; longer ones arrive as several lines.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Buffers the bytes of one stream and yields complete lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    /// The previous chunk ended on `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
}

/// Complete lines being collected, laid out as a [`LineBatch`] (separated by `\n`).
#[derive(Default)]
struct RawLines {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl RawLines {
    /// Adds `line`, cut into pieces of at most [`MAX_LINE_BYTES`] on UTF-8 boundaries.
    fn push(&mut self, mut line: &[u8]) {
        loop {
            let cut = if line.len() > MAX_LINE_BYTES {
                utf8_cut(line, MAX_LINE_BYTES)
            } else {
                line.len()
            };
            if !self.ends.is_empty() {
                self.bytes.push(b'\n');
            }
            self.bytes.extend_from_slice(&line[..cut]);
            self.ends.push(self.bytes.len());
            line = &line[cut..];
            if line.is_empty() {
                return;
            }
        }
    }

    /// Adds every line of `run` (lines separated by `\n`, the last one's terminator left out)
    /// with one copy for all, since `run` is laid out as a batch already. `false`, with nothing
    /// added, when a line needs [`RawLines::push`]: it holds a `\r` or is over the limit.
    fn push_run(&mut self, run: &[u8]) -> bool {
        let n_before = self.ends.len();
        let base = self.bytes.len() + usize::from(n_before > 0);
        // One pass over the run finds every `\n` and any `\r`, eight bytes at a time: a log
        // line is often shorter than a search call's own cost.
        self.ends.reserve(run.len() / 8 + 1);
        let mut any_cr = 0;
        let mut words = run.chunks_exact(8);
        let mut offset = base;
        for word in &mut words {
            let word = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            any_cr |= zero_bytes(word ^ (SPREAD * u64::from(b'\r')));
            let mut newlines = zero_bytes(word ^ (SPREAD * u64::from(b'\n')));
            while newlines != 0 {
                self.ends
                    .push(offset + (newlines.trailing_zeros() / 8) as usize);
                newlines &= newlines - 1;
            }
            offset += 8;
        }
        for (at, &byte) in words.remainder().iter().enumerate() {
            any_cr |= u64::from(byte == b'\r');
            if byte == b'\n' {
                self.ends.push(offset + at);
            }
        }
        self.ends.push(base + run.len());
        let mut start = base;
        let too_long = self.ends[n_before..].iter().any(|&end| {
            let long = end - start > MAX_LINE_BYTES;
            start = end + 1;
            long
        });
        if any_cr != 0 || too_long {
            self.ends.truncate(n_before);
            return false;
        }
        if n_before > 0 {
            self.bytes.push(b'\n');
        }
        self.bytes.extend_from_slice(run);
        true
    }

    fn into_batch(self) -> LineBatch {
        LineBatch::from_raw(self.bytes, self.ends)
    }
}

impl LineSplitter {
    /// Feeds one chunk and returns the lines it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> LineBatch {
        let mut lines = RawLines {
            // Lines are usually short: one separator per line is a few percent more.
            bytes: Vec::with_capacity(chunk.len() + chunk.len() / 16),
            ends: Vec::new(),
        };
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        // The line the last chunk left open ends first; then, usually, every line up to the
        // chunk's last `\n` goes in one copy; what remains goes line by line.
        if !self.pending.is_empty()
            && let Some(after) = self.next_line(rest, &mut lines)
        {
            rest = after;
        }
        if let Some(last) = memchr::memrchr(b'\n', rest)
            && self.pending.is_empty()
            && lines.push_run(&rest[..last])
        {
            rest = &rest[last + 1..];
        }
        while let Some(after) = self.next_line(rest, &mut lines) {
            rest = after;
        }
        self.pending.extend_from_slice(rest);
        // An unterminated line longer than the limit leaves in pieces now, so memory stays bounded.
        while self.pending.len() > MAX_LINE_BYTES {
            let cut = utf8_cut(&self.pending, MAX_LINE_BYTES);
            lines.push(&self.pending[..cut]);
            self.pending.drain(..cut);
        }
        lines.into_batch()
    }

    /// Moves the line that ends at the first terminator of `rest` (completing the pending one)
    /// to `lines`, and returns what follows it; `None` when `rest` holds no terminator.
    fn next_line<'a>(&mut self, rest: &'a [u8], lines: &mut RawLines) -> Option<&'a [u8]> {
        let pos = memchr::memchr2(b'\n', b'\r', rest)?;
        if self.pending.is_empty() {
            lines.push(&rest[..pos]);
        } else {
            self.pending.extend_from_slice(&rest[..pos]);
            lines.push(&self.pending);
            self.pending.clear();
        }
        let terminator = rest[pos];
        let mut after = &rest[pos + 1..];
        if terminator == b'\r' {
            match after.first() {
                Some(b'\n') => after = &after[1..],
                Some(_) => {}
                None => self.after_cr = true,
            }
        }
        Some(after)
    }

    /// The unterminated last line, if any, when the stream ends.
    pub fn finish(&mut self) -> Option<String> {
        self.after_cr = false;
        if self.pending.is_empty() {
            None
        } else {
            let taken = std::mem::take(&mut self.pending);
            Some(match String::from_utf8(taken) {
                Ok(text) => text,
                Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
            })
        }
    }
}

/// A byte of ones in every lane of a word.
const SPREAD: u64 = u64::from_le_bytes([1; 8]);

/// The high bit of every byte of `word` that is zero, and no other bit (exact: no carry crosses
/// from one byte to the next, unlike the shorter `(word - SPREAD) & !word` test).
fn zero_bytes(word: u64) -> u64 {
    const LOW_SEVEN: u64 = SPREAD * 0x7f;
    !(((word & LOW_SEVEN) + LOW_SEVEN) | word | LOW_SEVEN)
}

/// The largest cut `<= limit` that does not split a UTF-8 sequence (or `limit` for invalid data).
pub(in crate::executor::backend) fn utf8_cut(bytes: &[u8], limit: usize) -> usize {
    let mut cut = limit;
    // A continuation byte is 0b10xx_xxxx; step back at most 3 to the start of its sequence.
    while cut > 0 && limit - cut < 4 && (bytes[cut] & 0b1100_0000) == 0b1000_0000 {
        cut -= 1;
    }
    if cut == 0 || limit - cut >= 4 {
        limit
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            lines.extend(splitter.push(chunk).iter().map(String::from));
        }
        lines.extend(splitter.finish());
        lines
    }

    #[test]
    fn partial_lines_join_across_frames() {
        assert_eq!(
            split_all(&[b"hel", b"lo\nwor", b"ld\n"]),
            ["hello", "world"]
        );
    }

    #[test]
    fn crlf_split_across_frames_ends_one_line() {
        assert_eq!(split_all(&[b"a\r", b"\nb\r\n"]), ["a", "b"]);
    }

    #[test]
    fn lone_cr_ends_a_line() {
        assert_eq!(split_all(&[b"10%\r50%\r100%\n"]), ["10%", "50%", "100%"]);
    }

    #[test]
    fn unterminated_last_line_is_flushed_at_end() {
        assert_eq!(split_all(&[b"one\ntwo"]), ["one", "two"]);
    }

    #[test]
    fn empty_lines_are_kept() {
        assert_eq!(split_all(&[b"\n\nx\n"]), ["", "", "x"]);
    }

    #[test]
    fn very_long_line_is_cut_into_bounded_pieces() {
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let lines = split_all(&[&long, b"\n"]);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|line| line.len() <= MAX_LINE_BYTES));
        assert_eq!(lines.iter().map(String::len).sum::<usize>(), long.len());
    }

    #[test]
    fn long_line_cut_keeps_multibyte_characters_whole() {
        let mut long = vec![b'x'; MAX_LINE_BYTES - 1];
        long.extend_from_slice("é".as_bytes());
        long.extend_from_slice(b"tail");
        let lines = split_all(&[&long]);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with('é'));
        assert!(!lines.concat().contains('\u{fffd}'));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        assert_eq!(split_all(&[b"a\xffb\n"]), ["a\u{fffd}b"]);
    }

    /// The lines of a whole stream by the module's rules, without chunks: the reference.
    fn split_whole(stream: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut cut_into_pieces = |mut line: &[u8]| loop {
            let cut = if line.len() > MAX_LINE_BYTES {
                utf8_cut(line, MAX_LINE_BYTES)
            } else {
                line.len()
            };
            lines.push(String::from_utf8_lossy(&line[..cut]).into_owned());
            line = &line[cut..];
            if line.is_empty() {
                break;
            }
        };
        let mut rest = stream;
        while let Some(pos) = rest.iter().position(|&byte| byte == b'\n' || byte == b'\r') {
            cut_into_pieces(&rest[..pos]);
            let crlf = rest[pos] == b'\r' && rest.get(pos + 1) == Some(&b'\n');
            rest = &rest[pos + 1 + usize::from(crlf)..];
        }
        if !rest.is_empty() {
            cut_into_pieces(rest);
        }
        lines
    }

    #[test]
    fn any_chunking_gives_the_lines_of_the_whole_stream() {
        // A fixed pseudo-random sequence (xorshift), so a failure is reproducible.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        // `\x0b` and `\x8a` are one bit from `\n` (`\x0b` is what a borrow in a word-wide
        // search for `\n` turns into a false match after a real one).
        let pieces: [&[u8]; 9] = [
            b"a",
            b"12",
            "é".as_bytes(),
            b"\n",
            b"\x0b",
            b"\x8a",
            b"\xff",
            b"\r",
            b"\r\n",
        ];
        for round in 0..300 {
            let mut stream = Vec::new();
            // Half the streams have no `\r`: the path that copies many lines at once.
            let kinds = if round % 2 == 0 { 6 } else { pieces.len() };
            let n_pieces = next(400);
            for _ in 0..n_pieces {
                stream.extend_from_slice(pieces[next(kinds)]);
            }
            if round % 50 == 0 {
                // A line over the limit, with a character across the cut.
                stream.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES - 1));
                stream.extend_from_slice("é tail\n".as_bytes());
            }
            let mut chunks = Vec::new();
            let mut rest = stream.as_slice();
            while !rest.is_empty() {
                let largest = if next(4) == 0 { 8 } else { 300 };
                let size = (1 + next(largest)).min(rest.len());
                chunks.push(&rest[..size]);
                rest = &rest[size..];
            }
            assert_eq!(
                split_all(&chunks),
                split_whole(&stream),
                "round {round}: {:?}",
                String::from_utf8_lossy(&stream)
            );
        }
    }
}
