//! The expression error: a message plus the span of the culprit, turned into a 1-based line and
//! column and a caret line under the source. May use: `ast` (for `Span`).

use std::fmt;

use super::ast::Span;

/// What stage rejected the expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExprErrorKind {
    /// The text is not a well-formed expression (bad token, unexpected token, wrong arity, unknown
    /// function, nesting too deep, unclosed `${{`).
    Syntax,
    /// The expression is well formed but evaluating it failed (unknown context, bad `format`
    /// string, invalid JSON for `fromJSON`, `hashFiles` failing, an argument of the wrong type).
    Evaluation,
}

/// An error with the position of its culprit inside the expression source.
///
/// `offset` is a byte offset into the source the error was raised for (the bare expression for
/// [`super::parse`] and [`super::evaluate`], the whole template for [`super::interpolate`]);
/// `line` and `column` are 1-based, the column counted in characters. A caller that knows where
/// the source sits in a file adds its own position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub kind: ExprErrorKind,
    pub message: String,
    pub offset: usize,
    pub len: usize,
    pub line: usize,
    pub column: usize,
    source_line: String,
}

impl ExprError {
    pub(crate) fn new(
        kind: ExprErrorKind,
        message: impl Into<String>,
        span: Span,
        source: &str,
    ) -> Self {
        let offset = floor_char_boundary(source, span.start.min(source.len()));
        let end = floor_char_boundary(source, span.end.clamp(offset, source.len()));
        let line_start = source[..offset].rfind('\n').map_or(0, |idx| idx + 1);
        let line_end = source[offset..]
            .find('\n')
            .map_or(source.len(), |idx| offset + idx);
        ExprError {
            kind,
            message: message.into(),
            offset,
            len: end - offset,
            line: source[..offset].matches('\n').count() + 1,
            column: source[line_start..offset].chars().count() + 1,
            source_line: source[line_start..line_end].to_owned(),
        }
    }

    /// The same error positioned relative to `outer`, in which this error's source starts at byte
    /// `base`. Used when an expression is cut out of a `${{ }}` template.
    pub(crate) fn within(self, outer: &str, base: usize) -> Self {
        let span = Span {
            start: base + self.offset,
            end: base + self.offset + self.len,
        };
        ExprError::new(self.kind, self.message, span, outer)
    }
}

fn floor_char_boundary(source: &str, mut idx: usize) -> usize {
    while !source.is_char_boundary(idx) {
        idx -= 1;
    }
    idx
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if self.source_line.is_empty() {
            return Ok(());
        }
        let n_underline = self.source_line[self.column_byte()..]
            .chars()
            .take(self.len.max(1))
            .scan(0usize, |n_bytes, c| {
                *n_bytes += c.len_utf8();
                (*n_bytes <= self.len.max(1)).then_some(())
            })
            .count()
            .max(1);
        write!(
            f,
            "\n  {}\n  {}{}",
            self.source_line,
            " ".repeat(self.column - 1),
            "^".repeat(n_underline)
        )
    }
}

impl ExprError {
    fn column_byte(&self) -> usize {
        self.source_line
            .char_indices()
            .nth(self.column - 1)
            .map_or(self.source_line.len(), |(idx, _)| idx)
    }
}

impl std::error::Error for ExprError {}
