//! The `act_runner` binary end to end (assert_cmd): exit codes and messages of the start checks,
//! `generate-config`, and `register`'s input handling.

use std::io::Cursor;
use std::path::Path;

use act_runner::cli::register::{
    PartialInputs, Prompter, TokenSources, interactive, non_interactive, resolve_token,
    split_labels,
};
use act_runner::config::{Config, LoadEnv, Registration, Secret};

use crate::support::command::Scratch;

/// Runs `command` to its end: its exit code, and its stdout and stderr as one text.
fn run(command: &mut assert_cmd::Command) -> (Option<i32>, String) {
    let output = command.output().unwrap();
    (output.status.code(), output_text(&output))
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn generate_config_then_daemon_without_registration_exits_77_and_says_how_to_register() {
    let scratch = Scratch::new();
    let generated = scratch
        .act_runner()
        .arg("generate-config")
        .output()
        .unwrap();
    assert!(generated.status.success());
    assert_eq!(
        generated.stdout,
        act_runner::config::EXAMPLE_CONFIG.as_bytes()
    );
    std::fs::write(scratch.file("c.yaml"), &generated.stdout).unwrap();

    let (code, text) = run(scratch.act_runner().args(["-c", "c.yaml", "daemon"]));
    assert_eq!(code, Some(77), "{text}");
    assert!(text.contains(".runner not found"), "{text}");
    assert!(text.contains("act_runner register"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn invalid_configuration_exits_78_naming_file_line_and_key() {
    let scratch = Scratch::new();
    scratch.write("c.yaml", "runner:\n  capacity: 2\n  timeout: forever\n");
    for command in [
        &["daemon"][..],
        &["register", "--no-interactive"],
        &["cache-server"],
    ] {
        let (code, text) = run(scratch.act_runner().args(["-c", "c.yaml"]).args(command));
        assert_eq!(code, Some(78), "{command:?}: {text}");
        assert!(
            text.contains("c.yaml:3:12: `runner.timeout`"),
            "{command:?}: {text}"
        );
    }
}

#[test]
fn unknown_keys_are_logged_as_warnings() {
    let scratch = Scratch::new();
    scratch.write("c.yaml", "runner:\n  capacityy: 2\n");
    let (code, text) = run(scratch.act_runner().args(["-c", "c.yaml", "daemon"]));
    assert_eq!(code, Some(77), "{text}");
    assert!(
        text.contains("runner.capacityy") && text.contains("line=2"),
        "{text}"
    );
}

#[test]
fn corrupt_registration_exits_77_naming_the_file() {
    let scratch = Scratch::new();
    scratch.write(".runner", "{ this is not json");
    let (code, text) = run(scratch.act_runner().arg("daemon"));
    assert_eq!(code, Some(77), "{text}");
    assert!(text.contains(".runner is corrupt"), "{text}");
}

/// Issue 22: a config file that is a FIFO, or a `.runner` that is `/dev/zero`, is refused at once
/// with the usual exit code instead of hanging the runner or growing it without end.
#[test]
fn a_fifo_config_or_a_device_registration_is_refused_at_once() {
    let scratch = Scratch::new();
    let fifo = scratch.file("config.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let output = scratch
        .act_runner()
        .args(["-c", "config.yaml", "daemon"])
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(78), "{text}");
    assert!(text.contains("not a regular file"), "{text}");

    let scratch = Scratch::new();
    std::os::unix::fs::symlink("/dev/zero", scratch.file(".runner")).unwrap();
    let (code, text) = run(scratch
        .act_runner()
        .arg("daemon")
        .timeout(std::time::Duration::from_secs(20)));
    assert_eq!(code, Some(77), "{text}");
    assert!(text.contains("not a regular file"), "{text}");
}

#[test]
fn missing_config_file_exits_78() {
    let scratch = Scratch::new();
    let (code, text) = run(scratch.act_runner().args(["-c", "nope.yaml", "daemon"]));
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("nope.yaml"), "{text}");
}

#[test]
fn register_without_token_in_non_interactive_mode_exits_78_naming_every_source() {
    let scratch = Scratch::new();
    let (code, text) = run(scratch.act_runner().args([
        "register",
        "--no-interactive",
        "--instance",
        "http://127.0.0.1:9",
    ]));
    assert_eq!(code, Some(78), "{text}");
    for source in [
        "--token-file",
        "--token",
        "GITEA_RUNNER_REGISTRATION_TOKEN",
        "registration-token",
    ] {
        assert!(text.contains(source), "{source} missing: {text}");
    }
    assert!(!scratch.file(".runner").exists());
}

#[test]
fn interactive_register_with_closed_stdin_fails_clearly() {
    let scratch = Scratch::new();
    let (code, text) = run(scratch.act_runner().arg("register").write_stdin(""));
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("Gitea instance URL") && text.contains("input closed"),
        "{text}"
    );
}

#[test]
fn config_generate_prints_the_example_and_config_init_writes_a_minimal_file_once() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = Scratch::new();
    let generated = scratch
        .act_runner()
        .args(["config", "generate"])
        .output()
        .unwrap();
    assert!(generated.status.success());
    assert_eq!(
        generated.stdout,
        act_runner::config::EXAMPLE_CONFIG.as_bytes()
    );

    let (code, text) = run(scratch.act_runner().args(["config", "init"]));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("wrote config file \"config.yaml\""), "{text}");
    let written = scratch.file("config.yaml");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        act_runner::cli::generate_config::MINIMAL_CONFIG
    );
    let mode = std::fs::metadata(&written).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The minimal file loads: without a registration the daemon stops at that, not at the config.
    let (code, text) = run(scratch.act_runner().args(["-c", "config.yaml", "daemon"]));
    assert_eq!(code, Some(77), "{text}");

    std::fs::write(&written, "runner:\n  capacity: 2\n").unwrap();
    let (code, text) = run(scratch.act_runner().args(["config", "init"]));
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("already exists, pass --force"), "{text}");
    assert!(
        std::fs::read_to_string(&written)
            .unwrap()
            .contains("capacity: 2")
    );
    let (code, text) = run(scratch.act_runner().args(["config", "init", "--force"]));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        !std::fs::read_to_string(&written)
            .unwrap()
            .contains("capacity")
    );

    let (code, text) = run(scratch
        .act_runner()
        .args(["-c", "other.yml", "config", "init"]));
    assert_eq!(code, Some(0), "{text}");
    assert!(scratch.file("other.yml").exists());
}

