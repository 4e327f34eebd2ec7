//! The command line: one file per command. The only room that uses `anyhow` and maps errors to exit codes.

/// Parses the command line, runs the command and turns its outcome into the process exit code.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(1)
}
