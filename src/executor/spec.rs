//! The executor's input: `JobSpec` (a workflow, the job to run and its contexts) and what a
//! needed job produced (`NeedResult`); plus the checks and the matrix planning callers run before
//! `run_job` (`check_workflow`, `matrix_plan`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::contexts;
use super::event::Conclusion;
use super::hooks::JobHooks;
use super::local_tree::LocalTree;
use super::model::Workflow;
use super::scope::{self, Scope};

/// Everything needed to run one job. Build it from a Gitea task (daemon) or a local workflow (exec).
pub struct JobSpec {
    /// The workflow file's text; for Gitea, the single-job payload of the task.
    pub workflow_yaml: String,
    /// Name used in messages, e.g. `.gitea/workflows/ci.yml`.
    pub workflow_file: String,
    /// The id of the job to run (a key of `jobs:`).
    pub job_id: String,
    /// The `github` context (also visible as `gitea`); missing standard keys get local defaults.
    pub github: serde_json::Map<String, Json>,
    /// Runner-provided env (`runner.envs`, `--env`): overrides workflow and job env.
    pub env: IndexMap<String, String>,
    /// Runtime env the job must see but cannot override (`ACTIONS_RUNTIME_URL`, tokens, cache URL).
    pub extra_env: IndexMap<String, String>,
    pub vars: IndexMap<String, String>,
    /// Secret values are masked in every log line.
    pub secrets: IndexMap<String, String>,
    /// Inputs a caller supplies already typed (a reusable workflow's `with:`); they win over the
    /// event payload's `inputs`, which the executor types by the workflow's declarations.
    pub inputs: serde_json::Map<String, Json>,
    /// The matrix combination; `None` takes the workflow's matrix if it has exactly one combination
    /// (Gitea sends one-element arrays).
    pub matrix: Option<IndexMap<String, Json>>,
    /// With `matrix`: this leg's index and the number of legs (`strategy.job-index`, `job-total`).
    pub matrix_position: Option<(usize, usize)>,
    /// Results and outputs of the jobs this one needs.
    pub needs: IndexMap<String, NeedResult>,
    pub runner_name: String,
    /// Upper bound on the job's run time (runner config); the job's `timeout-minutes` may be lower.
    pub timeout_cap: Option<Duration>,
    /// More values to mask (the task token, the runtime token).
    pub masks: Vec<String>,
    /// Where remote actions come from and where they are kept.
    pub actions: ActionSettings,
    /// Mask `secrets` (and the token) in the log; `exec --insecure-secrets` turns it off.
    /// `::add-mask::` values are masked either way.
    pub mask_secrets: bool,
    /// Before `JobFinished` (and so before removing its containers), the job waits at most
    /// this long for its log to be delivered (see
    /// [`event::LogCheckpoint`](super::event::LogCheckpoint)); `None`: no wait.
    pub log_delivery_wait: Option<Duration>,
    /// Give steps `ACT=true`, as act does (`runner.set_act_env`, default true).
    pub act_env: bool,
    /// `exec`'s working tree, copied into the workspace before the first step; `None` (the
    /// daemon) copies nothing.
    pub local_tree: Option<LocalTree>,
    /// Where the steps' summaries go once the steps are done; `None`: they are dropped.
    pub summary_outlet: Option<super::summary::SummaryOutlet>,
    /// The administrator's job hooks (the daemon's `runner.hooks`); `exec` runs none.
    pub hooks: JobHooks,
}

