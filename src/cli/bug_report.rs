//! `act_runner bug-report`: what an issue needs to know about this runner and its machine, in
//! upstream's shape, to paste as it is.

use std::process::ExitCode;

/// Flags of `bug-report` (none).
#[derive(Debug, clap::Args)]
pub struct BugReportArgs {}

/// Runs the command.
pub fn run(_args: BugReportArgs) -> anyhow::Result<ExitCode> {
    print!("{}", report());
    Ok(ExitCode::SUCCESS)
}

/// The report: version, OS/architecture as Go spells them (upstream's reports read alike) and
/// the CPUs this process may use.
fn report() -> String {
    let n_cpus = std::thread::available_parallelism().map_or(1, usize::from);
    format!(
        "Runner version: {}\nOS/Arch:        {}/{}\nNumCPU:         {n_cpus}\n",
        crate::VERSION,
        std::env::consts::OS,
        go_arch(std::env::consts::ARCH),
    )
}

/// Rust's architecture names as Go's `GOARCH`.
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_version_platform_and_cpus() {
        let text = report();
        assert!(
            text.starts_with(&format!("Runner version: {}\n", crate::VERSION)),
            "{text}"
        );
        assert!(text.contains("OS/Arch:        linux/"), "{text}");
        assert!(text.contains("NumCPU:         "), "{text}");
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }
}
