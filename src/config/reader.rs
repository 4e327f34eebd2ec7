//! Typed reads from the spanned YAML tree. A [`Reader`] collects every invalid value and every
//! warning instead of stopping at the first, so one run reports all mistakes; [`Fields`] hands
//! out the keys of one mapping and reports the ones nobody asked for as unknown.

use std::path::Path;

use indexmap::IndexMap;

use super::duration::GoDuration;
use super::error::KeyMessage;
use super::size::parse_size;
use super::yaml::{Key, Node, Position, Value};

/// A key that is present with a non-null value.
pub(super) struct Entry<'n> {
    /// The dotted path, e.g. `runner.capacity`.
    pub path: String,
    pub node: &'n Node,
}

/// A value read from the file, with where it was written.
#[derive(Debug, Clone)]
pub(super) struct At<T> {
    pub value: T,
    pub path: String,
    pub position: Position,
}

/// The keys of one mapping, each handed out at most once.
pub(super) struct Fields<'n> {
    prefix: String,
    entries: Vec<(&'n Key, &'n Node, bool)>,
}

/// Collects problems and warnings while a configuration is read.
pub(super) struct Reader<'a> {
    source: &'a Path,
    pub problems: Vec<KeyMessage>,
    pub warnings: Vec<KeyMessage>,
}

