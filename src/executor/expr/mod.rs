//! GitHub's expression language: `${{ }}` interpolation, `if:` conditions, and the bare
//! expressions inside them, evaluated against the job's contexts.
//!
//! One stage per file, as jmespath.rs splits it: [`lexer`] (text → tokens with spans and binding
//! powers), [`parser`] (a Pratt parser behind [`parse`]), [`ast`] (nodes with spans), [`eval`]
//! (one match over the tree), [`functions`] (the built-ins with signatures checked before the call),
//! [`value`] (values and coercions), [`error`] (positions and carets), [`template`] (finding
//! `${{ }}` in strings). Parsing never panics and every error carries a position.
//!
//! May use: nothing else of the crate; the executor hands in contexts as [`Value`]s.
//!
//! ```
//! use act_runner::executor::expr::{EvalContext, JobStatus, Value, interpolate};
//! let mut contexts = indexmap::IndexMap::new();
//! contexts.insert("matrix".to_owned(), Value::from(serde_json::json!({"os": "debian"})));
//! let ctx = EvalContext { contexts: &contexts, status: JobStatus::Success, hash_files: None };
//! assert_eq!(interpolate("runs on ${{ matrix.OS }}", &ctx).unwrap(), "runs on debian");
//! ```

pub mod ast;
pub mod error;
pub mod eval;
pub mod functions;
pub mod lexer;
pub mod parser;
pub mod template;
pub mod value;

#[cfg(test)]
mod tests;

use indexmap::IndexMap;

pub use ast::{Expr, Span};
pub use error::{ExprError, ExprErrorKind};
pub use parser::parse;
pub use value::Value;

/// The job's state as the status functions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Success,
    Failure,
    Cancelled,
}

/// The callback that computes `hashFiles(patterns)` on the job's backend.
pub type HashFilesFn = dyn Fn(&[String]) -> Result<String, String> + Sync;

/// Everything an expression can see.
pub struct EvalContext<'a> {
    /// The contexts by name (`github`, `env`, `matrix`, `steps`, ...), looked up case-insensitively.
    pub contexts: &'a IndexMap<String, Value>,
    /// What `success()`, `failure()` and `cancelled()` report.
    pub status: JobStatus,
    /// `hashFiles` as the backend provides it; `None` makes `hashFiles` an error.
    pub hash_files: Option<&'a HashFilesFn>,
}

/// Evaluates a bare expression (without `${{ }}`).
pub fn evaluate(source: &str, ctx: &EvalContext) -> Result<Value, ExprError> {
    let root = parse(source)?;
    eval::evaluate_expr(&root, source, ctx)
}

/// Evaluates an `if:` value, written with or without `${{ }}`. Unless it calls a status function
/// it means `success() && (...)`; an empty condition means `success()`. A value mixing text and
/// `${{ }}` is a string, true when not empty (as on GitHub). Error positions are relative to
/// `source`.
pub fn evaluate_if(source: &str, ctx: &EvalContext) -> Result<bool, ExprError> {
    evaluate_condition(source, ctx, matches!(ctx.status, JobStatus::Success))
}

/// Evaluates a `post-if` as written: like [`evaluate_if`], but the status check a condition
/// without a status function implies is `always()`, not `success()` (as upstream evaluates the
/// post stage of an action).
pub fn evaluate_post_if(source: &str, ctx: &EvalContext) -> Result<bool, ExprError> {
    evaluate_condition(source, ctx, true)
}

/// A condition whose implied status check (applied unless it calls a status function) gave
/// `implied`.
fn evaluate_condition(source: &str, ctx: &EvalContext, implied: bool) -> Result<bool, ExprError> {
    match parse_if(source)? {
        IfCondition::Empty => Ok(implied),
        IfCondition::Text => Ok(implied && !interpolate(source, ctx)?.is_empty()),
        IfCondition::Expression { root, text, base } => {
            if !root.uses_status_function() && !implied {
                return Ok(false);
            }
            let value = eval::evaluate_expr(&root, text, ctx)
                .map_err(|error| error.within(source, base))?;
            Ok(value.is_truthy())
        }
    }
}

