//! What a written file keeps (mode, owner, a symlink, CRLF), how the file is found without
//! `-c`, a missing or unparsable file, `--help`, and the key table against the loader.

use std::os::unix::fs::PermissionsExt as _;

use super::{FIXTURE, config_cmd, edited, refused, with_fixture};
use crate::support::command::Scratch;

#[test]
fn a_written_file_keeps_its_mode_its_symlink_and_its_line_endings() {
    let scratch = with_fixture(FIXTURE);
    let file = scratch.file("c.yaml");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        config_cmd(&scratch, &["set", "runner.capacity", "2"]).code,
        Some(0)
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let scratch = Scratch::new();
    scratch.write("real.yaml", FIXTURE);
    std::os::unix::fs::symlink("real.yaml", scratch.file("c.yaml")).unwrap();
    assert_eq!(
        config_cmd(&scratch, &["set", "runner.capacity", "2"]).code,
        Some(0)
    );
    let link = std::fs::symlink_metadata(scratch.file("c.yaml")).unwrap();
    assert!(link.file_type().is_symlink());
    let real = std::fs::read_to_string(scratch.file("real.yaml")).unwrap();
    assert!(real.contains("  capacity: 2\n"), "{real}");

    let crlf = FIXTURE.replace('\n', "\r\n");
    let text = edited(&crlf, &["add", "runner.labels", "x"]);
    assert_eq!(text, format!("{crlf}    - x\r\n"));
}

/// A config root edits keeps the service user's ownership, and a 0600 file stays 0600.
#[test]
fn a_written_file_keeps_its_owner_and_a_private_mode() {
    use std::os::unix::fs::MetadataExt as _;
    let scratch = with_fixture(FIXTURE);
    let file = scratch.file("c.yaml");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Only root can give a file away; anyone else checks that their own ownership stays.
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&file, Some(4321), Some(4321)).unwrap();
    }
    let before = std::fs::metadata(&file).unwrap();
    let run = config_cmd(&scratch, &["add", "runner.labels", "x"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert_eq!(after.mode() & 0o7777, 0o600);
    assert_ne!(
        after.ino(),
        before.ino(),
        "the file is replaced, not rewritten in place"
    );
}

#[test]
fn without_c_the_working_directory_config_is_used_and_said_and_none_is_an_error() {
    let scratch = with_fixture(FIXTURE);
    std::fs::rename(scratch.file("c.yaml"), scratch.file("config.yml")).unwrap();
    let output = scratch
        .act_runner()
        .args(["config", "get", "runner.capacity"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("using config file \"") && stderr.contains("config.yml\""),
        "{stderr}"
    );

    let empty = Scratch::new();
    let output = empty
        .act_runner()
        .args(["config", "set", "runner.capacity", "4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("no config.yaml or config.yml found in "),
        "{stderr}"
    );
    assert!(stderr.contains("pass one with --config"), "{stderr}");
}

#[test]
fn a_missing_or_unparsable_file_exits_78_naming_it() {
    let scratch = Scratch::new();
    let run = config_cmd(&scratch, &["set", "runner.capacity", "4"]);
    assert_eq!(run.code, Some(78), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "config file c.yaml does not exist, create one with `act_runner config init`"
        ),
        "{}",
        run.stderr
    );
    assert!(!scratch.file("c.yaml").exists());
    refused(
        "runner:\n  capacity: [1\n",
        &["get", "runner.capacity"],
        78,
        "c.yaml:",
    );
    refused(
        "- a\n- b\n",
        &["set", "runner.capacity", "1"],
        78,
        "the top level of the file is a list",
    );
}

#[test]
fn help_explains_each_command() {
    let scratch = Scratch::new();
    let output = scratch
        .act_runner()
        .args(["config", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for line in [
        "get       Print the value of a config key",
        "set       Set the value of a config key",
        "add       Append values to a list config key",
        "remove    Remove values from a list config key",
    ] {
        assert!(help.contains(line), "{help}");
    }
    let output = scratch
        .act_runner()
        .args(["config", "set", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("nothing is written (exit 78)"), "{help}");
}

/// The key table the commands check names against is the loader's: every key of the example,
/// with the example's value, is set into an empty file, loads without an unknown-key warning,
/// and reads back the same.
#[test]
fn every_key_takes_its_example_value_and_reads_it_back() {
    use act_runner::config::{
        EditKind, GoDuration, KEYS, KeyKind, LoadEnv, NOT_ACTED_ON, edit_value, get_value,
    };
    let names: Vec<&str> = KEYS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, crate::config::EVERY_KEY);

    let live = crate::config::uncomment_every_key(act_runner::config::EXAMPLE_CONFIG);
    let source = std::path::Path::new("c.yaml");
    let env = LoadEnv::with_home("/home/runner");
    let mut n_checked = 0;
    for (key, kind) in KEYS {
        let value = get_value(&live, source, key).unwrap();
        let (key, values): (String, Vec<String>) = match kind {
            KeyKind::List => (key.to_string(), value.lines().map(str::to_owned).collect()),
            KeyKind::Map => {
                let (name, value) = value.lines().next().unwrap().split_once('=').unwrap();
                (format!("{key}.{name}"), vec![value.to_owned()])
            }
            _ => (key.to_string(), vec![value]),
        };
        let edited = edit_value("", source, &env, EditKind::Set, &key, &values)
            .unwrap_or_else(|error| panic!("{key}: {error}"));
        let loaded = act_runner::config::Config::from_yaml(&edited, source, &env).unwrap();
        for warning in &loaded.warnings {
            assert!(
                NOT_ACTED_ON.iter().any(|entry| entry.key == warning.key),
                "{key}: {warning}"
            );
        }
        // Durations are written as Go prints them, everything else as given.
        let expected = match kind {
            KeyKind::Duration => GoDuration::parse(&values[0]).unwrap().to_string(),
            _ => values.join("\n"),
        };
        assert_eq!(get_value(&edited, source, &key).unwrap(), expected, "{key}");
        n_checked += 1;
    }
    assert_eq!(n_checked, KEYS.len());
}
