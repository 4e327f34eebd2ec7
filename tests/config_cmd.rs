//! `act_runner config get|set|add|remove` end to end, as upstream's scripts call them: output,
//! exit codes, the file left untouched by every refused edit, and what a written file keeps
//! (comments, mode, a symlink, CRLF).

mod files;

use crate::support::command::Scratch;

/// A file with comments, blank lines and one of each kind of value, as upstream's edit tests use.
const FIXTURE: &str = "# A leading comment.
log:
  # The logging level.
  level: info

runner:
  capacity: 1
  envs:
    EXISTING: value
  timeout: 3h
  labels:
    - ubuntu-latest:docker://node:20
    # the host label
    - self-hosted
";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `act_runner -c c.yaml config <args>` in a scratch dir holding `text` as `c.yaml`.
fn config_cmd(scratch: &Scratch, args: &[&str]) -> Run {
    let output = scratch
        .act_runner()
        .args(["-c", "c.yaml", "config"])
        .args(args)
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn with_fixture(text: &str) -> Scratch {
    let scratch = Scratch::new();
    scratch.write("c.yaml", text);
    scratch
}

fn file_text(scratch: &Scratch) -> String {
    std::fs::read_to_string(scratch.file("c.yaml")).unwrap()
}

/// Runs an edit that must succeed, and returns the file after it.
#[track_caller]
fn edited(text: &str, args: &[&str]) -> String {
    let scratch = with_fixture(text);
    let run = config_cmd(&scratch, args);
    assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
    assert_eq!(run.stdout, "", "{args:?}");
    file_text(&scratch)
}

/// Runs a command that must fail with `code` and `message`, leaving the file as it was.
#[track_caller]
fn refused(text: &str, args: &[&str], code: i32, message: &str) {
    let scratch = with_fixture(text);
    let run = config_cmd(&scratch, args);
    assert_eq!(run.code, Some(code), "{args:?}: {}", run.stderr);
    assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(file_text(&scratch), text, "{args:?} changed the file");
}

#[test]
fn get_prints_a_scalar_a_list_a_mapping_and_a_section_as_upstream() {
    let scratch = with_fixture(FIXTURE);
    for (key, printed) in [
        ("runner.capacity", "1\n"),
        ("log.level", "info\n"),
        (
            "runner.labels",
            "ubuntu-latest:docker://node:20\nself-hosted\n",
        ),
        ("runner.envs", "EXISTING=value\n"),
        ("runner.envs.EXISTING", "value\n"),
    ] {
        let run = config_cmd(&scratch, &["get", key]);
        assert_eq!((run.code, run.stdout.as_str()), (Some(0), printed), "{key}");
    }
    let run = config_cmd(&scratch, &["get", "runner"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("labels:\n  - ubuntu-latest:docker://node:20\n  - self-hosted\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn get_of_a_key_the_file_does_not_set_exits_1_naming_it() {
    refused(
        FIXTURE,
        &["get", "metrics.addr"],
        1,
        "Error: c.yaml: \"metrics\" is not set",
    );
    refused(
        FIXTURE,
        &["get", "runner.envs.ABSENT"],
        1,
        "\"runner.envs.ABSENT\" is not set",
    );
}

#[test]
fn an_unknown_key_exits_78_listing_the_valid_keys_at_its_level() {
    for command in ["get", "set", "add", "remove"] {
        let mut args = vec![command, "runner.labl"];
        if command != "get" {
            args.push("x");
        }
        refused(
            FIXTURE,
            &args,
            78,
            "unknown config key \"runner.labl\", valid keys here: ",
        );
        refused(
            FIXTURE,
            &args,
            78,
            "insecure, labels, log_report_batch_size",
        );
    }
    refused(
        FIXTURE,
        &["set", "runner.envs.A.B", "x"],
        78,
        "\"runner.envs.A\" has no sub-keys",
    );
    refused(
        FIXTURE,
        &["set", "runner.capacity.x", "1"],
        78,
        "\"runner.capacity\" is a value",
    );
}

#[test]
fn set_writes_each_kind_of_value_in_the_form_upstream_writes() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["set", "runner.capacity", "4"],
            "  capacity: 1\n",
            "  capacity: 4\n",
        ),
        (
            &["set", "runner.timeout", "90m"],
            "  timeout: 3h\n",
            "  timeout: 1h30m0s\n",
        ),
        (
            &["set", "log.level", "debug"],
            "  level: info\n",
            "  level: debug\n",
        ),
        (
            &["set", "runner.envs.EXISTING", "two words"],
            "    EXISTING: value\n",
            "    EXISTING: two words\n",
        ),
        (
            &["set", "runner.envs.ADDED", "yes"],
            "    EXISTING: value\n",
            "    EXISTING: value\n    ADDED: yes\n",
        ),
        (
            &["set", "runner.labels", "one:host", "two"],
            "    - ubuntu-latest:docker://node:20\n    # the host label\n    - self-hosted\n",
            "    - one:host\n    - two\n    # the host label\n",
        ),
        (
            &["set", "runner.insecure", "True"],
            "  capacity: 1\n",
            "  capacity: 1\n",
        ),
    ];
    for (args, before, after) in cases {
        let text = edited(FIXTURE, args);
        assert_eq!(
            text,
            FIXTURE.replacen(before, after, 1) + tail(args),
            "{args:?}"
        );
    }
}

/// What an edit of a key the fixture lacks appends at the end of `runner`.
fn tail(args: &[&str]) -> &'static str {
    if args[1] == "runner.insecure" {
        "  insecure: true\n"
    } else {
        ""
    }
}

