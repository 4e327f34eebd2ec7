//! Actions: what a `uses:` step runs.
//!
//! - `./path`: `action.yml` is read from the workspace through the backend;
//! - `owner/repo[/path]@ref` (or `https://host/owner/repo[/path]@ref`): fetched with `git` into the
//!   action cache on the host ([`fetch`]) and made visible to the job (docker copies it to
//!   `/var/run/act/actions/<name>/`; the host backend runs it from the cache);
//! - `docker://image` and `runs.using: docker`: a step container next to the job ([`docker`]).
//!
//! Inputs are evaluated with their defaults; a `node*` action runs as `node <main>` with `INPUT_*`
//! variables (its `pre` before the job's main steps for remote actions, its `post` after them, in
//! reverse order: [`post`]); a composite action runs its steps with their own `steps` and `inputs`
//! contexts ([`composite`]), nested up to GitHub's depth limit. The recursion is boxed so a job's
//! future stays `Send`.

mod composite;
mod docker;
mod fetch;
mod patch;
mod patched;
mod post;
mod reference;
mod trust;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use indexmap::IndexMap;

use super::ActionSettings;
use super::backend::{Backend, BuildContext};
use super::event::Conclusion;
use super::job::{JobRun, JobState};
use super::local_tree::{self, LocalTree};
use super::model::Step;
use super::model::action::{Action, Runs};
use super::step::{self, BodyResult, StepCommand};
use reference::{ActionRef, RemoteAction, safe_name};

pub(super) use fetch::fetch as fetch_repository;
pub use post::{PostStep, run_post_steps, run_pre_steps};
pub(super) use reference::{ActionRef as Reference, RemoteAction as RemoteRepository, redact_url};

/// GitHub's limit on nested composite actions (`CompositeActionsMaxDepth`).
const MAX_COMPOSITE_DEPTH: usize = 9;
/// Where remote actions are copied inside a job container.
const CONTAINER_ACTIONS_DIR: &str = "/var/run/act/actions";

/// What a job knows about its actions: where they come from, which it has fetched, and the pre
/// and post stages that carry over from one step to another.
pub struct JobActions {
    /// Where remote actions come from (the spec's settings).
    pub settings: ActionSettings,
    /// `uses` → (checkout root on the host, the same root as the job sees it), so a second use
    /// costs nothing.
    imported: HashMap<String, (PathBuf, String)>,
    /// `uses` → what its main step's log says once about `runner.patch_actions`.
    patch_notes: HashMap<String, String>,
    /// Post stages registered by main stages, run in reverse order after the last step.
    post_steps: Vec<PostStep>,
    /// What each step's pre stage saved (`STATE_*` of its main stage), by step index.
    pre_states: HashMap<usize, IndexMap<String, String>>,
}

impl JobActions {
    pub fn new(settings: ActionSettings) -> JobActions {
        JobActions {
            settings,
            imported: HashMap::new(),
            patch_notes: HashMap::new(),
            post_steps: Vec::new(),
            pre_states: HashMap::new(),
        }
    }
}

/// Which step an action runs for, and how deep in composite actions.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// The top-level step: its log lines carry this index.
    pub step_idx: usize,
    /// 0 for a job's step, 1 inside a composite action, ...
    pub depth: usize,
}

/// An action, located and loaded, with its inputs evaluated.
pub struct LoadedAction {
    /// `action.yml`'s path, for messages.
    file: String,
    /// `GITHUB_ACTION_PATH`: the action's directory as the job's processes see it.
    dir: String,
    /// Where a docker action's build context is.
    context: BuildContext,
    /// A name for images built from it.
    name: String,
    /// `GITHUB_ACTION_REPOSITORY` and `GITHUB_ACTION_REF` (empty for local actions).
    repository: String,
    git_ref: String,
    action: Action,
    inputs: IndexMap<String, String>,
    /// Required inputs neither given nor defaulted (warned about at the main stage).
    missing_inputs: Vec<String>,
}