impl<'a> Reader<'a> {
    pub fn new(source: &'a Path) -> Reader<'a> {
        Reader {
            source,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records an invalid value; `reason` says what is wrong and what would be valid.
    pub fn problem(&mut self, path: &str, position: Position, reason: impl Into<String>) {
        let problem = self.message(path, position, reason.into());
        self.problems.push(problem);
    }

    /// Records a warning.
    pub fn warn(&mut self, path: &str, position: Position, message: impl Into<String>) {
        let warning = self.message(path, position, message.into());
        self.warnings.push(warning);
    }

    fn message(&self, key: &str, position: Position, message: String) -> KeyMessage {
        KeyMessage {
            path: self.source.to_owned(),
            line: position.line,
            column: position.column,
            key: key.to_owned(),
            message,
        }
    }

    /// The keys of `node` (a mapping, or null for an empty section) under the dotted `prefix`.
    pub fn fields<'n>(&mut self, prefix: &str, node: Option<&'n Node>) -> Fields<'n> {
        let mut fields = Fields {
            prefix: prefix.to_owned(),
            entries: Vec::new(),
        };
        match node.map(|node| (&node.value, node.position)) {
            None | Some((Value::Null, _)) => {}
            Some((Value::Mapping(entries), _)) => {
                fields.entries = entries
                    .iter()
                    .map(|(key, value)| (key, value, false))
                    .collect();
            }
            Some((other, position)) => {
                let path = if prefix.is_empty() {
                    "(top level)"
                } else {
                    prefix
                };
                self.problem(
                    path,
                    position,
                    format!("expected a mapping of keys, found {}", other.kind()),
                );
            }
        }
        fields
    }

    /// The sub-mapping `key` of `fields`.
    pub fn section<'n>(&mut self, fields: &mut Fields<'n>, key: &str) -> Fields<'n> {
        let path = fields.path_of(key);
        let node = fields.take_node(key);
        self.fields(&path, node)
    }

    /// Warns about every key of `fields` that was not read.
    pub fn finish(&mut self, fields: Fields<'_>) {
        for (key, _, used) in &fields.entries {
            if !*used {
                let path = fields.prefix_with(&key.name);
                self.warn(&path, key.position, "unknown key, it will be ignored");
            }
        }
    }

    /// A string; integers, numbers and booleans are taken as written, as go-yaml does.
    pub fn string(&mut self, fields: &mut Fields<'_>, key: &str) -> Option<At<String>> {
        let entry = fields.take(key)?;
        let text = match &entry.node.value {
            Value::String(text) => text.clone(),
            Value::Int(value) => value.to_string(),
            Value::Float(value) => value.to_string(),
            Value::Bool(value) => value.to_string(),
            other => {
                self.problem(
                    &entry.path,
                    entry.node.position,
                    format!("expected a string, found {}", other.kind()),
                );
                return None;
            }
        };
        Some(at(entry, text))
    }

    /// A string that means nothing when empty.
    pub fn non_empty_string(&mut self, fields: &mut Fields<'_>, key: &str) -> Option<At<String>> {
        self.string(fields, key)
            .filter(|text| !text.value.is_empty())
    }

    /// `true` or `false` (strict booleans: `yes`, `on`, `1` are not booleans).
    pub fn bool(&mut self, fields: &mut Fields<'_>, key: &str) -> Option<bool> {
        let entry = fields.take(key)?;
        match &entry.node.value {
            Value::Bool(value) => Some(*value),
            other => {
                let found = describe(other);
                self.problem(
                    &entry.path,
                    entry.node.position,
                    format!("expected true or false, found {found}"),
                );
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn int(
        &mut self,
        fields: &mut Fields<'_>,
        key: &str,
        min: i128,
        max: i128,
    ) -> Option<At<i128>> {
        let entry = fields.take(key)?;
        let parsed = match &entry.node.value {
            Value::Int(value) if (min..=max).contains(value) => Ok(*value),
            Value::Int(value) => Err(format!("{value} is out of range (expected {min} to {max})")),
            other => Err(format!("expected an integer, found {}", describe(other))),
        };
        self.checked(entry, parsed)
    }

    /// A Go duration string (`30s`, `1h30m`); a bare integer is nanoseconds, as in Go.
    pub fn duration(&mut self, fields: &mut Fields<'_>, key: &str) -> Option<At<GoDuration>> {
        let entry = fields.take(key)?;
        let parsed = match &entry.node.value {
            Value::String(text) => GoDuration::parse(text).map_err(|error| error.to_string()),
            Value::Int(nanos) => {
                if *nanos != 0 {
                    let message = format!(
                        "a bare integer is nanoseconds (as in Go): {nanos}ns; write a unit, e.g. {nanos}s"
                    );
                    self.warn(&entry.path, entry.node.position, message);
                }
                i64::try_from(*nanos)
                    .map(GoDuration::from_nanos)
                    .map_err(|_| format!("{nanos} is out of range"))
            }
            other => Err(format!(
                "expected a duration such as 30s or 1h30m, found {}",
                describe(other)
            )),
        };
        self.checked(entry, parsed)
    }

    /// A byte size (`10GB`, `512MB`) or a byte count.
    pub fn size(&mut self, fields: &mut Fields<'_>, key: &str) -> Option<At<u64>> {
        let entry = fields.take(key)?;
        let parsed = match &entry.node.value {
            Value::String(text) => parse_size(text).map_err(|error| error.to_string()),
            Value::Int(bytes) => u64::try_from(*bytes)
                .map_err(|_| format!("{bytes} is not a size (expected 0 or more bytes)")),
            other => Err(format!(
                "expected a size such as 10GB, found {}",
                describe(other)
            )),
        };
        self.checked(entry, parsed)
    }

    /// The parsed value with its position, or None with `parsed`'s error reported at the key.
    fn checked<T>(&mut self, entry: Entry<'_>, parsed: Result<T, String>) -> Option<At<T>> {
        match parsed {
            Ok(value) => Some(at(entry, value)),
            Err(reason) => {
                self.problem(&entry.path, entry.node.position, reason);
                None
            }
        }
    }

    /// A list of strings, each with its position.
    pub fn strings(&mut self, fields: &mut Fields<'_>, key: &str) -> Vec<At<String>> {
        let Some(entry) = fields.take(key) else {
            return Vec::new();
        };
        let Value::Sequence(items) = &entry.node.value else {
            let found = entry.node.value.kind();
            self.problem(
                &entry.path,
                entry.node.position,
                format!("expected a list of strings, found {found}"),
            );
            return Vec::new();
        };
        let mut texts = Vec::new();
        for (item_idx, item) in items.iter().enumerate() {
            let path = format!("{}[{item_idx}]", entry.path);
            match scalar_text(&item.value) {
                Some(text) => texts.push(At {
                    value: text,
                    path,
                    position: item.position,
                }),
                None => self.problem(
                    &path,
                    item.position,
                    format!("expected a string, found {}", item.value.kind()),
                ),
            }
        }
        texts
    }

    /// A mapping of strings to strings, in file order.
    pub fn string_map(&mut self, fields: &mut Fields<'_>, key: &str) -> IndexMap<String, String> {
        let mut map = IndexMap::new();
        let Some(entry) = fields.take(key) else {
            return map;
        };
        let Value::Mapping(entries) = &entry.node.value else {
            let found = entry.node.value.kind();
            self.problem(
                &entry.path,
                entry.node.position,
                format!("expected a mapping of names to strings, found {found}"),
            );
            return map;
        };
        for (name, value) in entries {
            let text = match &value.value {
                Value::Null => Some(String::new()),
                other => scalar_text(other),
            };
            match text {
                Some(text) => {
                    map.insert(name.name.clone(), text);
                }
                None => {
                    let path = format!("{}.{}", entry.path, name.name);
                    self.problem(
                        &path,
                        value.position,
                        format!("expected a string, found {}", value.value.kind()),
                    );
                }
            }
        }
        map
    }
}

impl<'n> Fields<'n> {
    fn path_of(&self, key: &str) -> String {
        self.prefix_with(key)
    }

    fn prefix_with(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn take_node(&mut self, key: &str) -> Option<&'n Node> {
        let entry = self
            .entries
            .iter_mut()
            .find(|(name, _, _)| name.name == key)?;
        entry.2 = true;
        Some(entry.1)
    }

    /// The entry for `key`; `None` when absent or null (a null value means "not set", as in Go).
    pub fn take(&mut self, key: &str) -> Option<Entry<'n>> {
        let path = self.path_of(key);
        let node = self.take_node(key)?;
        (node.value != Value::Null).then_some(Entry { path, node })
    }
}

fn at<T>(entry: Entry<'_>, value: T) -> At<T> {
    At {
        value,
        position: entry.node.position,
        path: entry.path,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Int(value) => Some(value.to_string()),
        Value::Float(value) => Some(value.to_string()),
        Value::Bool(value) => Some(value.to_string()),
        _ => None,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        Value::Int(number) => number.to_string(),
        Value::Float(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => other.kind().to_owned(),
    }
}
