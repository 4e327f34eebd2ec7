//! The keys this runner reads and validates but does not act on yet, each with the reason a user
//! is told. This list is the one place that says so: loading warns (with file, line and key) about
//! every one of them written in `config.yaml`, README's "not acted on yet" list repeats it, and a
//! test fails for a key of `config.example.yaml` that is neither acted on nor listed here. Take a
//! key out when its behaviour lands.

use super::reader::Reader;
use super::yaml::{Node, Value};

/// One key that is accepted but has no effect yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotActedOn {
    /// The dotted key, e.g. `runner.allocate_pty`.
    pub key: &'static str,
    /// What the user does not get, in a few words.
    pub reason: &'static str,
}

/// Every key that is read but not acted on yet.
pub const NOT_ACTED_ON: &[NotActedOn] = &[
    NotActedOn {
        key: "runner.allocate_pty",
        reason: "step processes get no pseudo-terminal",
    },
    NotActedOn {
        key: "runner.tool_cache_mode",
        reason: "every job gets a tool cache of its own",
    },
    NotActedOn {
        key: "container.bind_workdir",
        reason: "workspaces stay inside the job container",
    },
];

/// The entry for a dotted key, if it is not acted on yet.
pub fn not_acted_on(key: &str) -> Option<&'static NotActedOn> {
    NOT_ACTED_ON.iter().find(|entry| entry.key == key)
}

/// Warns about every key of the file that is listed in [`NOT_ACTED_ON`], at its line.
pub(super) fn warn_not_acted_on(reader: &mut Reader<'_>, root: &Node) {
    let mut pending = vec![(String::new(), root)];
    while let Some((prefix, node)) = pending.pop() {
        let Value::Mapping(entries) = &node.value else {
            continue;
        };
        for (key, value) in entries {
            let path = if prefix.is_empty() {
                key.name.clone()
            } else {
                format!("{prefix}.{}", key.name)
            };
            if let Some(entry) = not_acted_on(&path) {
                reader.warn(
                    &path,
                    key.position,
                    format!("not acted on yet ({}), the value is ignored", entry.reason),
                );
            }
            pending.push((path, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, LoadEnv};

    #[test]
    fn a_written_key_that_is_not_acted_on_is_warned_about_at_its_line() {
        let env = LoadEnv::with_home("/home/runner");
        let text = "runner:\n  capacity: 2\n  allocate_pty: true\n";
        let loaded = Config::from_yaml(text, Path::new("config.yaml"), &env).unwrap();
        let warning = loaded
            .warnings
            .iter()
            .find(|warning| warning.key == "runner.allocate_pty")
            .expect("a warning for runner.allocate_pty");
        assert_eq!(warning.line, 3);
        assert!(warning.message.contains("not acted on yet"), "{warning:?}");
        assert!(
            loaded
                .warnings
                .iter()
                .all(|warning| warning.key != "runner.capacity")
        );
    }
}