impl LoadedAction {
    /// `INPUT_*`, `GITHUB_ACTION_PATH`, `GITHUB_ACTION_REPOSITORY`, `GITHUB_ACTION_REF`.
    fn env(&self) -> IndexMap<String, String> {
        let mut env: IndexMap<String, String> = self
            .inputs
            .iter()
            .map(|(name, value)| (input_variable(name), value.clone()))
            .collect();
        env.insert("GITHUB_ACTION_PATH".into(), self.dir.clone());
        env.insert("GITHUB_ACTION_REPOSITORY".into(), self.repository.clone());
        env.insert("GITHUB_ACTION_REF".into(), self.git_ref.clone());
        env
    }

    /// What a composite action's steps get of it, as in act: `INPUT_*` for each input it declares
    /// (empty when neither given nor defaulted), `GITHUB_ACTION_PATH`, `GITHUB_ACTION_REPOSITORY`,
    /// `GITHUB_ACTION_REF`.
    fn composite_env(&self) -> IndexMap<String, String> {
        let mut env: IndexMap<String, String> = self
            .action
            .inputs
            .keys()
            .map(|name| {
                let value = self.inputs.get(name).cloned().unwrap_or_default();
                (input_variable(name), value)
            })
            .collect();
        env.extend(
            self.env()
                .into_iter()
                .filter(|(name, _)| name.starts_with("GITHUB_ACTION_")),
        );
        env
    }
}

/// `INPUT_<NAME>`: upper-cased, spaces become `_` (as actions/toolkit reads them).
fn input_variable(name: &str) -> String {
    format!(
        "INPUT_{}",
        name.trim().replace(' ', "_").to_ascii_uppercase()
    )
}

/// Runs a `uses:` step (boxed: composite actions call it again for their own steps).
pub fn run<'a, 'j: 'a, B: Backend>(
    job_run: &'a mut JobRun<'j, B>,
    call: Call,
    step: &'a Step,
    step_env: IndexMap<String, String>,
) -> Pin<Box<dyn Future<Output = Result<BodyResult, String>> + Send + 'a>> {
    Box::pin(run_unboxed(job_run, call, step, step_env))
}

async fn run_unboxed<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    call: Call,
    step: &Step,
    step_env: IndexMap<String, String>,
) -> Result<BodyResult, String> {
    let (uses, reference) = reference_of(step, job_run.state)?;
    if let ActionRef::Docker(image) = &reference {
        return docker::run_image_step(job_run, call, step, image, step_env).await;
    }
    if let Some((tree, dest)) = local_checkout(job_run.backend, step, &uses, job_run.state)? {
        let note = format!("The local working tree is copied instead of running {uses}");
        job_run.emitter.log(Some(call.step_idx), &note).await;
        local_tree::copy_into(&tree, job_run.backend, &dest).await?;
        return Ok(BodyResult {
            outcome: Conclusion::Success,
            outputs: IndexMap::new(),
            state: IndexMap::new(),
        });
    }
    let loaded = load(job_run, step, &uses, &reference).await?;
    if let Some(note) = job_run.state.actions.patch_notes.remove(&uses) {
        job_run.emitter.log(Some(call.step_idx), &note).await;
    }
    for name in &loaded.missing_inputs {
        let warning = format!("::warning::Input required and not supplied: {name}");
        job_run.emitter.log(Some(call.step_idx), &warning).await;
    }
    match &loaded.action.runs {
        Runs::Composite { steps } => {
            if call.depth + 1 > MAX_COMPOSITE_DEPTH {
                return Err(format!(
                    "{}: Composite action depth exceeded max depth {MAX_COMPOSITE_DEPTH}",
                    loaded.file
                ));
            }
            composite::run(job_run, call, steps, &loaded, step_env).await
        }
        Runs::Node {
            main,
            post,
            post_if,
            ..
        } => {
            let command = StepCommand::process(
                vec!["node".into(), format!("{}/{main}", loaded.dir)],
                loaded.env(),
                step::step_timeout(step, job_run.state)?,
            );
            let post_stage = || {
                Ok(post.as_ref().map(|post| post::PostStage {
                    condition: post_if.clone(),
                    argv: vec!["node".into(), format!("{}/{post}", loaded.dir)],
                    container: None,
                }))
            };
            post::run_main_stage(job_run, call, step, command, step_env, post_stage).await
        }
        Runs::Docker(runs) => {
            docker::run_action(job_run, call, step, &loaded, runs, step_env).await
        }
    }
}

