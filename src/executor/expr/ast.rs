//! The expression syntax tree. Every node carries the byte span of its source text so an error
//! raised while evaluating it can point at it. May use: `functions` (for the resolved `Function`).

use super::functions::Function;

/// A half-open byte range `start..end` within the expression source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A parsed expression: the root of the tree, and every node within it.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// The node kinds of GitHub's expression language.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// `null`
    Null,
    /// `true`, `false`
    Bool(bool),
    /// `42`, `-2.5e3`, `0xff`, `NaN`, `Infinity`
    Number(f64),
    /// `'it''s'` (the value has the escapes resolved)
    String(String),
    /// A context name such as `github` or `matrix`, looked up case-insensitively.
    Context(String),
    /// `base.name`: property access, `null` when absent.
    Property { base: Box<Expr>, name: String },
    /// `base[index]`: index into an array or key into an object, `null` when absent.
    Index { base: Box<Expr>, index: Box<Expr> },
    /// `base.*` or `base[*]`: the object filter, every element or property value of `base`.
    Wildcard { base: Box<Expr> },
    /// `!operand`
    Not(Box<Expr>),
    /// `left op right` for the comparison and logical operators.
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `name(args...)`, with the name resolved and the arity checked by the parser.
    Call { function: Function, args: Vec<Expr> },
}

/// The binary operators, in no particular order (precedence lives in the parser).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl Expr {
    /// Whether the expression calls `success()`, `failure()`, `cancelled()` or `always()`
    /// anywhere; an `if:` that does is not wrapped in the implicit `success() && (...)`.
    pub fn uses_status_function(&self) -> bool {
        match &self.kind {
            ExprKind::Null
            | ExprKind::Bool(_)
            | ExprKind::Number(_)
            | ExprKind::String(_)
            | ExprKind::Context(_) => false,
            ExprKind::Property { base, .. } | ExprKind::Wildcard { base } | ExprKind::Not(base) => {
                base.uses_status_function()
            }
            ExprKind::Index {
                base: left,
                index: right,
            }
            | ExprKind::Binary { left, right, .. } => {
                left.uses_status_function() || right.uses_status_function()
            }
            ExprKind::Call { function, args } => {
                function.is_status() || args.iter().any(Expr::uses_status_function)
            }
        }
    }
}
