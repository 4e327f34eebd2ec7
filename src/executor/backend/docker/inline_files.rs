//! The small files a shell step needs (its script, fresh file-command files, the event payload),
//! written by `sh` at the start of the step's own exec instead of by an archive upload.
//!
//! Why: an upload is a Docker call of its own before every step, and on a copy-on-write storage
//! driver it costs about as much as the exec itself; carried on the exec's command line the files
//! cost nothing of their own. Only steps whose program is `sh` or `bash` take this path: their
//! image has a shell, which the cancellation kill (`sh` scanning `/proc`) assumes already.
//! Anything else, or files too large for a command line (Linux caps one argument at 128 KiB),
//! goes by archive.
//!
//! The files are created by the user the step runs as, so they get that user's default mode
//! (umask), not `NewFile::mode`: the step can write its own file-command files either way, and the
//! script is run through its interpreter, never executed directly.
//!
//! With a [`Report`], the same `sh` also ends the exec: it runs the step as its child, then prints
//! one line on stderr, `<marker> <exit status> <0|1>`, the last field saying whether the command
//! directory holds anything, and exits with the step's status. The runner takes that line out of
//! the output ([`take_report`]) and so needs neither an `inspect` call for the exit code nor an
//! archive read of command files the step left empty: a step costs its exec and nothing after.
//! The marker is random per exec, so no output can carry it by chance.
//!
//! The step's stderr goes into its stdout (`2>&1`): Docker copies an exec's two streams apart,
//! so lines of the two could reach the runner in another order than written, and an `add-mask`
//! on one stream would not cover a line printed right after it on the other. One stream keeps
//! the order; the wrapping `sh`'s own report stays on stderr.

use crate::executor::backend::NewFile;
use crate::executor::line_batch::LineBatch;

/// One file's contents on the command line at most (below the kernel's 128 KiB per argument).
const MAX_FILE_BYTES: usize = 96 * 1024;
/// All files together (the command line and the environment share about 2 MiB).
const MAX_TOTAL_BYTES: usize = 256 * 1024;

/// Writes each `path contents` pair up to `--`, once [`make_dirs`] made sure their directories
/// exist. Exit status 125 (with the shell's own message) when a file cannot be written.
const WRITE_FILES: &str =
    r#"while [ "$1" != -- ]; do printf %s "$2" > "$1" || exit 125; shift 2; done; shift"#;
/// Then runs the rest in its place, its stderr into its stdout (see the module's documentation).
const THEN_EXEC: &str = r#"; exec "$@" 2>&1"#;
/// Or takes the marker and the command directory, runs the rest as a child and reports (see the
/// module's documentation). `[ -s ]` is true for any non-empty file and for a directory, so a
/// `0` means that reading the directory back would find no non-empty regular file.
const THEN_REPORT: &str = r#"; m=$1; c=$2; shift 2; "$@" 2>&1; s=$?; f=0; for p in "$c"/* "$c"/.[!.]*; do [ -s "$p" ] && f=1; done; printf '%s %s %s\n' "$m" "$s" "$f" >&2; exit "$s""#;

/// What the wrapping `sh` reports when the step's process has ended: the random `marker` that
/// starts its line, and the command directory whose entries it checks.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub marker: &'a str,
    pub command_dir: &'a str,
}

/// The command that writes `files` and then runs `argv` (reporting on it, with `report`), or
/// `None` when the files must be uploaded. `files` have absolute paths.
pub fn wrap(argv: &[String], files: &[NewFile], report: Option<Report>) -> Option<Vec<String>> {
    let program = argv.first()?;
    if files.is_empty() || !matches!(program.as_str(), "sh" | "bash") {
        return None;
    }
    let then = match report {
        Some(_) => THEN_REPORT,
        None => THEN_EXEC,
    };
    let script = format!("{}{WRITE_FILES}{then}", make_dirs(files));
    let mut total = 0;
    let mut wrapped = vec!["sh".to_string(), "-c".to_string(), script];
    wrapped.push("sh".to_string());
    for file in files {
        // A NUL cannot travel in an argument; text files never hold one.
        let contents = std::str::from_utf8(&file.contents).ok()?;
        total += contents.len();
        let fits = contents.len() <= MAX_FILE_BYTES && total <= MAX_TOTAL_BYTES;
        if !fits || contents.contains('\0') || !file.path.starts_with('/') {
            return None;
        }
        wrapped.push(file.path.clone());
        wrapped.push(contents.to_string());
    }
    wrapped.push("--".to_string());
    if let Some(report) = report {
        wrapped.push(report.marker.to_string());
        wrapped.push(report.command_dir.to_string());
    }
    wrapped.extend(argv.iter().cloned());
    Some(wrapped)
}

