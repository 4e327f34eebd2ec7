//! The surgery on shapes the command-line tests do not write: each case is the text before,
//! the edit, and the exact text after (or the error), through [`check`].

use std::path::Path;

use super::*;

fn edit(before: &str, kind: EditKind, key: &str, values: &[&str]) -> Result<String, EditError> {
    let values: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
    let env = LoadEnv::with_home("/home/runner");
    edit_value(before, Path::new("c.yaml"), &env, kind, key, &values)
}

#[track_caller]
fn check(before: &str, kind: EditKind, key: &str, values: &[&str], after: &str) {
    match edit(before, kind, key, values) {
        Ok(text) => assert_eq!(text, after),
        Err(error) => panic!("{key}: {error}"),
    }
}

#[track_caller]
fn check_error(before: &str, kind: EditKind, key: &str, values: &[&str], message: &str) {
    let error = edit(before, kind, key, values).unwrap_err();
    assert!(error.to_string().contains(message), "{error}");
}

#[test]
fn a_value_is_replaced_in_place_keeping_its_comment_and_quotes_elsewhere() {
    check(
        "runner:\n  capacity: 1 # one at a time\n  file: \"x.runner\"\n",
        EditKind::Set,
        "runner.capacity",
        &["4"],
        "runner:\n  capacity: 4 # one at a time\n  file: \"x.runner\"\n",
    );
    check(
        "runner:\n  file: 'it''s' # c\n",
        EditKind::Set,
        "runner.file",
        &["true"],
        "runner:\n  file: \"true\" # c\n",
    );
    check(
        "container:\n  options: >\n    --cpus 2\n    --memory 1g\n  privileged: false\n",
        EditKind::Set,
        "container.options",
        &["--cpus 4"],
        "container:\n  options: --cpus 4\n  privileged: false\n",
    );
}

#[test]
fn missing_keys_go_at_the_end_of_their_section_at_its_indentation() {
    check(
        "",
        EditKind::Set,
        "runner.capacity",
        &["2"],
        "runner:\n  capacity: 2\n",
    );
    check(
        "# only comments\n",
        EditKind::Set,
        "log.level",
        &["debug"],
        "# only comments\nlog:\n  level: debug\n",
    );
    check(
        "runner: ~ # none\ncache:\n    enabled: true\n\n",
        EditKind::Set,
        "runner.capacity",
        &["2"],
        "runner: # none\n  capacity: 2\ncache:\n    enabled: true\n\n",
    );
    check(
        "cache:\n    enabled: true\n    # dir: x\nmetrics: {}\n",
        EditKind::Set,
        "cache.port",
        &["1"],
        "cache:\n    enabled: true\n    # dir: x\n    port: 1\nmetrics: {}\n",
    );
    check(
        "metrics: {}\n",
        EditKind::Set,
        "metrics.enabled",
        &["true"],
        "metrics:\n  enabled: true\n",
    );
    check(
        "runner:\n  envs:\n    A: b\n",
        EditKind::Set,
        "runner.envs.WITH SPACE",
        &["v"],
        "runner:\n  envs:\n    A: b\n    WITH SPACE: v\n",
    );
}

#[test]
fn lists_at_the_keys_own_indentation_are_edited_in_place() {
    let before = "runner:\n  labels:\n  - a\n  - b\n  capacity: 1\n";
    check(
        before,
        EditKind::Add,
        "runner.labels",
        &["c"],
        "runner:\n  labels:\n  - a\n  - b\n  - c\n  capacity: 1\n",
    );
    check(
        before,
        EditKind::Remove,
        "runner.labels",
        &["a"],
        "runner:\n  labels:\n  - b\n  capacity: 1\n",
    );
    check(
        "runner:\n  labels:\n    - a\n# between\n    - b\n# after\ncache: {}\n",
        EditKind::Add,
        "runner.labels",
        &["c"],
        "runner:\n  labels:\n    - a\n# between\n    - b\n    - c\n# after\ncache: {}\n",
    );
    check(
        "runner:\n  labels: []\n",
        EditKind::Add,
        "runner.labels",
        &["a"],
        "runner:\n  labels:\n    - a\n",
    );
    check(
        "runner:\n  labels:\n    - \"a\"\n    - a\n",
        EditKind::Remove,
        "runner.labels",
        &["a"],
        "runner:\n  labels:\n    - a\n",
    );
}

#[test]
fn shapes_it_does_not_rewrite_or_that_are_not_sections_are_refused() {
    check_error(
        "runner: {capacity: 1}\n",
        EditKind::Set,
        "runner.file",
        &["x"],
        "cannot edit \"runner\" in place: line 1: the section is written in flow style",
    );
    check_error(
        "{runner: {capacity: 1}}\n",
        EditKind::Set,
        "runner.capacity",
        &["2"],
        "is not written in block style",
    );
    check_error(
        "runner:\n  labels: [a]\n",
        EditKind::Add,
        "runner.labels",
        &[],
        "\"runner.labels\" needs at least one value",
    );
    check_error(
        "runner: 5\n",
        EditKind::Set,
        "runner.capacity",
        &["2"],
        "\"runner\" holds an integer in the file, not a section of keys",
    );
    check_error(
        "runner:\n  labels: null\n",
        EditKind::Remove,
        "runner.labels",
        &["a"],
        "holds null in the file, not a list",
    );
}

#[test]
fn get_names_the_first_missing_key() {
    let text = "runner:\n  envs:\n    A: b\n";
    let get = |key| get_value(text, Path::new("c.yaml"), key);
    assert_eq!(get("runner.envs.A").unwrap(), "b");
    assert!(
        matches!(get("runner.capacity"), Err(EditError::NotSet { key }) if key == "runner.capacity")
    );
    assert!(matches!(get("cache.port"), Err(EditError::NotSet { key }) if key == "cache"));
    assert!(matches!(get("cache.nope"), Err(EditError::Key(_))));
}
