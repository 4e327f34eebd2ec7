//! The small files a shell step needs (its script, fresh file-command files, the event payload),
//! written by `sh` at the start of the step's own exec instead of by an archive upload.
//!
//! Why: an upload is a Docker call of its own before every step, and on a copy-on-write storage
//! driver it costs about as much as the exec itself (about 90 ms with fuse-overlayfs on the test
//! machine); carried on the exec's command line the files cost nothing measurable. Only steps whose
//! program is `sh` or `bash` take this path: their image has a shell, which the cancellation kill
//! (`sh` scanning `/proc`) assumes already. Anything else, or files too large for a command line
//! (Linux caps one argument at 128 KiB), goes by archive as before.
//!
//! The files are created by the user the step runs as, so they get that user's default mode
//! (umask), not `NewFile::mode`: the step can write its own file-command files either way, and the
//! script is run through its interpreter, never executed directly.

use crate::executor::backend::NewFile;

/// One file's contents on the command line at most (below the kernel's 128 KiB per argument).
const MAX_FILE_BYTES: usize = 96 * 1024;
/// All files together (the command line and the environment share about 2 MiB).
const MAX_TOTAL_BYTES: usize = 256 * 1024;

/// Writes each `path contents` pair up to `--`, creating missing directories, then runs the rest.
/// Exit status 125 (with the shell's own message) when a file cannot be written.
const WRITER: &str = r#"while [ "$1" != -- ]; do d=${1%/*}; [ -z "$d" ] || [ -d "$d" ] || mkdir -p "$d" || exit 125; printf %s "$2" > "$1" || exit 125; shift 2; done; shift; exec "$@""#;

/// The command that writes `files` and then runs `argv`, or `None` when they must be uploaded.
/// `files` have absolute paths.
pub fn wrap(argv: &[String], files: &[NewFile]) -> Option<Vec<String>> {
    let program = argv.first()?;
    if files.is_empty() || !matches!(program.as_str(), "sh" | "bash") {
        return None;
    }
    let mut total = 0;
    let mut wrapped = vec!["sh".to_string(), "-c".to_string(), WRITER.to_string()];
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
    wrapped.extend(argv.iter().cloned());
    Some(wrapped)
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
        let mut wrapped = wrap(&step, &files).expect("a shell step takes its files along");
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
    fn a_file_that_cannot_be_written_fails_with_125_before_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let files = [file(&format!("{}/below/x", blocker.display()), "x")];
        let wrapped = wrap(&argv(&["sh", "-c", "echo ran"]), &files).unwrap();
        let output = Command::new(&wrapped[0])
            .args(&wrapped[1..])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(125));
        assert!(output.stdout.is_empty());
    }

    #[test]
    fn other_programs_and_large_or_binary_files_go_by_archive() {
        let small = [file("/tmp/s", "echo")];
        assert!(wrap(&argv(&["bash", "-e", "/tmp/s"]), &small).is_some());
        assert!(wrap(&argv(&["pwsh", "-command", ". '/tmp/s'"]), &small).is_none());
        assert!(wrap(&argv(&["node", "/tmp/s"]), &small).is_none());
        assert!(wrap(&argv(&["sh", "-e", "/tmp/s"]), &[]).is_none());
        let large = [file("/tmp/s", &"x".repeat(MAX_FILE_BYTES + 1))];
        assert!(wrap(&argv(&["sh", "/tmp/s"]), &large).is_none());
        let many: Vec<NewFile> = (0..4)
            .map(|n| file(&format!("/tmp/{n}"), &"x".repeat(MAX_FILE_BYTES)))
            .collect();
        assert!(wrap(&argv(&["sh", "/tmp/0"]), &many).is_none());
        let binary = [NewFile {
            path: "/tmp/b".into(),
            contents: vec![0xff, 0x00],
            mode: 0o644,
        }];
        assert!(wrap(&argv(&["sh", "/tmp/b"]), &binary).is_none());
        assert!(wrap(&argv(&["sh", "x"]), &[file("relative", "x")]).is_none());
    }
}