#[test]
fn set_creates_missing_sections_and_takes_values_that_look_like_flags() {
    let text = edited(FIXTURE, &["set", "container.options", "--cpus 2"]);
    assert_eq!(text, format!("{FIXTURE}container:\n  options: --cpus 2\n"));
    let text = edited(
        FIXTURE,
        &[
            "set",
            "container.network_create_options.enable_ipv4",
            "false",
        ],
    );
    assert_eq!(
        text,
        format!("{FIXTURE}container:\n  network_create_options:\n    enable_ipv4: false\n")
    );
    let scratch = with_fixture(FIXTURE);
    assert_eq!(
        config_cmd(&scratch, &["set", "container.options", "-v"]).code,
        Some(0)
    );
    assert_eq!(
        config_cmd(&scratch, &["get", "container.options"]).stdout,
        "-v\n"
    );
}

#[test]
fn set_keeps_every_other_line_of_the_example_and_the_minimal_config() {
    let example = act_runner::config::EXAMPLE_CONFIG;
    let text = edited(
        example,
        &["add", "runner.labels", "ubuntu:docker://node:22"],
    );
    let added = "  labels:\n    - ubuntu:docker://node:22\n";
    assert_eq!(text.replacen(added, "", 1), example);
    let text = edited(example, &["set", "cache.port", "8088"]);
    assert_eq!(text.replacen("  port: 8088\n", "", 1), example);

    let minimal = act_runner::cli::generate_config::MINIMAL_CONFIG;
    let text = edited(minimal, &["set", "runner.capacity", "4"]);
    assert_eq!(text, format!("{minimal}runner:\n  capacity: 4\n"));
}

#[test]
fn set_refuses_a_value_of_the_wrong_type_or_count_or_a_section() {
    refused(
        FIXTURE,
        &["set", "runner.capacity", "many"],
        78,
        "\"many\" is not a whole number",
    );
    refused(
        FIXTURE,
        &["set", "runner.timeout", "soon"],
        78,
        "runner.timeout: invalid duration \"soon\"",
    );
    refused(
        FIXTURE,
        &["set", "runner.insecure", "maybe"],
        78,
        "\"maybe\" is not a boolean",
    );
    refused(
        FIXTURE,
        &["set", "cache.size_limit", "lots"],
        78,
        "cache.size_limit: ",
    );
    refused(
        FIXTURE,
        &["set", "runner.capacity", "1", "2"],
        78,
        "takes exactly one value",
    );
    refused(
        FIXTURE,
        &["set", "runner", "x"],
        78,
        "\"runner\" is a section, set one of its keys instead: action_shallow_clone",
    );
    refused(
        FIXTURE,
        &["set", "runner.envs", "x"],
        78,
        "set one of its keys instead: runner.envs.NAME",
    );
}