#[test]
fn bug_report_prints_version_and_platform() {
    let (code, text) = run(Scratch::new().act_runner().arg("bug-report"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with(&format!("Runner version: {}\n", act_runner::VERSION)),
        "{text}"
    );
    assert!(text.contains("OS/Arch:        linux/"), "{text}");
}

#[test]
fn cache_server_requires_the_external_secret() {
    let scratch = Scratch::new();
    let (code, text) = run(scratch.act_runner().args(["cache-server", "-p", "0"]));
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("cache.external_secret"), "{text}");
}

#[test]
fn version_flags_print_the_version_as_upstream() {
    for flag in ["--version", "-v"] {
        let output = Scratch::new().act_runner().arg(flag).output().unwrap();
        assert!(output.status.success(), "{flag}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("act_runner version {}", act_runner::VERSION),
            "{flag}"
        );
    }
}

// --- register's inputs, through its public functions ---

fn sources<'a>(
    file: Option<&'a Path>,
    flag: Option<&'a str>,
    env: Option<&str>,
    creds: Option<&Path>,
) -> TokenSources<'a> {
    TokenSources {
        token_file: file,
        token_flag: flag,
        env_token: env.map(str::to_owned),
        credentials_dir: creds.map(Path::to_owned),
    }
}

#[test]
fn token_precedence_is_file_then_flag_then_env_then_credential() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, " from-file\n").unwrap();
    std::fs::write(dir.path().join("registration-token"), "from-credential\n").unwrap();
    let creds = Some(dir.path());
    let resolve = |sources: TokenSources<'_>| {
        resolve_token(&sources)
            .unwrap()
            .map(|token| token.expose().to_owned())
    };
    assert_eq!(
        resolve(sources(Some(&file), Some("flag"), Some("env"), creds)).as_deref(),
        Some("from-file")
    );
    assert_eq!(
        resolve(sources(None, Some(" flag "), Some("env"), creds)).as_deref(),
        Some("flag")
    );
    assert_eq!(
        resolve(sources(None, None, Some("env"), creds)).as_deref(),
        Some("env")
    );
    assert_eq!(
        resolve(sources(None, Some(""), Some(""), creds)).as_deref(),
        Some("from-credential")
    );
    assert_eq!(
        resolve(sources(None, None, None, Some(&dir.path().join("absent")))),
        None
    );
    let error = resolve_token(&sources(
        Some(&dir.path().join("missing")),
        None,
        None,
        None,
    ))
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("cannot read the token file"),
        "{error:#}"
    );
}