/// `argv` run by a `sh` that sends its stderr into its stdout, for an exec that [`wrap`] does not
/// carry (a program other than `sh`, such as `node` or a custom shell, or files by archive): the
/// same one stream, for the same reason (see the module's documentation). The job container has
/// a `sh`, as its keep-alive and the cancellation kill already assume.
///
/// `dash` and busybox `sh` drop variables whose names are not shell names from what they pass on,
/// and an action's inputs are such names (`INPUT_RESTORE-KEYS`). So `env` (`NAME=VALUE` pairs)
/// moves each of them to a pair of shell names here, `ACT_RUNNER_N<i>` (the name) and
/// `ACT_RUNNER_V<i>` (the value), and the wrapping `sh` gives them back to the program through
/// `env`. The values stay in the environment, out of the exec's command, which Docker's events
/// show. Returns the command and the environment of the exec.
pub fn one_stream(argv: Vec<String>, env: Vec<String>) -> (Vec<String>, Vec<String>) {
    let mut renamed = 0;
    let mut kept = Vec::with_capacity(env.len());
    for entry in env {
        let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        if is_shell_name(name) {
            kept.push(entry);
        } else {
            kept.push(format!("{RENAMED_NAME}{renamed}={name}"));
            kept.push(format!("{RENAMED_VALUE}{renamed}={value}"));
            renamed += 1;
        }
    }
    let mut wrapped = vec!["sh".to_string(), "-c".to_string()];
    if renamed == 0 {
        wrapped.push(String::from(r#"exec "$@" 2>&1"#));
        wrapped.push("sh".to_string());
    } else {
        wrapped.push(String::from(RESTORE_THEN_EXEC));
        wrapped.push("sh".to_string());
        wrapped.push(renamed.to_string());
    }
    wrapped.extend(argv);
    (wrapped, kept)
}

/// The prefixes of [`one_stream`]'s renamed variables.
const RENAMED_NAME: &str = "ACT_RUNNER_N";
const RENAMED_VALUE: &str = "ACT_RUNNER_V";
/// Puts `ACT_RUNNER_N<i>=ACT_RUNNER_V<i>` for each of the `$1` renamed variables in front of the
/// command, unset, and runs it through `env`.
const RESTORE_THEN_EXEC: &str = r#"n=$1; shift; while [ "$n" -gt 0 ]; do n=$((n-1)); eval "set -- \"\$ACT_RUNNER_N$n=\$ACT_RUNNER_V$n\" \"\$@\"; unset ACT_RUNNER_N$n ACT_RUNNER_V$n"; done; exec env "$@" 2>&1"#;

/// `[A-Za-z_][A-Za-z0-9_]*`: what a POSIX shell keeps in the environment it passes on.
fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The shell code that creates the files' missing directories, all in one `mkdir` (a process
/// start costs a few milliseconds inside a container, and the first step of a job has two new
/// directories: its command files' and the event payload's), or nothing when every file is at the
/// top level. The directories go into the script quoted, so the files stay plain arguments.
fn make_dirs(files: &[NewFile]) -> String {
    let mut dirs: Vec<&str> = Vec::new();
    for file in files {
        if let Some((dir, _)) = file.path.rsplit_once('/')
            && !dir.is_empty()
            && !dirs.contains(&dir)
        {
            dirs.push(dir);
        }
    }
    if dirs.is_empty() {
        return String::new();
    }
    let quoted: Vec<_> = dirs.iter().map(|dir| shell_words::quote(dir)).collect();
    let tests: Vec<String> = quoted.iter().map(|dir| format!("[ -d {dir} ]")).collect();
    format!(
        "{} || mkdir -p -- {} || exit 125; ",
        tests.join(" && "),
        quoted.join(" ")
    )
}

/// The wrapping `sh`'s report: the step's exit status and whether its command directory holds
/// anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub status: i64,
    pub command_files_written: bool,
}

/// Takes the report line out of a batch of stderr lines. The report ends its line, but the step's
/// last output may not have ended its own: then that text stays, as a line of its own. Lines
/// without the marker are kept as they are; a batch without it is returned untouched.
pub fn take_report(lines: LineBatch, marker: &str) -> (LineBatch, Option<Reported>) {
    if marker.is_empty()
        || memchr::memmem::find(lines.text().as_bytes(), marker.as_bytes()).is_none()
    {
        return (lines, None);
    }
    let mut kept = LineBatch::new();
    let mut reported = None;
    for line in lines.iter() {
        let parsed = line
            .rfind(marker)
            .and_then(|at| Some((&line[..at], parse_report(&line[at + marker.len()..])?)));
        match parsed {
            Some((before, report)) => {
                reported = Some(report);
                if !before.is_empty() {
                    kept.push(before);
                }
            }
            None => kept.push(line),
        }
    }
    (kept, reported)
}

/// ` <status> <0|1>`, exactly.
fn parse_report(text: &str) -> Option<Reported> {
    let (status, written) = text.strip_prefix(' ')?.split_once(' ')?;
    if status.is_empty() || !status.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let command_files_written = match written {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    Some(Reported {
        status: status.parse().ok()?,
        command_files_written,
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn file(path: &str, contents: &str) -> NewFile {
        NewFile {
            path: path.to_string(),
            contents: contents.as_bytes().to_vec(),
            mode: 0o644,
        }
    }

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn the_shell_writes_every_file_byte_for_byte_then_runs_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let tricky = "line 1\n  '$HOME' \"$(date)\" \\n %s %% -- \\\\\n\n\n";
        let files = [
            file(&format!("{root}/cmd/abc/env"), ""),
            file(&format!("{root}/cmd/abc/output"), ""),
            file(&format!("{root}/event.json"), "{\"a\": \"--\"}"),
            file(&format!("{root}/script.sh"), tricky),
        ];
        let step = argv(&["sh", "-e", &format!("{root}/script.sh")]);
        let mut wrapped = wrap(&step, &files, None).expect("a shell step takes its files along");
        // The step itself: print what it finds, proving the files existed before it ran.
        let check =
            format!("cat {root}/event.json; ls {root}/cmd/abc | tr '\\n' ' '; echo \"args: $*\"");
        let last = wrapped.len() - 3;
        wrapped.truncate(last);
        wrapped.extend(argv(&["sh", "-c", &check, "step", "one", "two words"]));
        let output = Command::new(&wrapped[0])
            .args(&wrapped[1..])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "{\"a\": \"--\"}env output args: one two words\n"
        );
        assert_eq!(
            std::fs::read_to_string(format!("{root}/script.sh")).unwrap(),
            tricky
        );
        assert_eq!(std::fs::read(format!("{root}/cmd/abc/env")).unwrap(), b"");
    }

    #[test]
    fn one_stream_sends_stderr_into_stdout_and_keeps_arguments_status_and_every_variable() {
        // bash, unlike the wrapping sh, passes the variables on to `env` as it got them.
        let step = argv(&[
            "bash",
            "-c",
            "echo out; echo err >&2; echo \"$1\"; env; exit 3",
            "x",
            "a b",
        ]);
        let env = vec![
            "PATH=/usr/bin:/bin".to_string(),
            "INPUT_RESTORE-KEYS=k1\nk2 \"$HOME\"".to_string(),
            "INPUT_FETCH-DEPTH=".to_string(),
        ];
        let (wrapped, env) = one_stream(step, env);
        let output = Command::new(&wrapped[0])
            .args(&wrapped[1..])
            .env_clear()
            .envs(env.iter().map(|entry| entry.split_once('=').unwrap()))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(3));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with("out\nerr\na b\n"), "{stdout}");
        assert!(
            stdout.contains("INPUT_RESTORE-KEYS=k1\nk2 \"$HOME\"\n"),
            "{stdout}"
        );
        assert!(stdout.contains("INPUT_FETCH-DEPTH=\n"), "{stdout}");
        assert!(!stdout.contains("ACT_RUNNER_"), "{stdout}");
        assert!(output.stderr.is_empty());
    }

    #[test]
    fn a_file_that_cannot_be_written_fails_with_125_before_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let files = [file(&format!("{}/below/x", blocker.display()), "x")];
        let wrapped = wrap(&argv(&["sh", "-c", "echo ran"]), &files, None).unwrap();
        let output = Command::new(&wrapped[0])
            .args(&wrapped[1..])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(125));
        assert!(output.stdout.is_empty());
    }

    #[test]
    fn missing_directories_take_one_mkdir_and_existing_ones_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        // A `mkdir` first on the PATH that logs each call before doing the work.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = dir.path().join("mkdir.log");
        let fake = format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec /bin/mkdir \"$@\"\n",
            log.display()
        );
        std::fs::write(bin.join("mkdir"), fake).unwrap();
        std::fs::set_permissions(
            bin.join("mkdir"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let files = [
            file(&format!("{root}/cmd/it's new/env"), "e"),
            file(&format!("{root}/cmd/it's new/output"), "o"),
            file(&format!("{root}/work flow/event.json"), "{}"),
            file(&format!("{root}/script.sh"), "s"),
        ];
        let run = || {
            let wrapped = wrap(&argv(&["sh", "-c", "true"]), &files, None).unwrap();
            for _ in 0..5 {
                let output = Command::new(&wrapped[0])
                    .args(&wrapped[1..])
                    .env("PATH", &path)
                    .output()
                    .unwrap();
                // A child another test thread is forking can hold the fresh script open for a
                // moment (ETXTBSY); then nothing ran, and trying again is clean.
                if String::from_utf8_lossy(&output.stderr).contains("Text file busy") {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                }
                assert!(output.status.success(), "{output:?}");
                return std::fs::read_to_string(&log).unwrap_or_default();
            }
            panic!("the logging mkdir stayed busy");
        };
        let calls = run();
        assert_eq!(calls.lines().count(), 1, "{calls}");
        assert_eq!(
            std::fs::read_to_string(format!("{root}/cmd/it's new/output")).unwrap(),
            "o"
        );
        assert_eq!(
            std::fs::read_to_string(format!("{root}/work flow/event.json")).unwrap(),
            "{}"
        );
        assert_eq!(run(), calls, "directories that exist need no mkdir");
    }

    #[test]
    fn other_programs_and_large_or_binary_files_go_by_archive() {
        let small = [file("/tmp/s", "echo")];
        assert!(wrap(&argv(&["bash", "-e", "/tmp/s"]), &small, None).is_some());
        assert!(wrap(&argv(&["pwsh", "-command", ". '/tmp/s'"]), &small, None).is_none());
        assert!(wrap(&argv(&["node", "/tmp/s"]), &small, None).is_none());
        assert!(wrap(&argv(&["sh", "-e", "/tmp/s"]), &[], None).is_none());
        let large = [file("/tmp/s", &"x".repeat(MAX_FILE_BYTES + 1))];
        assert!(wrap(&argv(&["sh", "/tmp/s"]), &large, None).is_none());
        let many: Vec<NewFile> = (0..4)
            .map(|n| file(&format!("/tmp/{n}"), &"x".repeat(MAX_FILE_BYTES)))
            .collect();
        assert!(wrap(&argv(&["sh", "/tmp/0"]), &many, None).is_none());
        let binary = [NewFile {
            path: "/tmp/b".into(),
            contents: vec![0xff, 0x00],
            mode: 0o644,
        }];
        assert!(wrap(&argv(&["sh", "/tmp/b"]), &binary, None).is_none());
        assert!(wrap(&argv(&["sh", "x"]), &[file("relative", "x")], None).is_none());
    }
    /// Runs `step` wrapped with a report on the command directory `dir`: the exit status, stdout,
    /// and stderr as lines split like the docker backend's.
    fn run_reporting(dir: &std::path::Path, step: &str) -> (Option<i32>, String, LineBatch) {
        let dir = dir.to_str().unwrap();
        let files = [
            file(&format!("{dir}/set_env"), ""),
            file(&format!("{dir}/set_output"), ""),
        ];
        let report = Report {
            marker: MARKER,
            command_dir: dir,
        };
        let wrapped = wrap(&argv(&["sh", "-c", step]), &files, Some(report)).unwrap();
        let output = Command::new(&wrapped[0])
            .args(&wrapped[1..])
            .output()
            .unwrap();
        let mut splitter = crate::executor::backend::docker::lines::LineSplitter::default();
        let mut stderr = splitter.push(&output.stderr);
        if let Some(tail) = splitter.finish() {
            stderr.push(&tail);
        }
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), stdout, stderr)
    }

    const MARKER: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_report_carries_the_steps_status_and_whether_it_wrote_command_files() {
        let dir = tempfile::tempdir().unwrap();
        let (code, stdout, stderr) = run_reporting(dir.path(), "echo out; echo err >&2; exit 3");
        assert_eq!(code, Some(3), "the exec still ends with the step's status");
        assert_eq!(stdout, "out\nerr\n");
        let (kept, reported) = take_report(stderr, MARKER);
        assert!(kept.is_empty(), "{kept:?}");
        let reported = reported.expect("a report on stderr");
        assert_eq!(reported.status, 3);
        assert!(!reported.command_files_written);

        let dir = tempfile::tempdir().unwrap();
        let step = format!("echo name=value >> {}/set_output", dir.path().display());
        let (code, _, stderr) = run_reporting(dir.path(), &step);
        assert_eq!(code, Some(0));
        let (kept, reported) = take_report(stderr, MARKER);
        assert!(kept.is_empty());
        assert_eq!(
            reported,
            Some(Reported {
                status: 0,
                command_files_written: true
            })
        );
    }

    #[test]
    fn anything_else_in_the_command_directory_counts_as_written() {
        for step in [
            "mkdir \"$D/sub\"",
            "echo x > \"$D/.hidden\"",
            "echo x > \"$D/other\"",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let step = step.replace("$D", dir.path().to_str().unwrap());
            let (_, _, stderr) = run_reporting(dir.path(), &step);
            let (_, reported) = take_report(stderr, MARKER);
            assert!(reported.unwrap().command_files_written, "{step}");
        }
    }

    #[test]
    fn a_step_killed_by_a_signal_reports_the_status_docker_gives_it() {
        let dir = tempfile::tempdir().unwrap();
        let (code, _, stderr) = run_reporting(dir.path(), "kill -9 $$");
        assert_eq!(code, Some(128 + 9));
        let (_, reported) = take_report(stderr, MARKER);
        assert_eq!(reported.unwrap().status, 128 + 9);
    }

    #[test]
    fn the_steps_stderr_joins_its_stdout_in_the_order_written() {
        let dir = tempfile::tempdir().unwrap();
        let step = "echo ::add-mask::x; echo first >&2; echo second; printf 'no newline' >&2";
        let (_, stdout, stderr) = run_reporting(dir.path(), step);
        assert_eq!(stdout, "::add-mask::x\nfirst\nsecond\nno newline");
        let (kept, reported) = take_report(stderr, MARKER);
        assert!(kept.is_empty(), "{kept:?}");
        assert_eq!(reported.unwrap().status, 0);
        // Without a report, too.
        let files = [file(&format!("{}/f", dir.path().display()), "")];
        let wrapped = wrap(&argv(&["sh", "-c", "echo a >&2; echo b"]), &files, None).unwrap();
        let output = Command::new(&wrapped[0])
            .args(&wrapped[1..])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "a\nb\n");
        assert!(output.stderr.is_empty());
    }

    #[test]
    fn lines_without_a_well_formed_report_stay_in_the_log() {
        let batch: LineBatch = ["plain", "mentions the marker"].into_iter().collect();
        let (kept, reported) = take_report(batch.clone(), MARKER);
        assert_eq!((kept, reported), (batch, None));

        let lines = [
            format!("{MARKER} 1"),
            format!("{MARKER} x 0"),
            format!("{MARKER} 0 2"),
            format!("{MARKER} 0 0 trailing"),
            format!("echo {MARKER}"),
        ];
        let batch: LineBatch = lines.iter().map(String::as_str).collect();
        let (kept, reported) = take_report(batch.clone(), MARKER);
        assert_eq!((kept, reported), (batch, None));
    }
}
