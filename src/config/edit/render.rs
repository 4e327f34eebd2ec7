//! Values to text: a scalar written into the file (plain when YAML reads it back unchanged,
//! double-quoted otherwise), and what `config get` prints (upstream's shapes: a scalar as it
//! is, a flat list one item a line, a flat mapping `NAME=value` a line, anything nested as YAML).

use super::super::yaml::{self, Node, Value};

/// The text of a scalar, `None` for a list or mapping.
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::Bool(value) => Some(value.to_string()),
        Value::Int(value) => Some(value.to_string()),
        Value::Float(value) => Some(value.to_string()),
        Value::String(value) => Some(value.clone()),
        Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// `text` as a YAML scalar that reads back as `text`: as a string when `as_string`, else as
/// whatever type it spells (`4`, `true`).
pub(super) fn emit_scalar(text: &str, as_string: bool) -> String {
    let reads_back = yaml::parse(&format!("k: {text}")).is_ok_and(|root| match root.value {
        Value::Mapping(entries) if entries.len() == 1 => match &entries[0].1.value {
            Value::String(read) => read == text,
            other => !as_string && scalar_text(other).as_deref() == Some(text),
        },
        _ => false,
    });
    if reads_back && !text.contains(['\n', '\r']) {
        text.to_owned()
    } else {
        double_quoted(text)
    }
}

fn double_quoted(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// What `config get` prints for `node` (no final newline).
pub(super) fn for_get(node: &Node) -> String {
    match &node.value {
        Value::Sequence(items) if items.iter().all(|item| is_scalar(&item.value)) => items
            .iter()
            .filter_map(|item| scalar_text(&item.value))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Mapping(entries) if entries.iter().all(|(_, value)| is_scalar(&value.value)) => {
            entries
                .iter()
                .map(|(key, value)| {
                    format!(
                        "{}={}",
                        key.name,
                        scalar_text(&value.value).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Value::Sequence(_) | Value::Mapping(_) => {
            let mut lines = Vec::new();
            block(&node.value, 0, &mut lines);
            lines.join("\n")
        }
        scalar => scalar_text(scalar).unwrap_or_default(),
    }
}

fn is_scalar(value: &Value) -> bool {
    scalar_text(value).is_some()
}

/// A scalar, or an empty collection, written after a `key:` or `-`.
fn inline(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(emit_scalar(text, true)),
        Value::Null => Some("null".to_owned()),
        Value::Sequence(items) if items.is_empty() => Some("[]".to_owned()),
        Value::Mapping(entries) if entries.is_empty() => Some("{}".to_owned()),
        other => scalar_text(other),
    }
}

/// `value` in block style, two spaces an indentation level, as upstream's encoder writes it.
fn block(value: &Value, indent: usize, lines: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    match value {
        Value::Mapping(entries) => {
            for (key, value) in entries {
                let key = emit_scalar(&key.name, true);
                match inline(&value.value) {
                    Some(text) => lines.push(format!("{pad}{key}: {text}")),
                    None => {
                        lines.push(format!("{pad}{key}:"));
                        block(&value.value, indent + 2, lines);
                    }
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                match inline(&item.value) {
                    Some(text) => lines.push(format!("{pad}- {text}")),
                    None => {
                        lines.push(format!("{pad}-"));
                        block(&item.value, indent + 2, lines);
                    }
                }
            }
        }
        scalar => lines.push(format!("{pad}{}", inline(scalar).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_plain_only_when_they_read_back_unchanged() {
        for (text, as_string, written) in [
            ("--cpus 2", true, "--cpus 2"),
            ("ubuntu:docker://node:22", true, "ubuntu:docker://node:22"),
            ("4", false, "4"),
            ("4", true, "\"4\""),
            ("true", true, "\"true\""),
            ("", true, "\"\""),
            ("a # b", true, "\"a # b\""),
            ("key: value", true, "\"key: value\""),
            (" padded", true, "\" padded\""),
            ("*alias", true, "\"*alias\""),
            (
                "two\nlines\t\"q\"\\",
                true,
                "\"two\\nlines\\t\\\"q\\\"\\\\\"",
            ),
        ] {
            assert_eq!(emit_scalar(text, as_string), written, "{text:?}");
            let root = yaml::parse(&format!("k: {written}")).unwrap();
            let Value::Mapping(entries) = root.value else {
                panic!("{written}")
            };
            assert_eq!(scalar_text(&entries[0].1.value).unwrap(), text);
        }
    }

    #[test]
    fn get_prints_flat_values_one_a_line_and_nested_ones_as_yaml() {
        let root = yaml::parse(
            "runner:\n  capacity: 1\n  envs:\n    A: b\n  labels:\n    - x:host\n    - y\n",
        )
        .unwrap();
        let Value::Mapping(top) = &root.value else {
            panic!()
        };
        let runner = &top[0].1;
        let Value::Mapping(fields) = &runner.value else {
            panic!()
        };
        assert_eq!(for_get(&fields[0].1), "1");
        assert_eq!(for_get(&fields[1].1), "A=b");
        assert_eq!(for_get(&fields[2].1), "x:host\ny");
        assert_eq!(
            for_get(runner),
            "capacity: 1\nenvs:\n  A: b\nlabels:\n  - x:host\n  - y"
        );
    }
}
