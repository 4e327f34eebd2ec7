//! Parser: a private Pratt parser over the lexer's tokens behind one public [`parse`]. Function
//! names are resolved and arities checked here, so a bad call fails before anything runs.
//! May use: `lexer`, `ast`, `error`, `functions`.

use super::ast::{BinaryOp, Expr, ExprKind, Span};
use super::error::{ExprError, ExprErrorKind};
use super::functions::Function;
use super::lexer::{Token, tokenize};

/// How deeply nodes may nest, as GitHub limits it; it also bounds the evaluator's recursion.
pub const MAX_DEPTH: usize = 50;
/// The longest expression accepted, as GitHub limits it.
pub const MAX_LENGTH: usize = 21_000;

/// Binding power of the prefix `!`: tighter than every binary operator, looser than `.` and `[`.
const NOT_BP: u8 = 50;

/// Parses a bare expression (no `${{ }}`) into its syntax tree.
pub fn parse(source: &str) -> Result<Expr, ExprError> {
    if source.len() > MAX_LENGTH {
        let span = Span {
            start: MAX_LENGTH,
            end: source.len(),
        };
        let message = format!("the expression is longer than {MAX_LENGTH} bytes");
        return Err(ExprError::new(ExprErrorKind::Syntax, message, span, source));
    }
    let tokens = tokenize(source)?;
    let mut parser = Parser {
        source,
        tokens,
        token_idx: 0,
        depth: 0,
    };
    let root = parser.expression(0)?;
    match parser.peek() {
        Token::Eof => Ok(root),
        token => Err(parser.error(
            format!("unexpected {} after the expression", token.describe()),
            parser.peek_span(),
        )),
    }
}

struct Parser<'s> {
    source: &'s str,
    tokens: Vec<(Span, Token)>,
    token_idx: usize,
    /// Nesting depth of the node being built along the current path of the tree.
    depth: usize,
}

