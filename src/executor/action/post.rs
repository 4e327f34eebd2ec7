//! The `pre` and `post` stages of actions. `pre` (remote node actions' `pre`, docker actions'
//! `pre-entrypoint`) runs for every step before the first main step; `post` (node `post`, docker
//! `post-entrypoint`) is registered when a main step ran and runs after the last one, in reverse
//! order, with `post-if` (default `always()`; evaluated as written, with no implied `success()`),
//! the main step's `STATE_*`, and a grace period after cancellation. Their lines go to the
//! job-level log (Gitea keeps pre/post out of step logs); a failing pre or post step fails the job.

use std::time::Duration;

use indexmap::IndexMap;
use tokio_util::sync::CancellationToken;

use super::reference::ActionRef;
use super::{Call, docker, load, reference_of, state_variables};
use crate::executor::backend::Backend;
use crate::executor::contexts;
use crate::executor::event::Conclusion;
use crate::executor::expr::JobStatus;
use crate::executor::job::{Emitter, JobRun, JobState};
use crate::executor::model::action::Runs;
use crate::executor::model::{Job, Located, Pos, Step};
use crate::executor::step::{self, BodyResult, StepCommand, StepContainer};

/// How long post steps may still run after the job was cancelled or timed out (upstream: 5 min).
const POST_GRACE: Duration = Duration::from_secs(5 * 60);

/// What an action's post stage runs: a process in the job environment (a node action's `post`,
/// `container` `None`) or a step container (a docker action's `post-entrypoint`).
pub struct PostStage {
    /// `post-if`; `None` means `always()`.
    pub condition: Option<Located<String>>,
    pub argv: Vec<String>,
    pub container: Option<StepContainer>,
}

/// Runs an action's main stage (with what its pre stage saved) and then registers its post stage,
/// if `post` names one, with the main stage's env and `STATE_*`. `post` is asked only once the
/// main stage has run, so a post stage that cannot be built fails the step after its main stage.
pub async fn run_main_stage<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    call: Call,
    step: &Step,
    mut command: StepCommand,
    step_env: IndexMap<String, String>,
    post: impl FnOnce() -> Result<Option<PostStage>, String>,
) -> Result<BodyResult, String> {
    command
        .extra_env
        .extend(take_pre_state(job_run.state, call.step_idx));
    let mut extra_env = command.extra_env.clone();
    let result = step::execute(job_run, Some(call.step_idx), command, step_env.clone()).await?;
    if let Some(post) = post()? {
        extra_env.extend(state_variables(&result.state));
        job_run.state.actions.post_steps.push(PostStep::new(
            step,
            post.condition,
            post.argv,
            post.container,
            step_env,
            extra_env,
        ));
    }
    Ok(result)
}

/// A registered post step.
pub struct PostStep {
    /// `Post <step name>`.
    title: String,
    /// `post-if`; `None` means `always()`.
    condition: Option<Located<String>>,
    argv: Vec<String>,
    container: Option<StepContainer>,
    step_env: IndexMap<String, String>,
    /// `INPUT_*`, `GITHUB_ACTION_*`, `STATE_*`.
    extra_env: IndexMap<String, String>,
}

impl PostStep {
    /// A post step: a process in the job environment (a node action's `post`, `container` `None`)
    /// or a step container (a docker action's `post-entrypoint`).
    pub fn new(
        step: &Step,
        condition: Option<Located<String>>,
        argv: Vec<String>,
        container: Option<StepContainer>,
        step_env: IndexMap<String, String>,
        extra_env: IndexMap<String, String>,
    ) -> PostStep {
        PostStep {
            title: format!("Post {}", step.display_name()),
            condition,
            argv,
            container,
            step_env,
            extra_env,
        }
    }
}

/// Which stage a condition belongs to: a `pre-if` implies `success()` unless it calls a status
/// function, a `post-if` is evaluated as written.
#[derive(Clone, Copy)]
enum Stage {
    Pre,
    Post,
}

/// `pre-if` or `post-if` (absent: `always()`); `None` when it cannot be evaluated (logged).
async fn stage_condition(
    state: &JobState,
    emitter: &Emitter,
    condition: Option<Located<String>>,
    stage: Stage,
) -> Option<bool> {
    let condition = condition.unwrap_or_else(|| Located {
        value: String::from("always()"),
        at: Pos::default(),
    });
    let holds = match stage {
        Stage::Pre => state.scope.condition(Some(&condition), "pre-if"),
        Stage::Post => state.scope.post_condition(&condition, "post-if"),
    };
    match holds {
        Ok(holds) => Some(holds),
        Err(error) => {
            emitter.log(None, &format!("::error::{}", error.0)).await;
            None
        }
    }
}