/// How remote actions (`uses: owner/repo@ref`) are fetched and docker actions built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSettings {
    /// Base URL of `owner/repo@ref` (`exec --default-actions-url`; the daemon: the task's
    /// `gitea_default_actions_url`, after `runner.github_mirror`). Any URL `git` fetches from.
    pub default_url: String,
    /// Host directory holding one checkout per `sha256(uses)`.
    pub cache_dir: PathBuf,
    /// Fetch at depth 1 (`runner.action_shallow_clone`, default true).
    pub shallow: bool,
    /// Use a cached checkout without fetching (`cache.offline_mode`).
    pub offline: bool,
    /// Rebuild docker actions' images even when present (`--rebuild`, `container.force_rebuild`).
    pub force_rebuild: bool,
    /// Base URL of reusable workflows named `owner/repo/path@ref`, and of the job's own repository
    /// when `repository_dir` is `None` (the daemon: the instance; `exec`: `--default-actions-url`).
    pub workflows_url: String,
    /// The checkout `./path` reusable workflows are read from (`exec`: `-C`); `None` fetches the
    /// job's repository (`github.repository` at `github.sha`) from `workflows_url`.
    pub repository_dir: Option<PathBuf>,
    /// The one git server the job's token is for (the daemon: the task's own instance); `None`
    /// fetches everything anonymously.
    pub trusted_server: Option<TrustedGitServer>,
    /// Run remote node actions from a copy whose bundled toolkit takes this instance for
    /// github.com (`runner.patch_actions`; see `action::patch`).
    pub patch_actions: bool,
}

/// A git server fetched from with the job's token and TLS policy. Only URLs under one of
/// `base_urls` (same scheme, host and port, path below) get either; `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedGitServer {
    /// The server's base URLs (`https://gitea.example/`, or with a sub-path).
    pub base_urls: Vec<String>,
    /// Sent as HTTP basic authentication (`x-access-token:<token>`); empty sends none.
    pub token: String,
    /// Skip TLS certificate verification toward the server (`runner.insecure`).
    pub insecure: bool,
}

impl fmt::Debug for TrustedGitServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedGitServer")
            .field("base_urls", &self.base_urls)
            .field("has_token", &!self.token.is_empty())
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl ActionSettings {
    /// GitHub as the default URL, the cache under `$XDG_CACHE_HOME/act` (else `~/.cache/act`), as
    /// upstream's `exec` does.
    pub fn local_default() -> ActionSettings {
        let cache_root = std::env::var_os("XDG_CACHE_HOME")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|value| !value.is_empty())
                    .map(|home| PathBuf::from(home).join(".cache"))
            })
            .unwrap_or_else(std::env::temp_dir);
        ActionSettings {
            default_url: String::from(DEFAULT_ACTIONS_URL),
            cache_dir: cache_root.join("act"),
            shallow: true,
            offline: false,
            force_rebuild: false,
            workflows_url: String::from(DEFAULT_ACTIONS_URL),
            repository_dir: None,
            trusted_server: None,
            patch_actions: false,
        }
    }
}

/// Upstream's default for `owner/repo@ref`.
pub const DEFAULT_ACTIONS_URL: &str = "https://github.com";

// Hand-written: the spec holds secrets, tokens and the github context (with its token).
impl fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSpec")
            .field("workflow_file", &self.workflow_file)
            .field("job_id", &self.job_id)
            .field("runner_name", &self.runner_name)
            .field("n_secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl JobSpec {
    /// A spec with empty contexts, for local runs and tests; fill in what you have.
    pub fn new(workflow_yaml: String, workflow_file: String, job_id: String) -> JobSpec {
        JobSpec {
            workflow_yaml,
            workflow_file,
            job_id,
            github: serde_json::Map::new(),
            env: IndexMap::new(),
            extra_env: IndexMap::new(),
            vars: IndexMap::new(),
            secrets: IndexMap::new(),
            inputs: serde_json::Map::new(),
            matrix: None,
            matrix_position: None,
            needs: IndexMap::new(),
            runner_name: String::from("act-runner"),
            timeout_cap: None,
            masks: Vec::new(),
            actions: ActionSettings::local_default(),
            mask_secrets: true,
            log_delivery_wait: None,
            act_env: true,
            local_tree: None,
            summary_outlet: None,
            hooks: JobHooks::default(),
        }
    }

    /// A spec for another job run under the same settings: the same contexts (`github`, env,
    /// vars, secrets, inputs), runner name, masks, action settings, timeout cap, `ACT` variable
    /// and hooks. What belongs to one job alone starts empty: needs, matrix, the working tree,
    /// the log delivery wait and the summary outlet.
    pub fn another_job(
        &self,
        workflow_yaml: String,
        workflow_file: String,
        job_id: String,
    ) -> JobSpec {
        let mut spec = JobSpec::new(workflow_yaml, workflow_file, job_id);
        spec.github = self.github.clone();
        spec.env = self.env.clone();
        spec.extra_env = self.extra_env.clone();
        spec.vars = self.vars.clone();
        spec.secrets = self.secrets.clone();
        spec.inputs = self.inputs.clone();
        spec.runner_name = self.runner_name.clone();
        spec.timeout_cap = self.timeout_cap;
        spec.masks = self.masks.clone();
        spec.actions = self.actions.clone();
        spec.mask_secrets = self.mask_secrets;
        spec.act_env = self.act_env;
        spec.hooks = self.hooks.clone();
        spec
    }
}

