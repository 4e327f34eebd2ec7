//! Reading and editing one key of a config file's text, for `config get|set|add|remove`.
//!
//! The key path is checked against [`KEYS`](super::KEYS) first and each value against its key's
//! type, so a bad request fails before anything is written. The edit rewrites only the lines of
//! the value it changes (`text`), so comments and layout stay; the result is read back to
//! check it holds exactly what was asked, then loaded with the real loader: an edit that would
//! give a config the runner refuses is itself refused (one already refused may be edited as
//! long as the edit adds no problem, so it can be fixed one key at a time).
//! Pure functions over text; the caller reads and writes the file.

mod render;
mod text;

use std::path::Path;

use super::duration::GoDuration;
use super::error::ConfigError;
use super::keys::{KeyKind, KeyPathError, KeyTarget, children_of, resolve_key};
use super::load::LoadEnv;
use super::model::Config;
use super::size::parse_size;
use super::yaml::{self, Key, Node, Value};
use text::{Entry, Text, Unsupported};

/// What an edit does to the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditKind {
    /// Replace the value (one for a key, one or more for a list).
    Set,
    /// Append to a list.
    Add,
    /// Remove from a list.
    Remove,
}

/// Why a key cannot be read or edited as asked.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Key(#[from] KeyPathError),
    #[error("{key:?} is a section, set one of its keys instead: {keys}")]
    Section { key: String, keys: String },
    #[error("{key:?} is not a list, use `config set` instead")]
    NotAList { key: String },
    #[error("{key:?} takes exactly one value")]
    OneValue { key: String },
    #[error("{key:?} needs at least one value")]
    NoValue { key: String },
    #[error("{key}: {reason}")]
    BadValue { key: String, reason: String },
    /// The file does not hold the key (only `get` and `remove` need it to).
    #[error("{key:?} is not set")]
    NotSet { key: String },
    #[error("{key:?} holds {found} in the file, not a section of keys")]
    NotASection { key: String, found: &'static str },
    #[error("{key:?} holds {found} in the file, not a list")]
    NotAListInFile { key: String, found: &'static str },
    #[error("{key} already contains {value:?}")]
    AlreadyContains { key: String, value: String },
    #[error("{key} does not contain {value:?}")]
    DoesNotContain { key: String, value: String },
    #[error("the top level of the file is {found}, not a mapping of keys")]
    NotAMapping { found: &'static str },
    #[error("cannot edit {key:?} in place: {reason}; rewrite it by hand")]
    Unsupported { key: String, reason: String },
    /// The file as it is cannot be parsed.
    #[error(transparent)]
    Unparsable(ConfigError),
    #[error("the edit would produce a config the runner cannot load")]
    WouldBeInvalid(#[source] ConfigError),
    /// The edited text did not read back as asked: a bug in the surgery, caught before writing.
    #[error("the edit of {key:?} did not read back as written ({detail}); this is a bug")]
    Internal { key: String, detail: String },
}

/// The value of `key_path` in `text`, printed as upstream's `config get` does.
pub fn get_value(text: &str, source: &Path, key_path: &str) -> Result<String, EditError> {
    resolve_key(key_path)?;
    let root = parse(text, source)?;
    let segments: Vec<&str> = key_path.split('.').collect();
    let found = walk(&root, &segments);
    match found.last() {
        Some((_, node)) if found.len() == segments.len() => Ok(render::for_get(node)),
        _ => Err(EditError::NotSet {
            key: segments[..=found.len()].join("."),
        }),
    }
}

/// `text` with `key_path` edited; `source` names the file in messages and `env` is what the
/// loader needs to check the result.
pub fn edit_value(
    text: &str,
    source: &Path,
    env: &LoadEnv,
    kind: EditKind,
    key_path: &str,
    values: &[String],
) -> Result<String, EditError> {
    let key = || key_path.to_owned();
    let segments: Vec<&str> = key_path.split('.').collect();
    let (value_kind, is_list) = match (resolve_key(key_path)?, kind) {
        (KeyTarget::Key(KeyKind::List), _) => (KeyKind::String, true),
        (KeyTarget::Key(KeyKind::Map) | KeyTarget::Section, EditKind::Set) => {
            let keys = children_of(&segments);
            let keys = if keys.is_empty() {
                format!("{key_path}.NAME")
            } else {
                keys.join(", ")
            };
            return Err(EditError::Section { key: key(), keys });
        }
        (KeyTarget::Key(KeyKind::Map) | KeyTarget::Section, _) => {
            return Err(EditError::NotAList { key: key() });
        }
        (_, EditKind::Add | EditKind::Remove) => return Err(EditError::NotAList { key: key() }),
        (KeyTarget::Key(value_kind), EditKind::Set) => (value_kind, false),
        (KeyTarget::MapEntry, EditKind::Set) => (KeyKind::String, false),
    };
    if values.is_empty() {
        return Err(EditError::NoValue { key: key() });
    }
    if !is_list && values.len() != 1 {
        return Err(EditError::OneValue { key: key() });
    }
    let canonical = values
        .iter()
        .map(|value| {
            canonical(value_kind, value)
                .map_err(|reason| EditError::BadValue { key: key(), reason })
        })
        .collect::<Result<Vec<String>, EditError>>()?;
    let as_string = value_kind == KeyKind::String;

    let root = parse(text, source)?;
    let found = walk(&root, &segments);
    let existing = (found.len() == segments.len()).then(|| found[found.len() - 1]);
    let expected = if is_list {
        Expected::List(new_list(
            kind,
            key_path,
            existing.map(|(_, node)| node),
            &canonical,
        )?)
    } else {
        Expected::Scalar(canonical[0].clone())
    };
    let emitted = match &expected {
        Expected::Scalar(value) => NewValue::Scalar(render::emit_scalar(value, as_string)),
        Expected::List(items) => NewValue::List(
            items
                .iter()
                .map(|item| render::emit_scalar(item, true))
                .collect(),
        ),
    };

    let mut doc = Text::new(text);
    let unsupported = |Unsupported(reason)| EditError::Unsupported { key: key(), reason };
    match existing {
        Some((found_key, node)) => {
            replace(&mut doc, found_key, node, kind, &emitted, &expected).map_err(unsupported)?
        }
        None => insert(&mut doc, &root, &found, &segments, &emitted)?,
    }
    let edited = doc.render();
    check_reads_back(&edited, source, &segments, &expected)
        .map_err(|detail| EditError::Internal { key: key(), detail })?;
    check_loads(text, &edited, source, env)?;
    Ok(edited)
}

/// What the key must hold after the edit.
enum Expected {
    Scalar(String),
    List(Vec<String>),
}

/// The new value as YAML scalars.
enum NewValue {
    Scalar(String),
    List(Vec<String>),
}

fn parse(text: &str, source: &Path) -> Result<Node, EditError> {
    let root = yaml::parse(text).map_err(|error| {
        let position = error.position.unwrap_or_default();
        EditError::Unparsable(ConfigError::Syntax {
            path: source.to_owned(),
            line: position.line,
            column: position.column,
            message: error.message,
        })
    })?;
    match root.value {
        Value::Mapping(_) | Value::Null => Ok(root),
        other => Err(EditError::NotAMapping {
            found: other.kind(),
        }),
    }
}

/// The entries along `segments` that the file holds, from the top.
fn walk<'t>(root: &'t Node, segments: &[&str]) -> Vec<(&'t Key, &'t Node)> {
    let mut found = Vec::new();
    let mut node = root;
    for segment in segments {
        let Value::Mapping(entries) = &node.value else {
            break;
        };
        let Some((key, value)) = entries.iter().find(|(key, _)| key.name == *segment) else {
            break;
        };
        found.push((key, value));
        node = value;
    }
    found
}

/// A value given on the command line in the form its key's type writes it (upstream's: a
/// duration as Go prints it, a boolean as `true`/`false`).
fn canonical(kind: KeyKind, value: &str) -> Result<String, String> {
    match kind {
        KeyKind::Bool => match value {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok("true".to_owned()),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok("false".to_owned()),
            _ => Err(format!("{value:?} is not a boolean (true or false)")),
        },
        KeyKind::Int => value
            .parse::<i64>()
            .map(|number| number.to_string())
            .map_err(|_| format!("{value:?} is not a whole number")),
        KeyKind::Duration => GoDuration::parse(value)
            .map(|duration| duration.to_string())
            .map_err(|error| error.to_string()),
        KeyKind::Size => parse_size(value)
            .map(|_| value.to_owned())
            .map_err(|error| error.to_string()),
        KeyKind::String | KeyKind::List | KeyKind::Map => Ok(value.to_owned()),
    }
}

/// The list after the edit, from the one the file holds.
fn new_list(
    kind: EditKind,
    key_path: &str,
    existing: Option<&Node>,
    values: &[String],
) -> Result<Vec<String>, EditError> {
    let key = || key_path.to_owned();
    let mut items: Vec<String> = match existing.map(|node| &node.value) {
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| render::scalar_text(&item.value).unwrap_or_default())
            .collect(),
        Some(Value::Null) | None if kind != EditKind::Remove => Vec::new(),
        None => return Err(EditError::NotSet { key: key() }),
        Some(other) => {
            return Err(EditError::NotAListInFile {
                key: key(),
                found: other.kind(),
            });
        }
    };
    match kind {
        EditKind::Set => items = values.to_vec(),
        EditKind::Add => {
            for value in values {
                if items.contains(value) {
                    return Err(EditError::AlreadyContains {
                        key: key(),
                        value: value.clone(),
                    });
                }
                items.push(value.clone());
            }
        }
        EditKind::Remove => {
            for value in values {
                let Some(idx) = items.iter().position(|item| item == value) else {
                    return Err(EditError::DoesNotContain {
                        key: key(),
                        value: value.clone(),
                    });
                };
                items.remove(idx);
            }
        }
    }
    Ok(items)
}

/// Rewrites the value of an entry the file holds.
fn replace(
    doc: &mut Text,
    key: &Key,
    node: &Node,
    kind: EditKind,
    new: &NewValue,
    expected: &Expected,
) -> Result<(), Unsupported> {
    let block_list = matches!(&node.value, Value::Sequence(items) if !items.is_empty());
    let mut entry = doc.entry(key, block_list)?;
    match new {
        NewValue::Scalar(scalar) => {
            doc.remove_block_value(&mut entry);
            doc.set_inline(&entry, scalar);
        }
        NewValue::List(emitted) if block_list && doc.inline_value(&entry).is_empty() => {
            let (Value::Sequence(old), Expected::List(items)) = (&node.value, expected) else {
                return Err(Unsupported("not a list".to_owned()));
            };
            let old: Vec<String> = old
                .iter()
                .map(|item| render::scalar_text(&item.value).unwrap_or_default())
                .collect();
            edit_block_list(doc, &entry, &old, kind, items, emitted)?;
        }
        NewValue::List(items) => {
            let at = doc.remove_block_value(&mut entry);
            doc.set_inline(&entry, if items.is_empty() { "[]" } else { "" });
            doc.insert_lines(at, item_lines(entry.indent + 2, items));
        }
    }
    Ok(())
}

/// Edits a block list in place: a set replaces its items where they were, an add appends after
/// the last, a remove deletes the removed items' lines; comments between items stay.
fn edit_block_list(
    doc: &mut Text,
    entry: &Entry,
    old: &[String],
    kind: EditKind,
    items: &[String],
    emitted: &[String],
) -> Result<(), Unsupported> {
    let starts = doc.item_starts(entry);
    if starts.len() != old.len() {
        return Err(Unsupported(format!(
            "line {}: its items are not one `- value` a line",
            entry.line + 1
        )));
    }
    let item_indent = text::indentation(&doc.lines[starts[0]]);
    let spans: Vec<(usize, usize)> = starts
        .iter()
        .enumerate()
        .map(|(idx, start)| {
            let next = starts.get(idx + 1).copied().unwrap_or(entry.end);
            (*start, doc.content_end(*start, next))
        })
        .collect();
    match kind {
        EditKind::Add => {
            let added = &emitted[old.len()..];
            let at = spans[spans.len() - 1].1;
            doc.insert_lines(at, item_lines(item_indent, added));
        }
        EditKind::Set | EditKind::Remove => {
            // A remove keeps the old items still in `items`, matched from the end: a remove
            // takes the first of equal items, so the later ones are those kept.
            let mut kept = vec![false; old.len()];
            if kind == EditKind::Remove {
                let mut remaining = items.iter().rev().peekable();
                for (idx, old_item) in old.iter().enumerate().rev() {
                    if remaining.next_if(|item| *item == old_item).is_some() {
                        kept[idx] = true;
                    }
                }
            }
            for (idx, (start, end)) in spans.iter().enumerate().rev() {
                if !kept[idx] {
                    doc.lines.drain(*start..*end);
                }
            }
            if kind == EditKind::Set {
                doc.insert_lines(starts[0], item_lines(item_indent, emitted));
            } else if items.is_empty() {
                doc.set_inline(entry, "[]");
            }
        }
    }
    Ok(())
}

fn item_lines(indent: usize, items: &[String]) -> Vec<String> {
    let pad = " ".repeat(indent);
    items.iter().map(|item| format!("{pad}- {item}")).collect()
}

/// Writes a key the file does not hold, with any missing section above it, at the end of the
/// deepest section it holds.
fn insert(
    doc: &mut Text,
    root: &Node,
    found: &[(&Key, &Node)],
    segments: &[&str],
    new: &NewValue,
) -> Result<(), EditError> {
    let (child_indent, at) = match found.last() {
        None => {
            let indent = match &root.value {
                Value::Mapping(entries) => entries.first().map_or(0, |(key, _)| {
                    usize::try_from(key.position.column).unwrap_or(1) - 1
                }),
                _ => 0,
            };
            let at = (0..doc.lines.len())
                .rev()
                .find(|idx| !doc.lines[*idx].trim().is_empty())
                .map_or(0, |idx| idx + 1);
            (indent, at)
        }
        Some((key, node)) => {
            let section = segments[..found.len()].join(".");
            let unsupported = |Unsupported(reason)| EditError::Unsupported {
                key: section.clone(),
                reason,
            };
            let entry = doc.entry(key, false).map_err(unsupported)?;
            let inline = doc.inline_value(&entry).to_owned();
            let indent = match &node.value {
                Value::Null => entry.indent + 2,
                Value::Mapping(entries) if entries.is_empty() => entry.indent + 2,
                Value::Mapping(_) if inline.is_empty() => (entry.line + 1..entry.end)
                    .find(|idx| doc.is_content(*idx))
                    .map_or(entry.indent + 2, |idx| text::indentation(&doc.lines[idx])),
                Value::Mapping(_) => {
                    return Err(unsupported(Unsupported(format!(
                        "line {}: the section is written in flow style",
                        entry.line + 1
                    ))));
                }
                other => {
                    return Err(EditError::NotASection {
                        key: section,
                        found: other.kind(),
                    });
                }
            };
            if !inline.is_empty() {
                doc.set_inline(&entry, "");
            }
            (indent, entry.end)
        }
    };
    let mut lines = Vec::new();
    let mut indent = child_indent;
    let missing = &segments[found.len()..];
    for segment in &missing[..missing.len() - 1] {
        lines.push(format!(
            "{}{}:",
            " ".repeat(indent),
            render::emit_scalar(segment, true)
        ));
        indent += 2;
    }
    let last = render::emit_scalar(missing[missing.len() - 1], true);
    let pad = " ".repeat(indent);
    match new {
        NewValue::Scalar(scalar) => lines.push(format!("{pad}{last}: {scalar}")),
        NewValue::List(items) => {
            lines.push(format!("{pad}{last}:"));
            lines.extend(item_lines(indent + 2, items));
        }
    }
    doc.insert_lines(at, lines);
    Ok(())
}

/// Reads the edited text back and compares the key with what was asked.
fn check_reads_back(
    edited: &str,
    source: &Path,
    segments: &[&str],
    expected: &Expected,
) -> Result<(), String> {
    let root = parse(edited, source).map_err(|error| error.to_string())?;
    let found = walk(&root, segments);
    let node = match found.last() {
        Some((_, node)) if found.len() == segments.len() => node,
        _ => return Err("the key is missing".to_owned()),
    };
    let read = match &node.value {
        Value::Sequence(items) => Expected::List(
            items
                .iter()
                .map(|item| render::scalar_text(&item.value).unwrap_or_default())
                .collect(),
        ),
        other => Expected::Scalar(render::scalar_text(other).unwrap_or_default()),
    };
    match (expected, &read) {
        (Expected::Scalar(want), Expected::Scalar(got)) if want == got => Ok(()),
        (Expected::List(want), Expected::List(got)) if want == got => Ok(()),
        (Expected::List(want), Expected::Scalar(got)) if want.is_empty() && got.is_empty() => {
            Ok(())
        }
        _ => Err(format!(
            "it reads {}",
            render::for_get(node).replace('\n', ", ")
        )),
    }
}

/// Refuses an edit whose result the loader rejects, unless the file was already rejected for at
/// least the same problems.
fn check_loads(
    original: &str,
    edited: &str,
    source: &Path,
    env: &LoadEnv,
) -> Result<(), EditError> {
    let Err(after) = Config::from_yaml(edited, source, env) else {
        return Ok(());
    };
    let before = Config::from_yaml(original, source, env).err();
    let no_new_problem = match (&before, &after) {
        (Some(ConfigError::Invalid(before)), ConfigError::Invalid(after)) => {
            after.iter().all(|problem| {
                before
                    .iter()
                    .any(|old| old.key == problem.key && old.message == problem.message)
            })
        }
        _ => false,
    };
    if no_new_problem {
        Ok(())
    } else {
        Err(EditError::WouldBeInvalid(after))
    }
}

#[cfg(test)]
mod tests;