#[test]
fn an_edit_the_loader_would_refuse_is_not_written() {
    refused(
        FIXTURE,
        &["set", "cache.port", "70000"],
        78,
        "the edit would produce a config the runner cannot load",
    );
    refused(
        FIXTURE,
        &["set", "cache.port", "70000"],
        78,
        "`cache.port`: 70000 is out of range",
    );
    refused(
        FIXTURE,
        &["set", "runner.protocol", "carrier-pigeon"],
        78,
        "`runner.protocol`",
    );
    refused(
        FIXTURE,
        &["add", "runner.labels", ":host"],
        78,
        "`runner.labels[2]`: \":host\": the label has an empty name",
    );
}

#[test]
fn a_config_already_refused_can_be_fixed_one_key_at_a_time() {
    let broken = "runner:\n  timeout: forever\ncache:\n  port: 70000\n";
    let text = edited(broken, &["set", "cache.port", "8088"]);
    assert_eq!(text, "runner:\n  timeout: forever\ncache:\n  port: 8088\n");
    refused(
        broken,
        &["set", "runner.protocol", "carrier-pigeon"],
        78,
        "cannot load",
    );
}

#[test]
fn add_appends_after_the_last_item_and_creates_a_missing_list() {
    let text = edited(
        FIXTURE,
        &["add", "runner.labels", "ubuntu:docker://node:22", "b"],
    );
    assert_eq!(
        text,
        format!("{FIXTURE}    - ubuntu:docker://node:22\n    - b\n")
    );
    let text = edited(FIXTURE, &["add", "container.valid_volumes", "data"]);
    assert_eq!(
        text,
        format!("{FIXTURE}container:\n  valid_volumes:\n    - data\n")
    );
    let text = edited(
        "runner:\n  labels: [a] # flow\n",
        &["add", "runner.labels", "b"],
    );
    assert_eq!(text, "runner:\n  labels: # flow\n    - a\n    - b\n");
}

#[test]
fn add_refuses_a_duplicate_and_a_key_that_is_not_a_list() {
    refused(
        FIXTURE,
        &["add", "runner.labels", "self-hosted"],
        78,
        "runner.labels already contains \"self-hosted\"",
    );
    refused(
        FIXTURE,
        &["add", "runner.capacity", "4"],
        78,
        "\"runner.capacity\" is not a list, use `config set` instead",
    );
    refused(FIXTURE, &["add", "runner.envs", "A=b"], 78, "is not a list");
    refused(
        "runner:\n  labels: x\n",
        &["add", "runner.labels", "y"],
        78,
        "\"runner.labels\" holds a string in the file, not a list",
    );
}

#[test]
fn remove_drops_the_items_and_their_lines_only() {
    let text = edited(
        FIXTURE,
        &["remove", "runner.labels", "ubuntu-latest:docker://node:20"],
    );
    assert_eq!(
        text,
        FIXTURE.replacen("    - ubuntu-latest:docker://node:20\n", "", 1)
    );
    let text = edited(FIXTURE, &["remove", "runner.labels", "self-hosted"]);
    assert_eq!(text, FIXTURE.replacen("    - self-hosted\n", "", 1));
    let text = edited(
        FIXTURE,
        &[
            "remove",
            "runner.labels",
            "self-hosted",
            "ubuntu-latest:docker://node:20",
        ],
    );
    assert!(
        text.ends_with("  labels: []\n    # the host label\n"),
        "{text}"
    );
}

#[test]
fn remove_refuses_a_value_the_list_lacks_and_a_key_the_file_lacks() {
    refused(
        FIXTURE,
        &["remove", "runner.labels", "absent"],
        78,
        "runner.labels does not contain \"absent\"",
    );
    refused(
        FIXTURE,
        &["remove", "container.valid_volumes", "x"],
        1,
        "\"container.valid_volumes\" is not set",
    );
    refused(
        FIXTURE,
        &["remove", "runner.timeout", "3h"],
        78,
        "is not a list",
    );
}
