//! Evaluator: one recursive match over the syntax tree. Context values are borrowed, not cloned,
//! while they are only looked into; that also gives arrays and objects their identity, since
//! GitHub calls two of them equal only when they are the same instance.
//! May use: `ast`, `error`, `functions`, `value`, `mod` (for `EvalContext`).

use std::borrow::Cow;
use std::cmp::Ordering;

use super::EvalContext;
use super::ast::{BinaryOp, Expr, ExprKind};
use super::error::{ExprError, ExprErrorKind};
use super::functions::Function;
use super::value::{Value, lookup_key, lookup_key_index, loose_compare, loose_equals};

/// Contexts the runner defines even when a job leaves them empty; naming one that the caller did
/// not supply gives `null`, while an unknown name is an error.
const KNOWN_CONTEXTS: &[&str] = &[
    "github", "gitea", "env", "vars", "secrets", "inputs", "matrix", "needs", "steps", "job",
    "jobs", "runner", "strategy",
];

/// Evaluates a parsed expression; `source` is the text it was parsed from, for error positions.
pub fn evaluate_expr(root: &Expr, source: &str, ctx: &EvalContext<'_>) -> Result<Value, ExprError> {
    let evaluator = Evaluator { source, ctx };
    Ok(evaluator.eval(root)?.into_value())
}

/// An intermediate result: a single value, or the array an object filter (`*`) produced, which
/// later property and index steps apply to element by element.
enum Operand<'a> {
    Single(Cow<'a, Value>),
    Filtered(Vec<Cow<'a, Value>>),
}

impl<'a> Operand<'a> {
    fn owned(value: Value) -> Self {
        Operand::Single(Cow::Owned(value))
    }

    fn into_value(self) -> Value {
        match self {
            Operand::Single(value) => value.into_owned(),
            Operand::Filtered(items) => {
                Value::Array(items.into_iter().map(Cow::into_owned).collect())
            }
        }
    }

    fn is_truthy(&self) -> bool {
        match self {
            Operand::Single(value) => value.is_truthy(),
            Operand::Filtered(_) => true,
        }
    }
}

/// How a property or index step selects a child.
enum Selector {
    Name(String),
    Index(Value),
}

struct Evaluator<'a, 'c> {
    source: &'a str,
    ctx: &'a EvalContext<'c>,
}

impl<'a, 'c: 'a> Evaluator<'a, 'c> {
    fn eval(&self, node: &Expr) -> Result<Operand<'a>, ExprError> {
        Ok(match &node.kind {
            ExprKind::Null => Operand::owned(Value::Null),
            ExprKind::Bool(b) => Operand::owned(Value::Bool(*b)),
            ExprKind::Number(n) => Operand::owned(Value::Number(*n)),
            ExprKind::String(s) => Operand::owned(Value::String(s.clone())),
            ExprKind::Context(name) => self.context(name, node)?,
            ExprKind::Property { base, name } => {
                select(self.eval(base)?, &Selector::Name(name.clone()))
            }
            ExprKind::Index { base, index } => {
                let base = self.eval(base)?;
                let index = self.eval(index)?.into_value();
                select(base, &Selector::Index(index))
            }
            ExprKind::Wildcard { base } => wildcard(self.eval(base)?),
            ExprKind::Not(operand) => Operand::owned(Value::Bool(!self.eval(operand)?.is_truthy())),
            ExprKind::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                let left = self.eval(left)?;
                if left.is_truthy() {
                    self.eval(right)?
                } else {
                    left
                }
            }
            ExprKind::Binary {
                op: BinaryOp::Or,
                left,
                right,
            } => {
                let left = self.eval(left)?;
                if left.is_truthy() {
                    left
                } else {
                    self.eval(right)?
                }
            }
            ExprKind::Binary { op, left, right } => {
                let left = self.eval(left)?;
                let right = self.eval(right)?;
                Operand::owned(Value::Bool(compare(*op, &left, &right)))
            }
            ExprKind::Call {
                function: Function::Contains,
                args,
            } if args.len() == 2 => {
                let search = self.eval(&args[0])?;
                let item = self.eval(&args[1])?;
                if contains_same_instance(&search, &item) {
                    return Ok(Operand::owned(Value::Bool(true)));
                }
                let values = [search.into_value(), item.into_value()];
                Operand::owned(
                    Function::Contains
                        .call(&values, self.ctx)
                        .map_err(|message| self.error(message, node))?,
                )
            }
            ExprKind::Call { function, args } => {
                let mut values = Vec::with_capacity(args.len());
                for (arg_idx, arg) in args.iter().enumerate() {
                    let value = self.eval(arg)?.into_value();
                    function
                        .check_argument(arg_idx, &value)
                        .map_err(|message| self.error(message, arg))?;
                    values.push(value);
                }
                Operand::owned(
                    function
                        .call(&values, self.ctx)
                        .map_err(|message| self.error(message, node))?,
                )
            }
        })
    }

    fn context(&self, name: &str, node: &Expr) -> Result<Operand<'a>, ExprError> {
        if let Some(value) = lookup_key(self.ctx.contexts, name) {
            return Ok(Operand::Single(Cow::Borrowed(value)));
        }
        if KNOWN_CONTEXTS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(name))
        {
            return Ok(Operand::owned(Value::Null));
        }
        Err(self.error(format!("unrecognized named-value '{name}'"), node))
    }

    fn error(&self, message: String, node: &Expr) -> ExprError {
        ExprError::new(ExprErrorKind::Evaluation, message, node.span, self.source)
    }
}

