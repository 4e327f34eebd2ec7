//! The built-in functions: a table of names (matched case-insensitively), arities and argument
//! types that the parser and evaluator check before a call, and each function's body.
//! May use: `value`, `mod` (for `EvalContext` and `JobStatus`).

use super::value::{
    MAX_VALUE_BYTES, Value, contains_ignore_case, ends_with_ignore_case, loose_equals,
    starts_with_ignore_case,
};
use super::{EvalContext, JobStatus};

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
    HashFiles,
    Success,
    Always,
    Cancelled,
    Failure,
}

/// What an argument may be. Checked before the call; a mismatch is an error at the argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgumentType {
    /// Anything; the function coerces it.
    Any,
    /// `null`, a boolean, a number or a string (converted to a string by the function), never
    /// an array or object.
    Scalar,
}

/// How many arguments a function takes and of which types.
#[derive(Debug, Clone, Copy)]
pub struct Signature {
    pub min_args: usize,
    /// `None`: any number of further arguments, each of the type of the last listed one.
    pub max_args: Option<usize>,
    pub types: &'static [ArgumentType],
}

use ArgumentType::{Any, Scalar};

/// One row per function: the documented spelling, arity and argument types.
#[rustfmt::skip]
const TABLE: &[(Function, &str, Signature)] = &[
    (Function::Contains, "contains", Signature { min_args: 2, max_args: Some(2), types: &[Any, Any] }),
    (Function::StartsWith, "startsWith", Signature { min_args: 2, max_args: Some(2), types: &[Any, Any] }),
    (Function::EndsWith, "endsWith", Signature { min_args: 2, max_args: Some(2), types: &[Any, Any] }),
    (Function::Format, "format", Signature { min_args: 1, max_args: None, types: &[Any] }),
    (Function::Join, "join", Signature { min_args: 1, max_args: Some(2), types: &[Any, Any] }),
    (Function::ToJson, "toJSON", Signature { min_args: 1, max_args: Some(1), types: &[Any] }),
    (Function::FromJson, "fromJSON", Signature { min_args: 1, max_args: Some(1), types: &[Scalar] }),
    (Function::HashFiles, "hashFiles", Signature { min_args: 1, max_args: None, types: &[Scalar] }),
    (Function::Success, "success", Signature { min_args: 0, max_args: Some(0), types: &[] }),
    (Function::Always, "always", Signature { min_args: 0, max_args: Some(0), types: &[] }),
    (Function::Cancelled, "cancelled", Signature { min_args: 0, max_args: Some(0), types: &[] }),
    (Function::Failure, "failure", Signature { min_args: 0, max_args: Some(0), types: &[] }),
];

impl Function {
    /// Resolves a function name, ignoring case.
    pub fn lookup(name: &str) -> Option<Function> {
        TABLE
            .iter()
            .find(|(_, table_name, _)| table_name.eq_ignore_ascii_case(name))
            .map(|(function, _, _)| *function)
    }