/// For `exec` (see [`local_tree`]): the tree and where it goes when this step is an
/// `actions/checkout` of the repository being run, which copies the tree instead of running.
fn local_checkout<B: Backend>(
    backend: &B,
    step: &Step,
    uses: &str,
    state: &JobState,
) -> Result<Option<(LocalTree, String)>, String> {
    let Some(tree) = state.local_tree.as_ref().filter(|tree| tree.skip_checkout) else {
        return Ok(None);
    };
    let github = state.scope.context_json("github");
    let own = |key: &str| {
        github
            .get(key)
            .and_then(|value| value.as_str())
            .unwrap_or("")
    };
    let with = with_values(step, state)?;
    if !local_tree::is_own_checkout(uses, &with, own("repository"), own("ref")) {
        return Ok(None);
    }
    let dest = match with.get("path").map(|path| path.trim()) {
        Some(path) if !path.is_empty() => path.to_string(),
        _ => backend.paths().workspace.to_string_lossy().into_owned(),
    };
    Ok(Some((tree.clone(), dest)))
}

/// `STATE_<name>` for what a step saved.
fn state_variables(saved: &IndexMap<String, String>) -> IndexMap<String, String> {
    saved
        .iter()
        .map(|(name, value)| (format!("STATE_{name}"), value.clone()))
        .collect()
}

/// The step's `uses`, interpolated, and what it names.
fn reference_of(step: &Step, state: &JobState) -> Result<(String, ActionRef), String> {
    let Some(uses_field) = &step.uses else {
        return Err(format!(
            "{}:{}: the step has neither `run` nor `uses`",
            state.file, step.at
        ));
    };
    let uses = state
        .scope
        .string(uses_field, "uses")
        .map_err(|error| error.0)?;
    let uses = uses.trim().to_string();
    let reference = ActionRef::parse(&uses, &state.actions.settings.default_url)
        .map_err(|message| format!("{}:{}: `uses`: {message}", state.file, uses_field.at))?;
    Ok((uses, reference))
}

/// Finds the action's files (fetching a remote one), parses `action.yml` and evaluates the inputs.
async fn load<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    step: &Step,
    uses: &str,
    reference: &ActionRef,
) -> Result<LoadedAction, String> {
    let (file, source, dir, context, repository, git_ref) = match reference {
        ActionRef::Local(relative) => {
            let workspace = job_run
                .backend
                .paths()
                .workspace
                .to_string_lossy()
                .into_owned();
            let dir = format!("{workspace}/{relative}");
            let (file, source) = read_action_file(job_run.backend, &dir).await?;
            let context = BuildContext::EnvironmentDir(dir.clone());
            (file, source, dir, context, String::new(), String::new())
        }
        ActionRef::Remote(remote) => {
            let (host_root, inside_root) = remote_dirs(job_run, step, uses, remote).await?;
            let host_dir = join_path(&host_root, &remote.path);
            let (file, source) = read_host_action_file(&host_dir, uses).await?;
            let dir = if remote.path.is_empty() {
                inside_root
            } else {
                format!("{inside_root}/{}", remote.path)
            };
            (
                file,
                source,
                dir,
                BuildContext::HostDir(host_dir),
                remote.repository.clone(),
                remote.git_ref.clone(),
            )
        }
        ActionRef::Docker(image) => {
            return Err(format!("`docker://{image}` has no action.yml"));
        }
    };
    let action = Action::parse(&source).map_err(|error| format!("{file}:{error}"))?;

    // Inputs: `with:` values, then defaults for the rest.
    let state = &*job_run.state;
    let mut inputs = with_values(step, state)?;
    let mut missing_inputs = Vec::new();
    for (name, input) in &action.inputs {
        if inputs.contains_key(name) {
            continue;
        }
        match &input.default {
            Some(default) => {
                let value = state
                    .scope
                    .string(default, &format!("inputs.{name}.default"))
                    .map_err(|error| error.0)?;
                inputs.insert(name.clone(), value);
            }
            None if input.required => missing_inputs.push(name.clone()),
            None => {}
        }
    }
    Ok(LoadedAction {
        file,
        dir,
        context,
        name: safe_name(uses).to_ascii_lowercase(),
        repository,
        git_ref,
        action,
        inputs,
        missing_inputs,
    })
}