/// A comparison operator applied with GitHub's coercions; `<=` and `>=` are "equal or less"
/// and "equal or greater", so an array is `<=` itself.
fn compare(op: BinaryOp, left: &Operand<'_>, right: &Operand<'_>) -> bool {
    let ordering = || match (left, right) {
        (Operand::Single(left), Operand::Single(right)) => loose_compare(left, right),
        // A filter result is an array: it has no order.
        _ => None,
    };
    match op {
        BinaryOp::Eq => operands_equal(left, right),
        BinaryOp::Ne => !operands_equal(left, right),
        BinaryOp::Lt => ordering().is_some_and(Ordering::is_lt),
        BinaryOp::Gt => ordering().is_some_and(Ordering::is_gt),
        BinaryOp::Le => operands_equal(left, right) || ordering().is_some_and(Ordering::is_lt),
        BinaryOp::Ge => operands_equal(left, right) || ordering().is_some_and(Ordering::is_gt),
        // The caller short-circuits `&&` and `||` and never hands them here.
        BinaryOp::And | BinaryOp::Or => false,
    }
}

/// Loose equality, where an array or object equals only the very same context value.
fn operands_equal(left: &Operand<'_>, right: &Operand<'_>) -> bool {
    match (left, right) {
        (Operand::Single(Cow::Borrowed(a)), Operand::Single(Cow::Borrowed(b)))
            if matches!(a, Value::Array(_) | Value::Object(_)) =>
        {
            std::ptr::eq(*a, *b)
        }
        (Operand::Single(a), Operand::Single(b)) => loose_equals(a, b),
        // A filter result is a fresh array, equal to nothing.
        _ => false,
    }
}

/// Whether an array (or filter result) holds the very array or object `item` is: `contains`
/// compares elements with `==`, where those are equal only to themselves. Values compare by
/// content afterwards, in the function itself.
fn contains_same_instance(search: &Operand<'_>, item: &Operand<'_>) -> bool {
    let Operand::Single(Cow::Borrowed(item @ (Value::Array(_) | Value::Object(_)))) = item else {
        return false;
    };
    let is_item = |element: &Value| std::ptr::eq(element, *item);
    match search {
        Operand::Single(Cow::Borrowed(Value::Array(elements))) => elements.iter().any(is_item),
        Operand::Filtered(elements) => elements.iter().any(|element| match element {
            Cow::Borrowed(element) => is_item(element),
            Cow::Owned(_) => false,
        }),
        _ => false,
    }
}

/// One property or index step; on a filter result it applies to each element and keeps the hits.
fn select<'a>(base: Operand<'a>, selector: &Selector) -> Operand<'a> {
    match base {
        Operand::Single(value) => {
            Operand::Single(select_child(value, selector).unwrap_or(Cow::Owned(Value::Null)))
        }
        Operand::Filtered(items) => Operand::Filtered(
            items
                .into_iter()
                .filter_map(|item| select_child(item, selector))
                .collect(),
        ),
    }
}

fn select_child<'a>(value: Cow<'a, Value>, selector: &Selector) -> Option<Cow<'a, Value>> {
    match value {
        Cow::Borrowed(value) => {
            child_index(value, selector).map(|idx| Cow::Borrowed(child_at(value, idx)))
        }
        Cow::Owned(value) => {
            let idx = child_index(&value, selector)?;
            Some(Cow::Owned(match value {
                Value::Array(mut items) => items.swap_remove(idx),
                Value::Object(mut map) => map.swap_remove_index(idx).map(|(_, child)| child)?,
                _ => return None,
            }))
        }
    }
}

/// Where the selected child sits among the array's items or the object's entries.
fn child_index(value: &Value, selector: &Selector) -> Option<usize> {
    match (value, selector) {
        (Value::Object(map), Selector::Name(name)) => lookup_key_index(map, name),
        (Value::Object(map), Selector::Index(key)) => match key {
            Value::Array(_) | Value::Object(_) => None,
            key => lookup_key_index(map, &key.to_scalar_string()),
        },
        (Value::Array(items), Selector::Index(index)) => {
            let position = index.to_number();
            // Fractions are truncated, as GitHub does; negatives and NaN select nothing.
            (position >= 0.0 && position < items.len() as f64).then_some(position as usize)
        }
        _ => None,
    }
}

fn child_at(value: &Value, idx: usize) -> &Value {
    match value {
        Value::Array(items) => &items[idx],
        Value::Object(map) => &map[idx],
        // child_index only returns positions inside arrays and objects.
        _ => value,
    }
}

/// The object filter: every item of an array or value of an object (nothing for anything
/// else); on a filter result, one level flattened.
fn wildcard(base: Operand<'_>) -> Operand<'_> {
    match base {
        Operand::Single(value) => match children(value) {
            Some(items) => Operand::Filtered(items),
            None => Operand::Filtered(Vec::new()),
        },
        Operand::Filtered(items) => {
            Operand::Filtered(items.into_iter().filter_map(children).flatten().collect())
        }
    }
}

fn children(value: Cow<'_, Value>) -> Option<Vec<Cow<'_, Value>>> {
    match value {
        Cow::Borrowed(Value::Array(items)) => Some(items.iter().map(Cow::Borrowed).collect()),
        Cow::Borrowed(Value::Object(map)) => Some(map.values().map(Cow::Borrowed).collect()),
        Cow::Owned(Value::Array(items)) => Some(items.into_iter().map(Cow::Owned).collect()),
        Cow::Owned(Value::Object(map)) => Some(map.into_values().map(Cow::Owned).collect()),
        _ => None,
    }
}
