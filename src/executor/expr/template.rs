//! Templates: finding every `${{ ... }}` in a string with quote awareness, so a `}}` inside a
//! string literal does not close the expression. May use: `ast`, `error`.

use super::ast::Span;
use super::error::{ExprError, ExprErrorKind};

/// One `${{ ... }}` in a template, as byte offsets into the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    /// Where `${{` starts.
    pub start: usize,
    /// The expression between the braces: `inner.start` is just after `${{`.
    pub inner: Span,
    /// Just after the closing `}}`.
    pub end: usize,
}

const OPEN: &str = "${{";
const CLOSE: &str = "}}";

/// Every embedded expression, in order; an unclosed `${{` is an error at its position.
pub fn find_embedded(template: &str) -> Result<Vec<Embedded>, ExprError> {
    let mut found = Vec::new();
    let mut search_from = 0;
    while let Some(relative) = template[search_from..].find(OPEN) {
        let start = search_from + relative;
        let inner_start = start + OPEN.len();
        let Some(inner_end) = closing_braces(template, inner_start) else {
            let span = Span {
                start,
                end: inner_start,
            };
            return Err(ExprError::new(
                ExprErrorKind::Syntax,
                "'${{' is never closed by '}}'",
                span,
                template,
            ));
        };
        let end = inner_end + CLOSE.len();
        found.push(Embedded {
            start,
            inner: Span {
                start: inner_start,
                end: inner_end,
            },
            end,
        });
        search_from = end;
    }
    Ok(found)
}

/// The offset of the `}}` that closes an expression starting at `from`, skipping string literals
/// (a `''` escape toggles twice and so stays inside the string).
fn closing_braces(template: &str, from: usize) -> Option<usize> {
    let mut in_string = false;
    for (idx, c) in template[from..].char_indices() {
        let idx = from + idx;
        if c == '\'' {
            in_string = !in_string;
        } else if !in_string && template[idx..].starts_with(CLOSE) {
            return Some(idx);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_braces_inside_a_string_literal_do_not_close_the_expression() {
        let template = "a ${{ format('}}{0}', 1) }} b";
        let found = find_embedded(template).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            &template[found[0].inner.start..found[0].inner.end],
            " format('}}{0}', 1) "
        );
        assert_eq!(&template[found[0].end..], " b");
    }

    #[test]
    fn an_unclosed_expression_is_an_error_at_its_opening() {
        let error = find_embedded("echo ${{ github.sha").unwrap_err();
        assert_eq!((error.line, error.column), (1, 6));
    }
}