/// The step's `with:` values, evaluated.
fn with_values(step: &Step, state: &JobState) -> Result<IndexMap<String, String>, String> {
    let mut values = IndexMap::new();
    for (name, field) in &step.with {
        let value = state
            .scope
            .string(field, &format!("with.{name}"))
            .map_err(|error| error.0)?;
        values.insert(name.clone(), value);
    }
    Ok(values)
}

fn join_path(root: &std::path::Path, relative: &str) -> PathBuf {
    if relative.is_empty() {
        root.to_path_buf()
    } else {
        root.join(relative)
    }
}

/// A remote action's checkout on the host and inside the job, fetched and imported once per job.
/// A node action runs from its patched copy when `runner.patch_actions` asks for it.
async fn remote_dirs<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    step: &Step,
    uses: &str,
    remote: &RemoteAction,
) -> Result<(PathBuf, String), String> {
    let state = &mut *job_run.state;
    if let Some(dirs) = state.actions.imported.get(uses) {
        return Ok(dirs.clone());
    }
    let checkout = fetch::fetch(uses, remote, &state.actions.settings, job_run.cancel)
        .await
        .map_err(|message| {
            format!(
                "{}:{}: step `{}`: cannot fetch {uses} from {}: {message}",
                state.file,
                step.at,
                step.display_name(),
                reference::redact_url(&remote.url)
            )
        })?;
    let host_root =
        if state.actions.settings.patch_actions && is_node_action(&checkout, remote).await {
            let chosen = patched::choose(uses, &checkout, &remote.path).await?;
            if let Some(note) = chosen.note {
                state.actions.patch_notes.insert(uses.to_string(), note);
            }
            chosen.root
        } else {
            checkout
        };
    let inside = format!("{CONTAINER_ACTIONS_DIR}/{}", safe_name(uses));
    let inside_root = job_run
        .backend
        .import_dir(&host_root, &inside)
        .await
        .map_err(|error| format!("cannot copy {uses} into the job environment: {error}"))?;
    state
        .actions
        .imported
        .insert(uses.to_string(), (host_root.clone(), inside_root.clone()));
    Ok((host_root, inside_root))
}

/// Whether the action at `remote.path` in the checkout runs with `node` (only those bundle the
/// toolkit). An unreadable `action.yml` is reported by `load`, which reads it again.
async fn is_node_action(checkout: &std::path::Path, remote: &RemoteAction) -> bool {
    let dir = join_path(checkout, &remote.path);
    match read_host_action_file(&dir, "").await {
        Ok((_, source)) => matches!(
            Action::parse(&source).map(|action| action.runs),
            Ok(Runs::Node { .. })
        ),
        Err(_) => false,
    }
}

async fn read_action_file<B: Backend>(
    backend: &B,
    action_dir: &str,
) -> Result<(String, String), String> {
    for name in ["action.yml", "action.yaml"] {
        let path = format!("{action_dir}/{name}");
        match backend.read_file(&path).await {
            Ok(Some(bytes)) => return Ok((path, String::from_utf8_lossy(&bytes).into_owned())),
            Ok(None) => {}
            Err(error) => return Err(format!("cannot read {path}: {error}")),
        }
    }
    let dockerfile = format!("{action_dir}/Dockerfile");
    match backend.read_file(&dockerfile).await {
        Ok(Some(_)) => Ok((dockerfile, String::from(DOCKERFILE_ONLY_ACTION))),
        _ => Err(format!(
            "no action.yml, action.yaml or Dockerfile in {action_dir}"
        )),
    }
}

/// What a directory with only a `Dockerfile` runs (as upstream synthesises it).
const DOCKERFILE_ONLY_ACTION: &str = "runs:\n  using: docker\n  image: Dockerfile\n";

async fn read_host_action_file(
    action_dir: &std::path::Path,
    uses: &str,
) -> Result<(String, String), String> {
    for name in ["action.yml", "action.yaml"] {
        let path = action_dir.join(name);
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                return Ok((
                    format!("{uses}/{name}"),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        }
    }
    if action_dir.join("Dockerfile").is_file() {
        return Ok((
            format!("{uses}/Dockerfile"),
            String::from(DOCKERFILE_ONLY_ACTION),
        ));
    }
    Err(format!(
        "{uses}: the repository has no action.yml, action.yaml or Dockerfile there"
    ))
}