/// Whether an `if:` value calls a status function, so that it is not read as
/// `success() && (...)`. Error positions are relative to `source`.
pub fn if_uses_status_function(source: &str) -> Result<bool, ExprError> {
    Ok(match parse_if(source)? {
        IfCondition::Expression { root, .. } => root.uses_status_function(),
        IfCondition::Empty | IfCondition::Text => false,
    })
}

/// An `if:` value as written: empty, one expression (with or without `${{ }}`), or text mixed
/// with `${{ }}`, which is a string.
enum IfCondition<'a> {
    Empty,
    Text,
    Expression {
        root: ast::Expr,
        text: &'a str,
        base: usize,
    },
}

fn parse_if(source: &str) -> Result<IfCondition<'_>, ExprError> {
    let trimmed = source.trim();
    let trimmed_offset = source.len() - source.trim_start().len();
    if trimmed.is_empty() {
        return Ok(IfCondition::Empty);
    }
    let embedded = template::find_embedded(source)?;
    let (text, base) = match embedded.as_slice() {
        [] => (trimmed, trimmed_offset),
        [only] if only.start == trimmed_offset && only.end == trimmed_offset + trimmed.len() => {
            (&source[only.inner.start..only.inner.end], only.inner.start)
        }
        _ => return Ok(IfCondition::Text),
    };
    let root = parse(text).map_err(|error| error.within(source, base))?;
    Ok(IfCondition::Expression { root, text, base })
}

/// Replaces every `${{ expr }}` in `template` by the expression's value as a string
/// ([`Value::to_scalar_string`]). Error positions are relative to `template`.
pub fn interpolate(template: &str, ctx: &EvalContext) -> Result<String, ExprError> {
    let mut out = String::with_capacity(template.len());
    let mut copied_to = 0;
    for embedded in template::find_embedded(template)? {
        let value = evaluate_embedded(template, embedded, ctx)?.to_scalar_string();
        let literal = &template[copied_to..embedded.start];
        if out.len() + literal.len() + value.len() > value::MAX_VALUE_BYTES {
            return Err(ExprError::new(
                ExprErrorKind::Evaluation,
                format!(
                    "the template would build a value larger than {} bytes, the most an expression may produce",
                    value::MAX_VALUE_BYTES
                ),
                Span {
                    start: embedded.start,
                    end: embedded.end,
                },
                template,
            ));
        }
        out.push_str(literal);
        out.push_str(&value);
        copied_to = embedded.end;
    }
    out.push_str(&template[copied_to..]);
    Ok(out)
}

/// Like [`interpolate`], but a template that is exactly one `${{ }}` (surrounding whitespace
/// aside) keeps its value's type, as GitHub does for `matrix`, `runs-on`, `with:` and such.
pub fn interpolate_value(template: &str, ctx: &EvalContext) -> Result<Value, ExprError> {
    let trimmed_offset = template.len() - template.trim_start().len();
    let trimmed_end = template.trim_end().len();
    match template::find_embedded(template)?.as_slice() {
        [only] if only.start == trimmed_offset && only.end == trimmed_end => {
            evaluate_embedded(template, *only, ctx)
        }
        _ => interpolate(template, ctx).map(Value::String),
    }
}

/// Whether `s` holds a `${{` that needs interpolating.
pub fn contains_expression(s: &str) -> bool {
    s.contains("${{")
}

fn evaluate_embedded(
    template: &str,
    embedded: template::Embedded,
    ctx: &EvalContext,
) -> Result<Value, ExprError> {
    let source = &template[embedded.inner.start..embedded.inner.end];
    evaluate(source, ctx).map_err(|error| error.within(template, embedded.inner.start))
}
