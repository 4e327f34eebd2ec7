//! Host jobs in cgroups of their own: the daemon's set-up of `systemd::job_cgroups` as the
//! executor's [`JobCgroupTree`], and the hidden `act_runner __job-cgroup DIR -- PROGRAM ARGS...`
//! that the host backend starts each command through. It moves itself into the cgroup `DIR`, then
//! execs `PROGRAM`, so the program runs inside from its first instruction, without `pre_exec`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::executor::backend::job_processes::{JobCgroupTree, ProcessScope};
use crate::systemd::job_cgroups::{self, JobCgroups};

/// The hidden command's name.
pub const COMMAND: &str = "__job-cgroup";
/// The daemon's own executable, whatever became of the file it was started from (an upgrade
/// replaces it while jobs run): `/proc/self/exe` in the child before it execs is the daemon's.
const OWN_EXECUTABLE: &str = "/proc/self/exe";

/// `act_runner __job-cgroup DIR -- PROGRAM ARGS...`.
#[derive(Debug, clap::Args)]
pub struct JobCgroupArgs {
    /// The cgroup directory to run PROGRAM in.
    pub cgroup: PathBuf,
    /// PROGRAM and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<OsString>,
}

/// Enters the cgroup and execs the program; returns only when either fails (126, or 127 for a
/// program that does not exist, as shells do), with the reason on stderr, which is the step's.
pub fn run(args: JobCgroupArgs) -> ExitCode {
    let Some((program, rest)) = args.argv.split_first() else {
        return ExitCode::from(2);
    };
    if let Err(error) = job_cgroups::enter(&args.cgroup) {
        eprintln!(
            "act_runner: cannot enter the job's cgroup {}: {error}",
            args.cgroup.display()
        );
        return ExitCode::from(126);
    }
    let error = std::process::Command::new(program).args(rest).exec();
    eprintln!(
        "act_runner: cannot run `{}`: {error}",
        Path::new(program).display()
    );
    ExitCode::from(if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// The daemon's host job scope: the mark of its runner file, and the job cgroups where systemd
/// delegated the service's cgroup. Holding the runner's lock (`lock_held`), no other daemon of
/// the runner is alive: what carries the mark, and the job cgroups under `jobs/`, a dead one's
/// jobs left, and they are killed.
pub fn host_scope(runner_file: &Path, lock_held: bool) -> ProcessScope {
    let scope = ProcessScope::for_runner_file(runner_file);
    if lock_held {
        scope.kill_leftovers();
    }
    match set_up(lock_held) {
        Some(cgroups) => scope.with_cgroups(cgroups),
        None => scope,
    }
}

/// The job cgroups, or one info line saying why not.
fn set_up(remove_stale: bool) -> Option<Arc<dyn JobCgroupTree>> {
    match JobCgroups::set_up() {
        Ok(cgroups) => {
            if remove_stale {
                cgroups.remove_stale();
            }
            tracing::info!(
                memory_accounted = cgroups.accounts_memory(),
                "each host job runs in a cgroup of its own"
            );
            Some(Arc::new(DaemonCgroups(cgroups)))
        }
        Err(reason) => {
            tracing::info!(
                reason = %reason,
                "host jobs run without cgroups of their own; their processes are found by their mark"
            );
            None
        }
    }
}

#[derive(Debug)]
struct DaemonCgroups(JobCgroups);

impl JobCgroupTree for DaemonCgroups {
    fn create(&self, job: &str) -> std::io::Result<PathBuf> {
        self.0.create(job)
    }

    fn launcher(&self, cgroup: &Path) -> Vec<OsString> {
        launcher(cgroup)
    }

    fn finish(&self, job: &str) {
        self.0.finish(job);
    }
}

fn launcher(cgroup: &Path) -> Vec<OsString> {
    vec![
        OWN_EXECUTABLE.into(),
        COMMAND.into(),
        cgroup.as_os_str().to_owned(),
        "--".into(),
    ]
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn the_launcher_parses_back_into_the_hidden_command_with_the_program_untouched() {
        let mut argv = launcher(Path::new("/sys/fs/cgroup/a.service/jobs/00ff"));
        let program = ["sh", "-c", "echo --help \"$@\"", "--", "-c"].map(OsString::from);
        argv.extend(program.clone());
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::JobCgroup(args) = cli.command else {
            panic!("not the hidden command: {:?}", cli.command);
        };
        assert_eq!(args.cgroup, Path::new("/sys/fs/cgroup/a.service/jobs/00ff"));
        assert_eq!(args.argv, program);
    }

    #[test]
    fn the_hidden_command_is_not_in_the_help() {
        use clap::CommandFactory;
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains(COMMAND), "{help}");
    }
}
