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

/// Every key that is read but not acted on yet: none today.
pub const NOT_ACTED_ON: &[NotActedOn] = &[];

/// The entry for a dotted key, if it is not acted on yet.
pub fn not_acted_on(key: &str) -> Option<&'static NotActedOn> {
    NOT_ACTED_ON.iter().find(|entry| entry.key == key)
}

/// Warns about every key of the file that is listed in [`NOT_ACTED_ON`], at its line.
pub(super) fn warn_not_acted_on(reader: &mut Reader<'_>, root: &Node) {
    warn_listed(reader, root, NOT_ACTED_ON);
}

/// Warns about every key of the file that is in `listed`, at its line.
fn warn_listed(reader: &mut Reader<'_>, root: &Node, listed: &[NotActedOn]) {
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
            if let Some(entry) = listed.iter().find(|entry| entry.key == path) {
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

    use super::*;
    use crate::config::yaml;

    #[test]
    fn a_written_key_that_is_not_acted_on_is_warned_about_at_its_line() {
        // The list is empty today; a key standing in for the next one shows the warning.
        let listed = [NotActedOn {
            key: "runner.allocate_pty",
            reason: "step processes get no pseudo-terminal",
        }];
        let root = yaml::parse("runner:\n  capacity: 2\n  allocate_pty: true\n").unwrap();
        let mut reader = Reader::new(Path::new("config.yaml"));
        warn_listed(&mut reader, &root, &listed);
        let [warning] = reader.warnings.as_slice() else {
            panic!(
                "one warning, for runner.allocate_pty: {:?}",
                reader.warnings
            );
        };
        assert_eq!(warning.key, "runner.allocate_pty");
        assert_eq!(warning.line, 3);
        assert!(warning.message.contains("not acted on yet"), "{warning:?}");
        assert!(warning.message.contains("pseudo-terminal"), "{warning:?}");
    }
}