impl Parser<'_> {
    fn expression(&mut self, rbp: u8) -> Result<Expr, ExprError> {
        let saved_depth = self.depth;
        self.descend()?;
        let mut left = self.prefix()?;
        // As on GitHub, only a context, a call or a parenthesised group can be dereferenced.
        let mut derefable = matches!(left.kind, ExprKind::Context(_) | ExprKind::Call { .. })
            || self.source[left.span.start..].starts_with('(');
        while rbp < self.peek().lbp() {
            self.descend()?;
            if !derefable && matches!(self.peek(), Token::Dot | Token::LeftBracket) {
                let message = format!("unexpected {} after a literal", self.peek().describe());
                return Err(self.error(message, self.peek_span()));
            }
            left = self.infix(left)?;
            derefable = true;
        }
        self.depth = saved_depth;
        Ok(left)
    }

    fn descend(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let message = format!("the expression nests deeper than {MAX_DEPTH} levels");
            return Err(self.error(message, self.peek_span()));
        }
        Ok(())
    }

    fn prefix(&mut self) -> Result<Expr, ExprError> {
        let (span, token) = self.advance();
        let kind = match token {
            Token::Null => ExprKind::Null,
            Token::True => ExprKind::Bool(true),
            Token::False => ExprKind::Bool(false),
            Token::Number(n) => ExprKind::Number(n),
            Token::String(s) => ExprKind::String(s),
            Token::Identifier(name) if *self.peek() == Token::LeftParen => {
                return self.call(name, span);
            }
            Token::Identifier(name) => ExprKind::Context(name),
            Token::LeftParen => {
                let inner = self.expression(0)?;
                let close = self.expect(Token::RightParen, "')' to close the '('")?;
                return Ok(Expr {
                    span: span.to(close),
                    ..inner
                });
            }
            Token::Not => {
                let operand = self.expression(NOT_BP)?;
                let span = span.to(operand.span);
                return Ok(Expr {
                    kind: ExprKind::Not(Box::new(operand)),
                    span,
                });
            }
            Token::Eof => return Err(self.error("expected an expression", span)),
            token => return Err(self.error(format!("unexpected {}", token.describe()), span)),
        };
        Ok(Expr { kind, span })
    }

    fn infix(&mut self, left: Expr) -> Result<Expr, ExprError> {
        let (op_span, token) = self.advance();
        let op = match token {
            Token::Dot => return self.property(left),
            Token::LeftBracket => return self.index(left),
            Token::Lt => BinaryOp::Lt,
            Token::Le => BinaryOp::Le,
            Token::Gt => BinaryOp::Gt,
            Token::Ge => BinaryOp::Ge,
            Token::Eq => BinaryOp::Eq,
            Token::Ne => BinaryOp::Ne,
            Token::And => BinaryOp::And,
            Token::Or => BinaryOp::Or,
            token => return Err(self.error(format!("unexpected {}", token.describe()), op_span)),
        };
        // Left-associative: the right side binds only what binds tighter than this operator.
        let right = self.expression(token.lbp())?;
        let span = left.span.to(right.span);
        Ok(Expr {
            kind: ExprKind::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            },
            span,
        })
    }

    fn property(&mut self, base: Expr) -> Result<Expr, ExprError> {
        let (span, token) = self.advance();
        let name = match token {
            Token::Star => {
                let span = base.span.to(span);
                return Ok(Expr {
                    kind: ExprKind::Wildcard {
                        base: Box::new(base),
                    },
                    span,
                });
            }
            Token::Identifier(name) => name,
            Token::Number(_) if self.source[span.start..span.end] == *"NaN" => "NaN".to_owned(),
            Token::Number(_) if self.source[span.start..span.end] == *"Infinity" => {
                "Infinity".to_owned()
            }
            token => {
                let message = format!(
                    "expected a property name or '*' after '.', found {}",
                    token.describe()
                );
                return Err(self.error(message, span));
            }
        };
        let span = base.span.to(span);
        Ok(Expr {
            kind: ExprKind::Property {
                base: Box::new(base),
                name,
            },
            span,
        })
    }

    fn index(&mut self, base: Expr) -> Result<Expr, ExprError> {
        if *self.peek() == Token::Star {
            self.advance();
            let close = self.expect(Token::RightBracket, "']' after '[*'")?;
            let span = base.span.to(close);
            return Ok(Expr {
                kind: ExprKind::Wildcard {
                    base: Box::new(base),
                },
                span,
            });
        }
        let index = self.expression(0)?;
        let close = self.expect(Token::RightBracket, "']' to close the '['")?;
        let span = base.span.to(close);
        Ok(Expr {
            kind: ExprKind::Index {
                base: Box::new(base),
                index: Box::new(index),
            },
            span,
        })
    }

    fn call(&mut self, name: String, name_span: Span) -> Result<Expr, ExprError> {
        let Some(function) = Function::lookup(&name) else {
            return Err(self.error(format!("unknown function '{name}'"), name_span));
        };
        self.advance(); // the '('
        let mut args = Vec::new();
        let close = if *self.peek() == Token::RightParen {
            self.advance().0
        } else {
            loop {
                args.push(self.expression(0)?);
                let (span, token) = self.advance();
                match token {
                    Token::Comma => continue,
                    Token::RightParen => break span,
                    token => {
                        let message = format!(
                            "expected ',' or ')' in the call of {name}, found {}",
                            token.describe()
                        );
                        return Err(self.error(message, span));
                    }
                }
            }
        };
        let span = name_span.to(close);
        function
            .check_arity(args.len())
            .map_err(|message| self.error(message, span))?;
        Ok(Expr {
            kind: ExprKind::Call { function, args },
            span,
        })
    }

    fn expect(&mut self, expected: Token, what: &str) -> Result<Span, ExprError> {
        let (span, token) = self.advance();
        if token == expected {
            Ok(span)
        } else {
            Err(self.error(format!("expected {what}, found {}", token.describe()), span))
        }
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.token_idx.min(self.tokens.len() - 1)].1
    }

    fn peek_span(&self) -> Span {
        self.tokens[self.token_idx.min(self.tokens.len() - 1)].0
    }

    /// Takes the next token; at the end it keeps returning `Eof`.
    fn advance(&mut self) -> (Span, Token) {
        let idx = self.token_idx.min(self.tokens.len() - 1);
        self.token_idx = idx + 1;
        self.tokens[idx].clone()
    }

    fn error(&self, message: impl Into<String>, span: Span) -> ExprError {
        ExprError::new(ExprErrorKind::Syntax, message, span, self.source)
    }
}
