//! Job hooks (the daemon's `runner.hooks.*`, GitHub's `ACTIONS_RUNNER_HOOK_JOB_STARTED` /
//! `_COMPLETED`): an administrator's script run inside the job environment (the job container,
//! or the host), the started one before the first step (and before any action's pre stage), the
//! completed one after the last post stage. As on GitHub and upstream:
//! - `.sh` runs as `bash -e <path>`, `.ps1` as `pwsh -command ". '<path>'"`, anything else is
//!   executed directly; the path is one inside the job environment;
//! - it runs like a step (the job's env, `GITHUB_ENV`/`GITHUB_PATH` handed on to later steps,
//!   workflow commands such as `::add-mask::`, masking), its lines in the job's log inside a group;
//! - a failure fails the job; a started hook that fails runs no pre stage, and the steps see a
//!   failed job (only `always()` ones run);
//! - it is bounded by the job's deadline; after a cancellation or a timeout the completed hook
//!   still gets [`INTERRUPTED_GRACE`].

use std::time::Duration;

use indexmap::IndexMap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::Backend;
use super::event::Conclusion;
use super::job::JobRun;
use super::process::{StepCommand, execute};

/// How long the completed hook may run after the job was cancelled or timed out (the grace post
/// stages get too).
pub const INTERRUPTED_GRACE: Duration = Duration::from_secs(5 * 60);

/// The hooks a job runs; paths inside the job environment. `None` runs none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobHooks {
    pub started: Option<String>,
    pub completed: Option<String>,
}

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Started,
    Completed,
}

impl HookKind {
    fn name(self) -> &'static str {
        match self {
            HookKind::Started => "job started",
            HookKind::Completed => "job completed",
        }
    }
}

/// Runs the started hook, if any; `false` when it failed (the job then fails).
pub async fn run_started<B: Backend>(hooks: &JobHooks, job_run: &mut JobRun<'_, B>) -> bool {
    match &hooks.started {
        Some(path) => run_hook(job_run, HookKind::Started, path, None).await,
        None => true,
    }
}

/// Runs the completed hook, if any; `interrupted` when the job was cancelled or timed out, which
/// gives the hook a grace and a token of its own. `false` when it failed.
pub async fn run_completed<B: Backend>(
    hooks: &JobHooks,
    interrupted: bool,
    job_run: &mut JobRun<'_, B>,
) -> bool {
    let Some(path) = &hooks.completed else {
        return true;
    };
    let grace = interrupted.then(|| {
        job_run.state.deadline = Instant::now() + INTERRUPTED_GRACE;
        CancellationToken::new()
    });
    let timeout = interrupted.then_some(INTERRUPTED_GRACE);
    let token = grace.as_ref().unwrap_or(job_run.cancel);
    let kind = HookKind::Completed;
    run_hook(&mut job_run.with_cancel(token), kind, path, timeout).await
}

async fn run_hook<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    kind: HookKind,
    path: &str,
    timeout: Option<Duration>,
) -> bool {
    let (argv, shell) = hook_command(path);
    let emitter = &mut *job_run.emitter;
    emitter.log(None, &format!("::group::Run '{path}'")).await;
    emitter
        .log(
            None,
            &format!(
                "A {} hook has been configured by the runner administrator",
                kind.name()
            ),
        )
        .await;
    if let Some(shell) = shell {
        emitter.log(None, &format!("shell: {shell}")).await;
    }
    let command = StepCommand::process(argv, IndexMap::new(), timeout);
    let result = execute(job_run, None, command, IndexMap::new()).await;
    let emitter = &mut *job_run.emitter;
    let succeeded = match result {
        Ok(result) => result.outcome == Conclusion::Success,
        Err(message) => {
            emitter.log(None, &format!("::error::{message}")).await;
            false
        }
    };
    emitter.log(None, "::endgroup::").await;
    if !succeeded {
        let error = format!("::error::The {} hook '{path}' failed", kind.name());
        emitter.log(None, &error).await;
    }
    succeeded
}

/// The process of a hook and, when a shell runs it, how the log shows that shell. GitHub's rule:
/// no extra shell flags beyond `-e`, the hook sets its own.
fn hook_command(path: &str) -> (Vec<String>, Option<&'static str>) {
    let extension = path
        .rsplit_once('.')
        .filter(|(_, extension)| !extension.contains('/'))
        .map(|(_, extension)| extension.to_ascii_lowercase());
    match extension.as_deref() {
        Some("sh") => (
            vec!["bash".into(), "-e".into(), path.into()],
            Some("bash -e {0}"),
        ),
        Some("ps1") => (
            vec!["pwsh".into(), "-command".into(), format!(". '{path}'")],
            Some("pwsh -command \". '{0}'\""),
        ),
        _ => (vec![path.into()], None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_picks_the_interpreter() {
        let argv = |path: &str| hook_command(path).0;
        assert_eq!(argv("/hooks/start.sh"), ["bash", "-e", "/hooks/start.sh"]);
        assert_eq!(argv("/hooks/START.SH"), ["bash", "-e", "/hooks/START.SH"]);
        assert_eq!(
            argv("C:/hooks/start.ps1"),
            ["pwsh", "-command", ". 'C:/hooks/start.ps1'"]
        );
        assert_eq!(argv("/hooks/start"), ["/hooks/start"]);
        assert_eq!(argv("/hooks.sh/start"), ["/hooks.sh/start"]);
        assert_eq!(hook_command("/hooks/start").1, None);
    }
}