/// Runs the `pre` of every step that has one (remote node actions, docker actions with a
/// `pre-entrypoint`); returns false when one failed. A step whose action cannot be loaded here is
/// left to its main stage, which reports why.
pub async fn run_pre_steps<B: Backend>(job: &Job, job_run: &mut JobRun<'_, B>) -> bool {
    let mut all_succeeded = true;
    for (step_idx, step) in job.steps.iter().enumerate() {
        let state = &mut *job_run.state;
        if step.uses.is_none() || state.cancelled || state.timed_out {
            continue;
        }
        contexts::set_env_context(state, &IndexMap::new());
        let Ok((uses, reference)) = reference_of(step, state) else {
            continue;
        };
        if !matches!(reference, ActionRef::Remote(_)) {
            continue; // Local actions have no pre stage (upstream reads them at main time).
        }
        if matches!(
            super::local_checkout(job_run.backend, step, &uses, state),
            Ok(Some(_))
        ) {
            continue; // `exec` copies its tree instead of running this checkout.
        }
        let loaded = match load(job_run, step, &uses, &reference).await {
            Ok(loaded) => loaded,
            Err(_) => continue,
        };
        let state = &mut *job_run.state;
        let emitter = &mut *job_run.emitter;
        let Ok((step_env, _, _)) = step::prepare_step(step, &IndexMap::new(), state) else {
            continue;
        };
        let (condition, title) = match &loaded.action.runs {
            Runs::Node {
                pre: Some(_),
                pre_if,
                ..
            } => (pre_if.clone(), format!("Pre {}", step.display_name())),
            Runs::Docker(runs) if runs.pre_entrypoint.is_some() => {
                (runs.pre_if.clone(), format!("Pre {}", step.display_name()))
            }
            _ => continue,
        };
        match stage_condition(state, emitter, condition, Stage::Pre).await {
            Some(true) => {}
            Some(false) => continue,
            None => {
                all_succeeded = false;
                continue;
            }
        }
        emitter.log(None, &title).await;
        let result = match &loaded.action.runs {
            Runs::Node { pre: Some(pre), .. } => {
                let command = StepCommand::process(
                    vec!["node".into(), format!("{}/{pre}", loaded.dir)],
                    loaded.env(),
                    None,
                );
                step::execute(job_run, None, command, step_env).await
            }
            Runs::Docker(runs) => {
                let call = Call { step_idx, depth: 0 };
                docker::run_pre(job_run, call, &loaded, runs, step_env).await
            }
            _ => continue,
        };
        match succeeded(job_run.emitter, result).await {
            Some(saved) => {
                job_run.state.actions.pre_states.insert(step_idx, saved);
            }
            None => all_succeeded = false,
        }
    }
    all_succeeded
}

/// What a pre or post stage saved when it succeeded; `None` when it failed (logged when it
/// could not run).
async fn succeeded(
    emitter: &Emitter,
    result: Result<BodyResult, String>,
) -> Option<IndexMap<String, String>> {
    match result {
        Ok(result) if result.outcome == Conclusion::Success => Some(result.state),
        Ok(_) => None,
        Err(message) => {
            emitter.log(None, &format!("::error::{message}")).await;
            None
        }
    }
}

/// Runs the registered post steps in reverse order; returns false when one failed.
pub async fn run_post_steps<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    job_status: JobStatus,
) -> bool {
    let state = &mut *job_run.state;
    let posts = std::mem::take(&mut state.actions.post_steps);
    if posts.is_empty() {
        return true;
    }
    // After a cancellation or a timeout the post steps still get their grace period.
    let interrupted = state.cancelled || state.timed_out;
    let post_cancel = if interrupted {
        CancellationToken::new()
    } else {
        job_run.cancel.clone()
    };
    if interrupted {
        state.deadline = tokio::time::Instant::now() + POST_GRACE;
        state.timed_out = false;
    }
    let mut all_succeeded = true;
    for post in posts.into_iter().rev() {
        let state = &mut *job_run.state;
        let emitter = &mut *job_run.emitter;
        state.scope.status = job_status;
        contexts::set_step_env_context(state, &post.step_env);
        match stage_condition(state, emitter, post.condition.clone(), Stage::Post).await {
            Some(true) => {}
            Some(false) => continue,
            None => {
                all_succeeded = false;
                continue;
            }
        }
        emitter.log(None, &post.title).await;
        let command = StepCommand {
            container: post.container,
            ..StepCommand::process(post.argv, post.extra_env, interrupted.then_some(POST_GRACE))
        };
        let mut post_run = job_run.with_cancel(&post_cancel);
        let result = step::execute(&mut post_run, None, command, post.step_env).await;
        if succeeded(job_run.emitter, result).await.is_none() {
            all_succeeded = false;
        }
    }
    all_succeeded
}

/// `STATE_*` of a pre stage, for the main stage of the same step.
pub fn take_pre_state(state: &mut JobState, step_idx: usize) -> IndexMap<String, String> {
    state
        .actions
        .pre_states
        .remove(&step_idx)
        .map(|saved| state_variables(&saved))
        .unwrap_or_default()
}
