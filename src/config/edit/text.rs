//! Line surgery on a config file's text: an edit rewrites only the lines of the value it
//! changes, so every comment, blank line, quote style and the line endings of the rest of the
//! file stay exactly as the user wrote them. Where things are comes from the parsed tree (the
//! line of each key); how far a value reaches comes from indentation, as in YAML's block style.

use super::super::yaml::Key;

/// A file's text as lines, with how they were ended.
pub(super) struct Text {
    pub lines: Vec<String>,
    newline: &'static str,
    final_newline: bool,
}

/// A `key: value` line in block style and the lines its value reaches over.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// The key's line (0-based).
    pub line: usize,
    /// The key's column (0-based), which is its line's indentation.
    pub indent: usize,
    /// Byte offset just past the key's `:`.
    colon_end: usize,
    /// One past the last line of the value (blank lines after it left out).
    pub end: usize,
}

/// A construct the surgery does not rewrite (flow style, a key that is not first on its line).
#[derive(Debug)]
pub(super) struct Unsupported(pub String);

impl Text {
    pub fn new(text: &str) -> Text {
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let final_newline = text.is_empty() || text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines = if text.is_empty() {
            Vec::new()
        } else {
            body.split('\n')
                .map(|line| line.strip_suffix('\r').unwrap_or(line).to_owned())
                .collect()
        };
        Text {
            lines,
            newline,
            final_newline,
        }
    }

    pub fn render(&self) -> String {
        let mut text = self.lines.join(self.newline);
        if self.final_newline && !self.lines.is_empty() {
            text.push_str(self.newline);
        }
        text
    }

    /// Locates `key`'s entry; `sequence` says its value is a list, whose `- ` items may sit at
    /// the key's own indentation.
    pub fn entry(&self, key: &Key, sequence: bool) -> Result<Entry, Unsupported> {
        let unsupported = || {
            Unsupported(format!(
                "line {}: `{}` is not written in block style (`key: value` at the start of its \
                 line)",
                key.position.line, key.name
            ))
        };
        let line_idx = usize::try_from(key.position.line.saturating_sub(1)).unwrap_or(usize::MAX);
        let line = self.lines.get(line_idx).ok_or_else(unsupported)?;
        let indent = indentation(line);
        if usize::try_from(key.position.column).ok() != Some(indent + 1) {
            return Err(unsupported());
        }
        let colon_end = key_end(&line[indent..], &key.name).ok_or_else(unsupported)? + indent;
        // Comments never end a value: one at any indentation may sit between its lines. Those
        // after its last line at the key's indentation or less belong to what follows.
        let mut end = line_idx + 1;
        while let Some(next) = self.lines.get(end) {
            let next_indent = indentation(next);
            let continues = !self.is_content(end)
                || next_indent > indent
                || (sequence && next_indent == indent && next[indent..].starts_with('-'));
            if !continues {
                break;
            }
            end += 1;
        }
        while end > line_idx + 1
            && !self.is_content(end - 1)
            && (self.lines[end - 1].trim().is_empty()
                || indentation(&self.lines[end - 1]) <= indent)
        {
            end -= 1;
        }
        Ok(Entry {
            line: line_idx,
            indent,
            colon_end,
            end,
        })
    }

    /// The text written after `entry`'s colon on its line, without a comment.
    pub fn inline_value(&self, entry: &Entry) -> &str {
        let line = &self.lines[entry.line];
        let (start, end) = inline_span(line, entry.colon_end);
        &line[start..end]
    }

    /// Replaces what `entry`'s line holds after the colon with `value` (nothing when empty),
    /// keeping a trailing comment.
    pub fn set_inline(&mut self, entry: &Entry, value: &str) {
        let line = &self.lines[entry.line];
        let (_, end) = inline_span(line, entry.colon_end);
        let comment = line[end..].trim();
        let mut rebuilt = line[..entry.colon_end].to_owned();
        for part in [value, comment] {
            if !part.is_empty() {
                rebuilt.push(' ');
                rebuilt.push_str(part);
            }
        }
        self.lines[entry.line] = rebuilt;
    }

    /// Whether line `idx` holds YAML content (not blank, not only a comment).
    pub fn is_content(&self, idx: usize) -> bool {
        let trimmed = self.lines[idx].trim();
        !trimmed.is_empty() && !trimmed.starts_with('#')
    }

