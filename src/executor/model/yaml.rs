//! A YAML tree that remembers where every node came from: the raw material the workflow model is
//! built from. Parsed with serde-saphyr (anchors and merge keys resolved, strict booleans, duplicate
//! keys refused, key order kept), so the model can name a line and column in every error it reports.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based position in the workflow file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML node and where it is referenced.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub at: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    /// Keys in document order.
    Map(Vec<(Node, Node)>),
}

/// Why a document could not be read as YAML at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub at: Pos,
    pub message: String,
}

/// Parses one YAML document into a located tree.
pub fn parse(source: &str) -> Result<Node, YamlError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
    };
    match serde_saphyr::from_str_with_options::<Spanned<NodeKind>>(source, options) {
        Ok(spanned) => Ok(Node::from(spanned)),
        Err(error) => {
            let at = error
                .location()
                .map(|location| Pos {
                    line: u32::try_from(location.line()).unwrap_or(u32::MAX),
                    column: u32::try_from(location.column()).unwrap_or(u32::MAX),
                })
                .unwrap_or_default();
            // The first line of saphyr's message is the reason; the rest is a source snippet.
            let message = error.to_string();
            let message = message.lines().next().unwrap_or("invalid YAML").to_string();
            Err(YamlError { at, message })
        }
    }
}

impl From<Spanned<NodeKind>> for Node {
    fn from(spanned: Spanned<NodeKind>) -> Self {
        Node {
            kind: spanned.value,
            at: Pos {
                line: u32::try_from(spanned.referenced.line()).unwrap_or(u32::MAX),
                column: u32::try_from(spanned.referenced.column()).unwrap_or(u32::MAX),
            },
        }
    }
}

impl Node {
    /// What kind of value this is, for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Integer(_) | NodeKind::Float(_) => "a number",
            NodeKind::String(_) => "a string",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar (numbers and booleans as YAML writes them); `None` for null and collections.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            NodeKind::Bool(value) => Some(value.to_string()),
            NodeKind::Integer(value) => Some(value.to_string()),
            NodeKind::Float(value) => Some(format_float(*value)),
            NodeKind::String(value) => Some(value.clone()),
            NodeKind::Null | NodeKind::Seq(_) | NodeKind::Map(_) => None,
        }
    }

    /// The node as JSON (for `matrix` values and similar free-form data).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            NodeKind::Null => serde_json::Value::Null,
            NodeKind::Bool(value) => serde_json::Value::Bool(*value),
            NodeKind::Integer(value) => serde_json::Value::from(*value),
            NodeKind::Float(value) => serde_json::Number::from_f64(*value)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            NodeKind::String(value) => serde_json::Value::String(value.clone()),
            NodeKind::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            NodeKind::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| (key.scalar_text().unwrap_or_default(), value.to_json()))
                    .collect(),
            ),
        }
    }
}

fn format_float(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        value.to_string()
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Bool(value))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Integer(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<NodeKind, E> {
        Ok(match i64::try_from(value) {
            Ok(value) => NodeKind::Integer(value),
            Err(_) => NodeKind::Float(value as f64),
        })
    }
    fn visit_i128<E: de::Error>(self, value: i128) -> Result<NodeKind, E> {
        Ok(match i64::try_from(value) {
            Ok(value) => NodeKind::Integer(value),
            Err(_) => NodeKind::Float(value as f64),
        })
    }
    fn visit_u128<E: de::Error>(self, value: u128) -> Result<NodeKind, E> {
        Ok(match i64::try_from(value) {
            Ok(value) => NodeKind::Integer(value),
            Err(_) => NodeKind::Float(value as f64),
        })
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Float(value))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::String(value.to_string()))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<NodeKind, E> {
        Ok(NodeKind::String(value))
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeKind, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<NodeKind>>()? {
            items.push(Node::from(item));
        }
        Ok(NodeKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<NodeKind>>()? {
            let value = map.next_value::<Spanned<NodeKind>>()?;
            entries.push((Node::from(key), Node::from(value)));
        }
        Ok(NodeKind::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_get<'a>(node: &'a Node, key: &str) -> &'a Node {
        match &node.kind {
            NodeKind::Map(entries) => {
                &entries
                    .iter()
                    .find(|(k, _)| k.scalar_text().as_deref() == Some(key))
                    .unwrap()
                    .1
            }
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based_line_and_column() {
        let node = parse("on: push\njobs:\n  build:\n    runs-on: x\n").unwrap();
        let jobs = map_get(&node, "jobs");
        let runs_on = map_get(map_get(jobs, "build"), "runs-on");
        assert_eq!(
            runs_on.at,
            Pos {
                line: 4,
                column: 14
            }
        );
        assert_eq!(runs_on.kind, NodeKind::String("x".into()));
    }

    #[test]
    fn yes_stays_a_string_and_on_stays_a_key() {
        let node = parse("on: yes\nx: true\n").unwrap();
        assert_eq!(map_get(&node, "on").kind, NodeKind::String("yes".into()));
        assert_eq!(map_get(&node, "x").kind, NodeKind::Bool(true));
    }

    #[test]
    fn anchors_and_merge_keys_resolve() {
        let node = parse("base: &b {A: 1, B: 2}\nenv:\n  <<: *b\n  B: 3\n").unwrap();
        let env = map_get(&node, "env");
        assert_eq!(map_get(env, "A").kind, NodeKind::Integer(1));
        assert_eq!(map_get(env, "B").kind, NodeKind::Integer(3));
    }

    #[test]
    fn key_order_is_kept() {
        let node = parse("z: 1\na: 2\nm: 3\n").unwrap();
        let NodeKind::Map(entries) = node.kind else {
            panic!()
        };
        let keys: Vec<_> = entries
            .iter()
            .map(|(k, _)| k.scalar_text().unwrap())
            .collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let error = parse("a: b\nc: [1, 2\n").unwrap_err();
        assert!(error.at.line >= 2, "{error:?}");
        assert!(!error.message.is_empty());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let error = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(error.at.line, 2, "{error:?}");
    }
}
