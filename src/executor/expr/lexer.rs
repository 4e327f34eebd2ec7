//! Lexer: turns expression text into `(Span, Token)` pairs and gives each operator token its
//! binding power. May use: `ast` (spans), `error`, `value` (number literal syntax).

use super::ast::Span;
use super::error::{ExprError, ExprErrorKind};
use super::value::parse_number_literal;

/// One lexical token.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Null,
    True,
    False,
    Number(f64),
    String(String),
    Identifier(String),
    Dot,
    Star,
    Comma,
    LeftParen,
    RightParen,
    LeftBracket,
    RightBracket,
    Not,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
    Eof,
}

impl Token {
    /// Left binding power for the Pratt parser: how tightly the token binds to what precedes it.
    /// Postfix `.` and `[` bind tightest, then the relational operators, equality, `&&`, `||`.
    pub fn lbp(&self) -> u8 {
        match self {
            Token::Dot | Token::LeftBracket => 60,
            Token::Lt | Token::Le | Token::Gt | Token::Ge => 40,
            Token::Eq | Token::Ne => 30,
            Token::And => 20,
            Token::Or => 10,
            _ => 0,
        }
    }

    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Token::Null => "'null'".to_owned(),
            Token::True => "'true'".to_owned(),
            Token::False => "'false'".to_owned(),
            Token::Number(n) => format!("number {}", super::value::format_number(*n)),
            Token::String(_) => "a string".to_owned(),
            Token::Identifier(name) => format!("'{name}'"),
            Token::Dot => "'.'".to_owned(),
            Token::Star => "'*'".to_owned(),
            Token::Comma => "','".to_owned(),
            Token::LeftParen => "'('".to_owned(),
            Token::RightParen => "')'".to_owned(),
            Token::LeftBracket => "'['".to_owned(),
            Token::RightBracket => "']'".to_owned(),
            Token::Not => "'!'".to_owned(),
            Token::Lt => "'<'".to_owned(),
            Token::Le => "'<='".to_owned(),
            Token::Gt => "'>'".to_owned(),
            Token::Ge => "'>='".to_owned(),
            Token::Eq => "'=='".to_owned(),
            Token::Ne => "'!='".to_owned(),
            Token::And => "'&&'".to_owned(),
            Token::Or => "'||'".to_owned(),
            Token::Eof => "the end of the expression".to_owned(),
        }
    }
}

/// Splits `source` into tokens, ending with [`Token::Eof`].
pub fn tokenize(source: &str) -> Result<Vec<(Span, Token)>, ExprError> {
    let mut lexer = Lexer {
        source,
        pos: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'s> {
    source: &'s str,
    pos: usize,
    tokens: Vec<(Span, Token)>,
}

impl Lexer<'_> {
    fn run(&mut self) -> Result<(), ExprError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                continue;
            }
            let token = match c {
                // A dot after something that can be dereferenced is an operator; elsewhere it
                // starts a number such as `.5`.
                '.' if self.after_operand() => self.single(Token::Dot),
                '.' => self.number()?,
                '*' => self.single(Token::Star),
                ',' => self.single(Token::Comma),
                '(' => self.single(Token::LeftParen),
                ')' => self.single(Token::RightParen),
                '[' => self.single(Token::LeftBracket),
                ']' => self.single(Token::RightBracket),
                '!' => self.one_or_two('=', Token::Not, Token::Ne),
                '<' => self.one_or_two('=', Token::Lt, Token::Le),
                '>' => self.one_or_two('=', Token::Gt, Token::Ge),
                '=' => self.exactly_two('=', Token::Eq)?,
                '&' => self.exactly_two('&', Token::And)?,
                '|' => self.exactly_two('|', Token::Or)?,
                '\'' => self.string()?,
                c if c.is_ascii_digit() || c == '-' || c == '+' => self.number()?,
                c if c.is_ascii_alphabetic() || c == '_' => self.word(),
                c => {
                    return Err(self.error(
                        format!("unexpected character '{c}'"),
                        start,
                        c.len_utf8(),
                    ));
                }
            };
            self.tokens.push((
                Span {
                    start,
                    end: self.pos,
                },
                token,
            ));
        }
        let end = Span {
            start: self.source.len(),
            end: self.source.len(),
        };
        self.tokens.push((end, Token::Eof));
        Ok(())
    }

    fn peek(&self) -> Option<char> {
        self.source[self.pos..].chars().next()
    }

    fn single(&mut self, token: Token) -> Token {
        self.pos += 1;
        token
    }

    fn one_or_two(&mut self, second: char, one: Token, two: Token) -> Token {
        self.pos += 1;
        if self.peek() == Some(second) {
            self.pos += 1;
            two
        } else {
            one
        }
    }

    fn exactly_two(&mut self, second: char, token: Token) -> Result<Token, ExprError> {
        let start = self.pos;
        self.pos += 1;
        if self.peek() == Some(second) {
            self.pos += 1;
            Ok(token)
        } else {
            let first = &self.source[start..self.pos];
            Err(self.error(
                format!("unexpected character '{first}', did you mean '{first}{second}'?"),
                start,
                1,
            ))
        }
    }

    fn string(&mut self) -> Result<Token, ExprError> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated string literal", start, self.pos - start));
            };
            self.pos += c.len_utf8();
            if c == '\'' {
                if self.peek() == Some('\'') {
                    self.pos += 1;
                    value.push('\'');
                } else {
                    return Ok(Token::String(value));
                }
            } else {
                value.push(c);
            }
        }
    }

    fn after_operand(&self) -> bool {
        matches!(
            self.tokens.last(),
            Some((
                _,
                Token::Identifier(_) | Token::RightBracket | Token::RightParen | Token::Star
            ))
        )
    }

    /// A number runs up to the next boundary character (an operator, bracket, comma or
    /// whitespace; a `.` does not end it) and the whole run must be a valid literal, so `1.2.3`,
    /// `12abc` and `-x` are errors rather than several tokens.
    fn number(&mut self) -> Result<Token, ExprError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c != '.' && is_boundary(c) && self.pos > start {
                break;
            }
            self.pos += c.len_utf8();
        }
        let text = &self.source[start..self.pos];
        match parse_number_literal(text) {
            Some(number) => Ok(Token::Number(number)),
            None => Err(self.error(format!("unexpected symbol '{text}'"), start, text.len())),
        }
    }

    /// An identifier or keyword; after a `.` keywords are plain property names.
    fn word(&mut self) -> Token {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                self.pos += 1;
            } else {
                break;
            }
        }
        let after_dot = matches!(self.tokens.last(), Some((_, Token::Dot)));
        match &self.source[start..self.pos] {
            word if after_dot => Token::Identifier(word.to_owned()),
            "null" => Token::Null,
            "true" => Token::True,
            "false" => Token::False,
            "NaN" => Token::Number(f64::NAN),
            "Infinity" => Token::Number(f64::INFINITY),
            word => Token::Identifier(word.to_owned()),
        }
    }

    fn error(&self, message: impl Into<String>, start: usize, len: usize) -> ExprError {
        ExprError::new(
            ExprErrorKind::Syntax,
            message,
            Span {
                start,
                end: start + len,
            },
            self.source,
        )
    }
}

/// Characters that end a number: brackets, the comma, the dot, operator characters, whitespace.
fn is_boundary(c: char) -> bool {
    matches!(
        c,
        '(' | '[' | ')' | ']' | ',' | '.' | '!' | '>' | '<' | '=' | '&' | '|'
    ) || c.is_whitespace()
}
