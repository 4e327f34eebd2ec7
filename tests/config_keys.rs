//! No key of `config.yaml` is accepted and silently ignored: every key of `config.example.yaml` is
//! either read by the code that acts on it (outside `src/config/`) or listed in
//! `config::NOT_ACTED_ON`, which makes loading warn about it; README's "not acted on yet" list is
//! that same list.

use std::path::{Path, PathBuf};

use act_runner::config::{NOT_ACTED_ON, not_acted_on};

use crate::config::EVERY_KEY;

/// Keys the loader folds into another field: the code acts on that field.
const FOLDED: &[(&str, &str)] = &[
    ("runner.env_file", "runner.envs"),
    ("container.network_mode", "container.network"),
    ("cache.external_secret_file", "cache.external_secret"),
];

/// The code (comments left out) of the Rust sources outside `src/config/`, where keys are acted on.
fn acting_sources() -> String {
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let mut text = String::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.ends_with("config") && path.parent().is_some_and(|p| p.ends_with("src")) {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                // Comments name keys without acting on them.
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    if !line.trim_start().starts_with("//") {
                        text.push_str(line);
                        text.push('\n');
                    }
                }
            }
        }
    }
    text
}

/// Whether `source` reads the field `<section>.<leaf>` (`config.runner.capacity`,
/// `container.privileged`, ...), followed by something that cannot continue a name.
fn reads_field(source: &str, key: &str) -> bool {
    let mut parts = key.rsplit('.');
    let leaf = parts.next().unwrap();
    let section = parts.next().unwrap_or_default();
    let needle = format!("{section}.{leaf}");
    source.match_indices(&needle).any(|(at, _)| {
        let after = source[at + needle.len()..].chars().next();
        let before = source[..at].chars().next_back();
        !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn every_example_key_is_acted_on_or_warned_about() {
    let live = crate::config::uncomment_every_key(act_runner::config::EXAMPLE_CONFIG);
    let source = acting_sources();
    let mut silent = Vec::new();
    let mut n_checked = 0;
    for key in EVERY_KEY {
        // `runner.envs` and `runner.labels` hold their samples as children; the list names them.
        if !live.contains(&format!("{}:", key.rsplit('.').next().unwrap())) {
            continue;
        }
        n_checked += 1;
        let field = FOLDED
            .iter()
            .find(|(folded, _)| folded == key)
            .map_or(*key, |(_, into)| *into);
        if not_acted_on(key).is_none() && !reads_field(&source, field) {
            silent.push(*key);
        }
    }
    assert_eq!(n_checked, EVERY_KEY.len());
    assert!(
        silent.is_empty(),
        "keys read but neither acted on outside src/config/ nor listed in config::NOT_ACTED_ON: {silent:?}"
    );
}

#[test]
fn readme_lists_exactly_the_keys_not_acted_on() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("Read and validated, but not acted on yet")
        .expect("README has the not-acted-on list");
    let bullet_end = readme[start..]
        .find("\n- ")
        .map_or(readme.len(), |end| start + end);
    let bullet = &readme[start..bullet_end];
    let mut listed: Vec<&str> = bullet
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.contains('.'))
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = NOT_ACTED_ON.iter().map(|entry| entry.key).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "README's list: {bullet}");
}
