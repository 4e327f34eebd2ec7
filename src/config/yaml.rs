//! The low layer of configuration loading: YAML text to a generic tree in which every key and
//! value carries its line and column. serde-saphyr parses with `strict_booleans` (only
//! `true`/`false` are booleans, as go-yaml treats `yes` for a typed field), duplicate keys are
//! errors and an alias bomb hits the parser's budget. No I/O, no defaults, no meaning.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A position in the YAML text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub position: Position,
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub position: Position,
}

/// What a YAML node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    String(String),
    Sequence(Vec<Node>),
    Mapping(Vec<(Key, Node)>),
}

impl Value {
    /// How the value is described in an error ("expected a duration, found a mapping").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }
}

/// A YAML syntax or structure error with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub position: Option<Position>,
    pub message: String,
}

/// Parses one YAML document. An empty document (only comments) is `Value::Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    // Comments are not needed, and buffering them trips the parser's look-ahead budget on
    // files such as `config.example.yaml` where long comment runs follow a null section.
    let options = serde_saphyr::options! { strict_booleans: true, emit_comments: false };
    match serde_saphyr::from_str_with_options::<Option<Spanned<RawNode>>>(text, options) {
        Ok(Some(root)) => Ok(Node::from(root)),
        Ok(None) => Ok(Node {
            value: Value::Null,
            position: Position { line: 1, column: 1 },
        }),
        Err(error) => Err(SyntaxError {
            position: error.location().map(|location| Position {
                line: location.line(),
                column: location.column(),
            }),
            // The first line is the message; the rest is a source snippet we do not repeat.
            message: error
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned(),
        }),
    }
}

fn position(location: &serde_saphyr::Location) -> Position {
    Position {
        line: location.line(),
        column: location.column(),
    }
}

/// The serde-facing twin of [`Value`], with saphyr's span wrapper on every child.
enum RawNode {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    String(String),
    Sequence(Vec<Spanned<RawNode>>),
    Mapping(Vec<(Spanned<String>, Spanned<RawNode>)>),
}

impl From<Spanned<RawNode>> for Node {
    fn from(spanned: Spanned<RawNode>) -> Node {
        let value = match spanned.value {
            RawNode::Null => Value::Null,
            RawNode::Bool(value) => Value::Bool(value),
            RawNode::Int(value) => Value::Int(value),
            RawNode::Float(value) => Value::Float(value),
            RawNode::String(value) => Value::String(value),
            RawNode::Sequence(items) => {
                Value::Sequence(items.into_iter().map(Node::from).collect())
            }
            RawNode::Mapping(entries) => Value::Mapping(
                entries
                    .into_iter()
                    .map(|(key, value)| {
                        let key = Key {
                            position: position(&key.referenced),
                            name: key.value,
                        };
                        (key, Node::from(value))
                    })
                    .collect(),
            ),
        };
        Node {
            value,
            position: position(&spanned.referenced),
        }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawNode, D::Error> {
        deserializer.deserialize_any(RawNodeVisitor)
    }
}

struct RawNodeVisitor;

impl<'de> Visitor<'de> for RawNodeVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawNode, D::Error> {
        deserializer.deserialize_any(RawNodeVisitor)
    }
    fn visit_bool<E>(self, value: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(value.into()))
    }
    fn visit_u64<E>(self, value: u64) -> Result<RawNode, E> {
        Ok(RawNode::Int(value.into()))
    }
    fn visit_i128<E>(self, value: i128) -> Result<RawNode, E> {
        Ok(RawNode::Int(value))
    }
    fn visit_u128<E: de::Error>(self, value: u128) -> Result<RawNode, E> {
        i128::try_from(value)
            .map(RawNode::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, value: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(value))
    }
    fn visit_str<E>(self, value: &str) -> Result<RawNode, E> {
        Ok(RawNode::String(value.to_owned()))
    }
    fn visit_string<E>(self, value: String) -> Result<RawNode, E> {
        Ok(RawNode::String(value))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Sequence(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(RawNode::Mapping(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_carry_positions() {
        let root = parse("# comment\nrunner:\n  capacity: 2\n  insecure: yes\n").unwrap();
        let Value::Mapping(entries) = root.value else {
            panic!("not a mapping")
        };
        let (runner_key, runner) = &entries[0];
        assert_eq!(runner_key.name, "runner");
        assert_eq!(runner_key.position, Position { line: 2, column: 1 });
        let Value::Mapping(runner_entries) = &runner.value else {
            panic!("not a mapping")
        };
        assert_eq!(
            runner_entries[0].0.position,
            Position { line: 3, column: 3 }
        );
        assert_eq!(runner_entries[0].1.value, Value::Int(2));
        assert_eq!(runner_entries[0].1.position.line, 3);
        // strict booleans: `yes` stays a string.
        assert_eq!(runner_entries[1].1.value, Value::String("yes".into()));
    }

    #[test]
    fn comment_only_documents_are_null() {
        assert_eq!(parse("# nothing\n").unwrap().value, Value::Null);
        let long_comment_run = format!("section:\n{}other: 1\n", "  # comment\n".repeat(500));
        assert!(parse(&long_comment_run).is_ok());
        assert_eq!(parse("").unwrap().value, Value::Null);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let error = parse("runner:\n  capacity: [1\n").unwrap_err();
        assert!(error.position.is_some(), "{error:?}");
        let error = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(error.position.map(|p| p.line), Some(2), "{error:?}");
        assert!(error.message.contains("duplicate"), "{error:?}");
    }
}
