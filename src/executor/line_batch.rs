//! A batch of log lines in one buffer: what a backend read from a stream at once, carried through
//! workflow commands, masking and the job events as one value. A step printing a million lines then
//! costs a few thousand channel sends and allocations, not a million of each.
//!
//! Lines never include their terminator. In the buffer, consecutive lines are separated by one
//! `\n`; the end offsets, not the separators, say where a line ends, so a line pushed with a `\n`
//! inside it (a multi-line error message) stays one line.

use std::fmt;

/// Lines in order, in one `String`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LineBatch {
    text: String,
    /// `ends[i]` is the byte offset in `text` where line `i` ends; line `i + 1` starts one byte later.
    ends: Vec<usize>,
}

impl LineBatch {
    pub fn new() -> LineBatch {
        LineBatch::default()
    }

    /// A batch of one line.
    pub fn one(line: impl Into<String>) -> LineBatch {
        let text = line.into();
        let ends = vec![text.len()];
        LineBatch { text, ends }
    }

    /// Builds a batch from raw bytes laid out as a batch (lines separated by `\n`, `ends` as in
    /// [`LineBatch`]); invalid UTF-8 in a line is replaced, as `String::from_utf8_lossy` does.
    pub(crate) fn from_raw(raw: Vec<u8>, ends: Vec<usize>) -> LineBatch {
        match String::from_utf8(raw) {
            // Every line is valid too: a `\n` separator is never inside a character, so no
            // character spans two lines.
            Ok(text) => LineBatch { text, ends },
            Err(error) => {
                let raw = error.into_bytes();
                let mut batch = LineBatch::new();
                let mut start = 0;
                for end in ends {
                    batch.push(&String::from_utf8_lossy(&raw[start..end]));
                    start = end + 1;
                }
                batch
            }
        }
    }

    /// Appends one line.
    pub fn push(&mut self, line: &str) {
        self.push_with(|text| text.push_str(line));
    }

    /// Appends one line that `write` appends to the buffer (and must not otherwise change).
    pub fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        if !self.ends.is_empty() {
            self.text.push('\n');
        }
        write(&mut self.text);
        self.ends.push(self.text.len());
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every line with the separators between them: a substring of one line is a substring of this.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Each line as `(start, end)` byte offsets in [`LineBatch::text`].
    pub fn spans(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|end| end + 1));
        starts.zip(self.ends.iter().copied())
    }

    /// The lines, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans().map(|(start, end)| &self.text[start..end])
    }
}

impl<'a> FromIterator<&'a str> for LineBatch {
    fn from_iter<I: IntoIterator<Item = &'a str>>(lines: I) -> LineBatch {
        let mut batch = LineBatch::new();
        for line in lines {
            batch.push(line);
        }
        batch
    }
}

impl fmt::Debug for LineBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_including_empty_ones_and_inner_newlines() {
        let lines = ["a", "", "multi\nline", "é", ""];
        let batch: LineBatch = lines.iter().copied().collect();
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.iter().collect::<Vec<_>>(), lines);
        assert_eq!(batch.text(), "a\n\nmulti\nline\né\n");
    }

    #[test]
    fn an_empty_batch_has_no_lines() {
        let batch = LineBatch::new();
        assert!(batch.is_empty());
        assert_eq!(batch.iter().count(), 0);
    }

    #[test]
    fn raw_bytes_with_invalid_utf8_are_replaced_per_line() {
        // 0xC3 ends line one and 0xA9 starts line two: together they would be "é", apart they
        // are two invalid bytes.
        let batch = LineBatch::from_raw(b"ok\na\xC3\n\xA9b".to_vec(), vec![2, 5, 8]);
        assert_eq!(
            batch.iter().collect::<Vec<_>>(),
            ["ok", "a\u{fffd}", "\u{fffd}b"]
        );
    }
}