    /// The canonical spelling, as GitHub documents it.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    pub fn signature(self) -> Signature {
        self.entry().2
    }

    fn entry(self) -> &'static (Function, &'static str, Signature) {
        TABLE
            .iter()
            .find(|(function, _, _)| *function == self)
            .expect("every Function has a TABLE row")
    }

    /// `success`, `always`, `cancelled` and `failure`.
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Function::Success | Function::Always | Function::Cancelled | Function::Failure
        )
    }

    /// Checks the argument count; the message says what was expected.
    pub fn check_arity(self, n_args: usize) -> Result<(), String> {
        let signature = self.signature();
        let too_few = n_args < signature.min_args;
        let too_many = signature.max_args.is_some_and(|max| n_args > max);
        if !too_few && !too_many {
            return Ok(());
        }
        let expected = match signature.max_args {
            Some(max) if max == signature.min_args => format!("exactly {max}"),
            Some(max) => format!("{} to {max}", signature.min_args),
            None => format!("at least {}", signature.min_args),
        };
        Err(format!(
            "{}() takes {expected} argument{}, got {n_args}",
            self.name(),
            if expected.ends_with('1') { "" } else { "s" }
        ))
    }

    /// Checks the type of argument `arg_idx`; the message names the function and the argument.
    pub fn check_argument(self, arg_idx: usize, value: &Value) -> Result<(), String> {
        let types = self.signature().types;
        let expected = types.get(arg_idx).or(types.last()).copied().unwrap_or(Any);
        match (expected, value) {
            (Scalar, Value::Array(_) | Value::Object(_)) => Err(format!(
                "{}() argument {} must be a string, number, boolean or null, got {}",
                self.name(),
                arg_idx + 1,
                value.kind_name()
            )),
            _ => Ok(()),
        }
    }

    /// Runs the function on already checked arguments. An `Err` is a message for the call site.
    pub fn call(self, args: &[Value], ctx: &EvalContext<'_>) -> Result<Value, String> {
        let arg = |idx: usize| args.get(idx).unwrap_or(&Value::Null);
        match self {
            Function::Contains => Ok(Value::Bool(contains(arg(0), arg(1)))),
            Function::StartsWith => Ok(Value::Bool(both_scalar(
                arg(0),
                arg(1),
                starts_with_ignore_case,
            ))),
            Function::EndsWith => Ok(Value::Bool(both_scalar(
                arg(0),
                arg(1),
                ends_with_ignore_case,
            ))),
            Function::Format => {
                format(&arg(0).to_scalar_string(), &args[1.min(args.len())..]).map(Value::String)
            }
            Function::Join => join(arg(0), args.get(1)).map(Value::String),
            Function::ToJson => {
                let json = arg(0).to_pretty_json();
                if json.len() > MAX_VALUE_BYTES {
                    return Err(too_large(self));
                }
                Ok(Value::String(json))
            }
            Function::FromJson => from_json(&arg(0).to_scalar_string()),
            Function::HashFiles => {
                let Some(hash_files) = ctx.hash_files else {
                    return Err("hashFiles is not available here".to_owned());
                };
                let patterns: Vec<String> = args.iter().map(Value::to_scalar_string).collect();
                hash_files(&patterns)
                    .map(Value::String)
                    .map_err(|reason| format!("hashFiles failed: {reason}"))
            }
            Function::Success => Ok(Value::Bool(matches!(ctx.status, JobStatus::Success))),
            Function::Always => Ok(Value::Bool(true)),
            Function::Cancelled => Ok(Value::Bool(matches!(ctx.status, JobStatus::Cancelled))),
            Function::Failure => Ok(Value::Bool(matches!(ctx.status, JobStatus::Failure))),
        }
    }
}