/// What a needed job produced.
#[derive(Debug, Clone, PartialEq)]
pub struct NeedResult {
    pub result: Conclusion,
    pub outputs: IndexMap<String, String>,
}

/// `success`, `failure`, `cancelled`, `skipped`: the words the contexts and Gitea use.
pub fn conclusion_name(conclusion: Conclusion) -> &'static str {
    match conclusion {
        Conclusion::Success => "success",
        Conclusion::Failure => "failure",
        Conclusion::Cancelled => "cancelled",
        Conclusion::Skipped => "skipped",
    }
}

/// `✅ Success`, `❌ Failure`, ...: a step's result where a log line shows it.
pub fn conclusion_mark(conclusion: Conclusion) -> &'static str {
    match conclusion {
        Conclusion::Success => "✅ Success",
        Conclusion::Failure => "❌ Failure",
        Conclusion::Cancelled => "🚫 Cancelled",
        Conclusion::Skipped => "⏭ Skipped",
    }
}

/// How `exec` runs the legs of one job's matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixPlan {
    pub combinations: Vec<IndexMap<String, Json>>,
    /// `strategy.fail-fast` (default true): a failing leg cancels the others.
    pub fail_fast: bool,
    /// `strategy.max-parallel`; `None` when the workflow does not limit it.
    pub max_parallel: Option<usize>,
}

/// The matrix combinations and strategy of the spec's job, evaluated with the spec's contexts (its
/// `needs` outputs, vars, inputs): what `exec` runs one `run_job` per. Errors name the file position.
pub fn matrix_plan(spec: &JobSpec) -> Result<MatrixPlan, String> {
    let workflow = Workflow::parse(&spec.workflow_yaml)
        .map_err(|error| format!("{}:{error}", spec.workflow_file))?;
    let job = workflow
        .jobs
        .get(&spec.job_id)
        .ok_or_else(|| format!("{}: there is no job `{}`", spec.workflow_file, spec.job_id))?;
    let paths = super::backend::EnvironmentPaths {
        workspace: std::path::PathBuf::new(),
        temp: std::path::PathBuf::new(),
        tool_cache: std::path::PathBuf::new(),
    };
    let mut scope = Scope::new(&spec.workflow_file);
    contexts::fill_static(spec, &workflow, job, &paths, &mut scope);
    let combinations = contexts::expand_matrix(job, &scope).map_err(|error| error.0)?;
    let (fail_fast, max_parallel) =
        contexts::strategy_limits(job, &scope).map_err(|error| error.0)?;
    Ok(MatrixPlan {
        combinations,
        fail_fast,
        max_parallel,
    })
}

/// Parses a workflow and checks that every expression of every job parses: what `exec` does before
/// planning, and what the workflow fuzz target drives. Errors are `file:line:column: message`.
pub fn check_workflow(source: &str, file: &str) -> Result<Workflow, String> {
    let workflow = Workflow::parse(source).map_err(|error| format!("{file}:{error}"))?;
    for job in workflow.jobs.values() {
        scope::validate(file, &workflow, job).map_err(|error| error.0)?;
    }
    Ok(workflow)
}