    /// Removes the content lines below `entry`'s key (its block value), keeping its comments.
    /// Returns where the first removed line was, or the line below the key.
    pub fn remove_block_value(&mut self, entry: &mut Entry) -> usize {
        let mut first_removed = None;
        let mut idx = entry.line + 1;
        while idx < entry.end {
            if self.is_content(idx) {
                self.lines.remove(idx);
                entry.end -= 1;
                first_removed.get_or_insert(idx);
            } else {
                idx += 1;
            }
        }
        first_removed.unwrap_or(entry.line + 1)
    }

    /// The lines where the block list items of `entry` start (`- ...` at one indentation).
    pub fn item_starts(&self, entry: &Entry) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut item_indent = None;
        for idx in entry.line + 1..entry.end {
            if !self.is_content(idx) {
                continue;
            }
            let line = &self.lines[idx];
            let indent = indentation(line);
            let item_indent = *item_indent.get_or_insert(indent);
            if indent == item_indent && line[indent..].starts_with('-') {
                starts.push(idx);
            }
        }
        starts
    }

    /// One past the last content line of `entry`'s value at or after `from`, and before `to`.
    pub fn content_end(&self, from: usize, to: usize) -> usize {
        (from..to)
            .rev()
            .find(|idx| self.is_content(*idx))
            .map_or(from, |idx| idx + 1)
    }

    pub fn insert_lines(&mut self, at: usize, lines: Vec<String>) {
        self.lines.splice(at..at, lines);
    }
}

/// The number of leading spaces of `line`.
pub(super) fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Byte offset just past the `:` of `name` written (plain or quoted) at the start of `text`.
fn key_end(text: &str, name: &str) -> Option<usize> {
    let after_key = if let Some(rest) = text.strip_prefix(name) {
        text.len() - rest.len()
    } else {
        let quote = text.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        text[1..].find(quote)? + 2
    };
    text[after_key..].starts_with(':').then_some(after_key + 1)
}

/// Where the value written on a line starts and ends (byte offsets), `from` past the colon: a
/// comment after it is left out; a flow collection not closed on this line runs to its end.
fn inline_span(line: &str, from: usize) -> (usize, usize) {
    let start = from + (line.len() - from - line[from..].trim_start().len());
    let rest = &line[start..];
    let bytes = rest.as_bytes();
    let end = match bytes.first() {
        None | Some(b'#') => 0,
        Some(b'"') => closing_double_quote(rest).unwrap_or(rest.len()),
        Some(b'\'') => closing_single_quote(rest).unwrap_or(rest.len()),
        Some(b'[' | b'{') => closing_bracket(rest).unwrap_or(rest.len()),
        Some(_) => plain_end(rest),
    };
    (start, start + end)
}

fn closing_double_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (idx, c) in text.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(idx + 1),
            _ => {}
        }
    }
    None
}

fn closing_single_quote(text: &str) -> Option<usize> {
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((idx, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|(_, next)| *next == '\'') {
                chars.next();
            } else {
                return Some(idx + 1);
            }
        }
    }
    None
}

fn closing_bracket(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut idx = 0;
    while idx < text.len() {
        let rest = &text[idx..];
        let c = rest.chars().next()?;
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(idx + 1);
                }
            }
            '"' => idx += closing_double_quote(rest)? - 1,
            '\'' => idx += closing_single_quote(rest)? - 1,
            _ => {}
        }
        idx += c.len_utf8();
    }
    None
}

/// A plain scalar ends where a comment (` #`) starts, trailing spaces left out.
fn plain_end(text: &str) -> usize {
    let cut = text
        .char_indices()
        .find(|(idx, c)| *c == '#' && text[..*idx].ends_with([' ', '\t']))
        .map_or(text.len(), |(idx, _)| idx);
    text[..cut].trim_end().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_values_stop_at_their_comment_and_quotes_are_honoured() {
        fn span(line: &str) -> &str {
            let (start, end) = inline_span(line, line.find(':').unwrap() + 1);
            &line[start..end]
        }
        assert_eq!(span("a: 1 # one"), "1");
        assert_eq!(span("a: x#y"), "x#y");
        assert_eq!(span("a: \"q # \\\" \" # c"), "\"q # \\\" \"");
        assert_eq!(span("a: 'it''s' # c"), "'it''s'");
        assert_eq!(span("a: [x, \"]\"] # c"), "[x, \"]\"]");
        assert_eq!(span("a:   # only a comment"), "");
        assert_eq!(span("a:"), "");
    }

    #[test]
    fn line_endings_and_the_final_newline_survive() {
        for text in ["a: 1\r\nb: 2\r\n", "a: 1\nb: 2", "a: 1\n", ""] {
            assert_eq!(Text::new(text).render(), text);
        }
    }
}