/// Applies a string test when both values are scalars (converted to strings); false otherwise.
fn both_scalar(left: &Value, right: &Value, test: fn(&str, &str) -> bool) -> bool {
    is_scalar(left) && is_scalar(right) && test(&left.to_scalar_string(), &right.to_scalar_string())
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

/// `contains(search, item)`: element loose equality when `search` is an array; a case-insensitive
/// substring test when both are scalars (converted to strings); false otherwise.
fn contains(search: &Value, item: &Value) -> bool {
    match search {
        Value::Array(items) => items.iter().any(|element| loose_equals(element, item)),
        Value::Object(_) => false,
        _ => both_scalar(search, item, contains_ignore_case),
    }
}

/// The error of a function whose result would pass [`MAX_VALUE_BYTES`].
fn too_large(function: Function) -> String {
    format!(
        "{}() would build a value larger than {MAX_VALUE_BYTES} bytes, the most an expression may produce",
        function.name()
    )
}

/// Appends `piece` unless that makes `out` pass [`MAX_VALUE_BYTES`]: checked before the copy,
/// so a result that would not fit is never allocated.
fn push_bounded(out: &mut String, piece: &str, function: Function) -> Result<(), String> {
    if out.len() + piece.len() > MAX_VALUE_BYTES {
        return Err(too_large(function));
    }
    out.push_str(piece);
    Ok(())
}

/// `join(array, separator = ',')`: array elements converted to strings and joined; a scalar is
/// converted itself, an object gives `''`. A separator that is not a scalar is ignored.
fn join(array: &Value, separator: Option<&Value>) -> Result<String, String> {
    let separator = separator
        .filter(|separator| is_scalar(separator))
        .map_or_else(|| ",".to_owned(), Value::to_scalar_string);
    match array {
        Value::Array(items) => {
            let mut out = String::new();
            for (item_idx, item) in items.iter().enumerate() {
                if item_idx > 0 {
                    push_bounded(&mut out, &separator, Function::Join)?;
                }
                push_bounded(&mut out, &item.to_scalar_string(), Function::Join)?;
            }
            Ok(out)
        }
        Value::Object(_) => Ok(String::new()),
        scalar => Ok(scalar.to_scalar_string()),
    }
}

/// `format(template, args...)`: `{N}` replaced by argument N, `{{` and `}}` are literal braces.
fn format(template: &str, args: &[Value]) -> Result<String, String> {
    let invalid = || format!("The following format string is invalid: {template}");
    let mut out = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|(_, next)| *next) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '{' => {
                let mut digits = String::new();
                loop {
                    match chars.next() {
                        Some((_, '}')) => break,
                        Some((_, d)) if d.is_ascii_digit() => digits.push(d),
                        _ => return Err(invalid()),
                    }
                }
                let arg_idx: usize = digits.parse().map_err(|_| invalid())?;
                let Some(arg) = args.get(arg_idx) else {
                    return Err(format!(
                        "The following format string references more arguments than were supplied: {template}"
                    ));
                };
                push_bounded(&mut out, &arg.to_scalar_string(), Function::Format)?;
            }
            '}' if chars.peek().map(|(_, next)| *next) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err(invalid()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `fromJSON(text)`: parses JSON; surrounding whitespace is allowed, anything else is an error.
fn from_json(text: &str) -> Result<Value, String> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(Value::from)
        .map_err(|json_error| format!("fromJSON: invalid JSON: {json_error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_has_one_table_row() {
        for (function, name, _) in TABLE {
            assert_eq!(Function::lookup(name), Some(*function));
            assert_eq!(Function::lookup(&name.to_uppercase()), Some(*function));
        }
    }

    #[test]
    fn format_and_join_stop_at_the_value_bound_before_building_it() {
        let big = Value::String("a".repeat(MAX_VALUE_BYTES / 2 + 1));
        let error = format("{0}{0}", std::slice::from_ref(&big)).unwrap_err();
        assert!(
            error.contains("format() would build a value larger than"),
            "{error}"
        );
        assert_eq!(
            format("{0}", std::slice::from_ref(&big)).unwrap().len(),
            MAX_VALUE_BYTES / 2 + 1
        );
        let error = join(&Value::Array(vec![big.clone(), big.clone()]), None).unwrap_err();
        assert!(error.contains("join()"), "{error}");
        let pair = Value::Array(vec![Value::String("x".into()), Value::String("y".into())]);
        assert_eq!(join(&pair, None).unwrap(), "x,y");
    }

    #[test]
    fn arity_messages_name_the_expected_count() {
        assert_eq!(
            Function::Contains.check_arity(1).unwrap_err(),
            "contains() takes exactly 2 arguments, got 1"
        );
        assert_eq!(
            Function::Join.check_arity(3).unwrap_err(),
            "join() takes 1 to 2 arguments, got 3"
        );
        assert_eq!(
            Function::Format.check_arity(0).unwrap_err(),
            "format() takes at least 1 argument, got 0"
        );
        assert_eq!(
            Function::Success.check_arity(1).unwrap_err(),
            "success() takes exactly 0 arguments, got 1"
        );
    }
}