#[test]
fn labels_flag_is_split_and_trimmed() {
    assert_eq!(
        split_labels(" a:host , b ,,c:docker://x"),
        ["a:host", "b", "c:docker://x"]
    );
    assert!(split_labels("").is_empty());
}

fn config(text: &str, dir: &Path) -> Config {
    let text = format!("runner:\n  file: {}\n{text}", dir.join(".runner").display());
    Config::from_yaml(&text, Path::new("c.yaml"), &LoadEnv::with_home(dir))
        .unwrap()
        .config
}

fn label_strings(inputs: &act_runner::cli::register::RegisterInputs) -> Vec<String> {
    inputs.labels.iter().map(ToString::to_string).collect()
}

#[test]
fn non_interactive_uses_config_labels_over_flags_then_defaults_and_the_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let partial = PartialInputs {
        instance: Some("http://gitea/".into()),
        token: Some(Secret::new("t")),
        name: None,
        labels: Some(vec!["flag:host".into()]),
        ephemeral: true,
    };
    let with_config = non_interactive(
        partial.clone(),
        &config("  labels: [cfg:docker://alpine]\n", dir.path()),
        "box",
    )
    .unwrap();
    assert_eq!(label_strings(&with_config), ["cfg:docker://alpine"]);
    assert_eq!(with_config.name, "box");
    assert!(with_config.ephemeral);
    let from_flag = non_interactive(partial.clone(), &config("", dir.path()), "box").unwrap();
    assert_eq!(label_strings(&from_flag), ["flag:host"]);
    let defaults = non_interactive(
        PartialInputs {
            labels: None,
            ..partial.clone()
        },
        &config("", dir.path()),
        "box",
    )
    .unwrap();
    assert_eq!(defaults.labels.len(), 3);
    assert_eq!(defaults.labels[0].name, "ubuntu-latest");
    let no_instance = non_interactive(
        PartialInputs {
            instance: None,
            ..partial
        },
        &config("", dir.path()),
        "box",
    );
    assert!(
        no_instance
            .unwrap_err()
            .to_string()
            .contains("instance address is empty")
    );
}

#[test]
fn interactive_prompts_for_everything_missing_including_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut prompter = Prompter {
        input: Cursor::new("\nhttp://gitea.example/\n\ntok3n\n\na:host, b:docker://node:20\n"),
        output: Vec::new(),
        echo_hint: false,
    };
    let inputs = interactive(
        PartialInputs::default(),
        &config("", dir.path()),
        "box",
        &mut prompter,
    )
    .unwrap()
    .unwrap();
    assert_eq!(inputs.instance, "http://gitea.example/");
    assert_eq!(inputs.token.expose(), "tok3n");
    assert_eq!(inputs.name, "box");
    assert_eq!(label_strings(&inputs), ["a:host", "b:docker://node:20"]);
    let asked = String::from_utf8(prompter.output).unwrap();
    assert_eq!(
        asked.matches("Enter the Gitea instance URL").count(),
        2,
        "empty answers re-prompt"
    );
    assert_eq!(asked.matches("Enter the runner token:").count(), 2);
    assert!(!asked.contains("tok3n"));
}

#[test]
fn interactive_asks_before_overwriting_and_keeps_the_registration_on_no() {
    let dir = tempfile::tempdir().unwrap();
    let existing = Registration {
        id: 1,
        uuid: "u".into(),
        name: "n".into(),
        token: Secret::new("t"),
        address: "http://gitea/".into(),
        labels: vec![],
        ephemeral: false,
    };
    existing.save(&dir.path().join(".runner")).unwrap();
    let mut prompter = Prompter {
        input: Cursor::new("n\n"),
        output: Vec::new(),
        echo_hint: false,
    };
    let outcome = interactive(
        PartialInputs::default(),
        &config("", dir.path()),
        "box",
        &mut prompter,
    )
    .unwrap();
    assert!(outcome.is_none());
    assert!(
        String::from_utf8(prompter.output)
            .unwrap()
            .contains("overwrite local config? [y/N]")
    );
}

#[test]
fn completion_scripts_come_from_the_clap_definition() {
    let scratch = Scratch::new();
    for (shell, marker) in [
        ("bash", "complete -F _act_runner"),
        ("zsh", "#compdef act_runner"),
        ("fish", "complete -c act_runner"),
    ] {
        let output = scratch
            .act_runner()
            .args(["completion", shell])
            .output()
            .unwrap();
        let text = output_text(&output);
        assert!(output.status.success(), "{shell}: {text}");
        assert!(text.contains(marker), "{shell}: {text}");
        for subcommand in ["register", "daemon", "generate-config", "completion"] {
            assert!(text.contains(subcommand), "{shell} lacks {subcommand}");
        }
    }
    let output = scratch
        .act_runner()
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
}

fn save_registration(path: &Path, labels: &[&str]) {
    Registration {
        id: 1,
        uuid: "8c1e1b1a-0000-4000-8000-000000000001".into(),
        name: "n".into(),
        token: Secret::new("0123456789abcdef0123456789abcdef01234567"),
        address: "http://127.0.0.1:1/".into(),
        labels: labels.iter().map(|label| label.to_string()).collect(),
        ephemeral: false,
    }
    .save(path)
    .unwrap();
}

/// Runs `act_runner ARGS` in `scratch` with `env` set: the exit code and everything it printed.
fn exit_and_text(scratch: &Scratch, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = scratch.act_runner();
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (output.status.code(), output_text(&output))
}

/// Issue 23: `.runner` holds the runner's identity; a copy others may read or write, or a symbolic
/// link, is warned about at start. (The label from the environment is invalid, so the daemon
/// stops with 78 right after the checks, before it contacts anyone.)
#[test]
fn a_registration_others_may_read_or_a_symlink_is_warned_about_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new();
    let real = scratch.file("real.runner");
    save_registration(&real, &["a:host"]);
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&real, scratch.file(".runner")).unwrap();
    let (code, text) = exit_and_text(&scratch, &["daemon"], &[("GITEA_RUNNER_LABELS", ":host")]);
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains(".runner is a symbolic link (to "), "{text}");
    assert!(text.contains(".runner has mode 0644"), "{text}");
    assert!(text.contains("chmod 600"), "{text}");
    assert!(!text.contains("0123456789abcdef"), "{text}");
}

/// Issue 23: a `.runner` that is a directory is no registration (77); a `runner.file` with a NUL
/// byte is an invalid configuration (78). Neither is a runtime failure (1).
#[test]
fn a_registration_directory_exits_77_and_a_path_with_nul_exits_78() {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.file(".runner")).unwrap();
    let (code, text) = exit_and_text(&scratch, &["daemon"], &[]);
    assert_eq!(code, Some(77), "{text}");
    assert!(
        text.contains(".runner is corrupt: not a regular file"),
        "{text}"
    );

    scratch.write("c.yaml", "runner:\n  file: \"a\\0b\"\n");
    for command in [
        &["-c", "c.yaml", "daemon"][..],
        &["-c", "c.yaml", "register", "--no-interactive"],
    ] {
        let (code, text) = exit_and_text(&scratch, command, &[]);
        assert_eq!(code, Some(78), "{command:?}: {text}");
        assert!(
            text.contains("c.yaml:2:9: `runner.file`: a path cannot contain a NUL byte"),
            "{command:?}: {text}"
        );
    }
}

/// Issue 23: a label with an empty name or an unknown scheme is refused with 78, at register
/// (before any request: the instance is unreachable) and at daemon start, wherever it comes from.
#[test]
fn labels_with_an_empty_name_or_an_unknown_scheme_exit_78() {
    let scratch = Scratch::new();
    for labels in [":host", "ok:host,ubuntu:dokcer://node:18"] {
        let register = [
            "register",
            "--no-interactive",
            "--instance",
            "http://127.0.0.1:1/",
            "--token",
            "t",
            "--labels",
            labels,
        ];
        let (code, text) = exit_and_text(&scratch, &register, &[]);
        assert_eq!(code, Some(78), "{labels}: {text}");
        assert!(text.contains("invalid label"), "{labels}: {text}");
    }
    // From the environment, from the registration file, from the config.
    save_registration(&scratch.file(".runner"), &["a:host"]);
    let env = [("GITEA_RUNNER_LABELS", "a:host, :docker://node:18")];
    let (code, text) = exit_and_text(&scratch, &["daemon"], &env);
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("--labels (or GITEA_RUNNER_LABELS): invalid label \":docker://node:18\": the label has an empty name"),
        "{text}"
    );
    save_registration(&scratch.file(".runner"), &["a:host", ":host"]);
    let (code, text) = exit_and_text(&scratch, &["daemon"], &[]);
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains(".runner: invalid label \":host\""), "{text}");
    scratch.write("c.yaml", "runner:\n  labels: [\"x:vm://img\"]\n");
    let (code, text) = exit_and_text(&scratch, &["-c", "c.yaml", "daemon"], &[]);
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("`runner.labels[0]`: \"x:vm://img\": unknown scheme `vm`"),
        "{text}"
    );
}
