//! `act_runner exec`: runs workflows locally, without Gitea. Finds the workflow files, plans jobs in
//! `needs` order with each matrix expanded, runs every job through the executor on the host
//! (`-i -self-hosted`) or in Docker with the working tree (`-C`) copied into its workspace, prints
//! the log with step boundaries, and exits 0 only if every job succeeded (or was skipped), 1 if
//! one failed, 78 if a workflow is invalid.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indexmap::IndexMap;
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

use crate::executor::event::Conclusion;
use crate::executor::model::Workflow;
use crate::executor::{JobSpec, LocalTree, check_workflow, plan};

use super::{CliError, EXIT_INVALID_CONFIG};

mod docker;
mod exec_cache;
mod print;
mod schedule;

/// The image every `runs-on` maps to unless `-i` says otherwise (upstream's default).
const DEFAULT_IMAGE: &str = "docker.gitea.com/runner-images:ubuntu-latest";
/// The `-i` value that runs jobs on the host.
const SELF_HOSTED: &str = "-self-hosted";

/// Flags of `exec` (upstream's names).
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Workflow file or directory.
    #[arg(short = 'W', long = "workflows", default_value = "./.gitea/workflows/")]
    pub workflows: PathBuf,
    /// Working directory.
    #[arg(short = 'C', long = "directory", default_value = ".")]
    pub directory: PathBuf,
    /// Do not descend into subdirectories of `-W`.
    #[arg(long = "no-recurse")]
    pub no_recurse: bool,
    /// List the jobs and exit.
    #[arg(short = 'l', long = "list")]
    pub list: bool,
    /// Run only this job (and the jobs it needs).
    #[arg(short = 'j', long = "job")]
    pub job: Option<String>,
    /// Event name (default: the only event of the workflows, else `push`).
    #[arg(short = 'E', long = "event")]
    pub event: Option<String>,
    /// JSON file with the event payload (`github.event`).
    #[arg(short = 'e', long = "eventpath")]
    pub event_path: Option<PathBuf>,
    /// Image for every `runs-on`; `-self-hosted` runs jobs on the host.
    #[arg(short = 'i', long = "image", default_value = DEFAULT_IMAGE, allow_hyphen_values = true)]
    pub image: String,
    /// A secret, `K=V`, or `K` to take the value from the environment.
    #[arg(short = 's', long = "secret")]
    pub secrets: Vec<String>,
    /// A variable (`vars` context), `K=V` or `K`.
    #[arg(long = "var")]
    pub vars: Vec<String>,
    /// An environment variable for every job, `K=V` or `K` (empty value).
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// A workflow input (`github.event.inputs` and the `inputs` context), `K=V` or `K` (empty).
    #[arg(long = "input")]
    pub inputs: Vec<String>,
    /// A dotenv file of workflow inputs, under `--input`; ignored when missing.
    #[arg(long = "input-file", default_value = ".input")]
    pub input_file: PathBuf,
    /// Run job containers privileged.
    #[arg(long = "privileged")]
    pub privileged: bool,
    /// More `docker run` options for every job container, applied before the workflow's.
    #[arg(long = "container-opts", default_value = "")]
    pub container_opts: String,
    /// A kernel capability to add to job containers (repeatable), e.g. `SYS_PTRACE`.
    #[arg(long = "container-cap-add")]
    pub container_cap_add: Vec<String>,
    /// A kernel capability to drop from job containers (repeatable).
    #[arg(long = "container-cap-drop")]
    pub container_cap_drop: Vec<String>,
    /// The user namespace of job containers (`docker run --userns`).
    #[arg(long = "userns")]
    pub userns: Option<String>,
    /// The platform job images are pulled and run for, e.g. `linux/amd64` (default: the
    /// engine's own).
    #[arg(long = "container-architecture")]
    pub container_architecture: Option<String>,
    /// Docker network for job containers (default: a new network per job).
    #[arg(long = "network")]
    pub network: Option<String>,
    /// A glob of volumes and bind sources workflows may mount (repeatable; default `**`, all).
    #[arg(long = "valid-volume")]
    pub valid_volumes: Vec<String>,
    /// Docker host (default: discovered as upstream does).
    #[arg(long = "container-daemon-socket", default_value = "")]
    pub docker_host: String,
    /// A dotenv file with environment variables; ignored when missing.
    #[arg(long = "env-file", default_value = ".env")]
    pub env_file: PathBuf,
    /// Where `owner/repo@ref` actions are fetched from (any URL `git` accepts). Fetched actions
    /// are kept under `$XDG_CACHE_HOME/act` (else `~/.cache/act`).
    #[arg(long = "default-actions-url", default_value = crate::executor::DEFAULT_ACTIONS_URL)]
    pub default_actions_url: String,
    /// Rebuild the images of docker actions even when they exist.
    #[arg(long = "rebuild")]
    pub rebuild: bool,
    /// Without `-E`, use the first event found in the workflows.
    #[arg(long = "detect-event")]
    pub detect_event: bool,
    /// Pull every image, even one that is present.
    #[arg(short = 'p', long = "pull")]
    pub pull: bool,
    /// Print the log as JSON lines (`time`, `job`, `level`, `msg`, `step`).
    #[arg(long = "json")]
    pub json: bool,
    /// Do not mask secrets in the log.
    #[arg(long = "insecure-secrets")]
    pub insecure_secrets: bool,
    /// Plan and print the jobs and their steps without running anything.
    #[arg(short = 'n', long = "dryrun")]
    pub dryrun: bool,
    /// Run `actions/checkout` of this repository instead of copying the working tree for it.
    #[arg(long = "no-skip-checkout")]
    pub no_skip_checkout: bool,
    /// What to mount at `RUNNER_TOOL_CACHE`: `none` (each job its own) or `shared` (one tool
    /// cache every run reuses: the volume `act-toolcache` in Docker, `tool_cache` in the action
    /// cache directory on the host).
    #[arg(long = "tool-cache-mode", default_value = "none", value_parser = ["none", "shared"])]
    pub tool_cache_mode: String,
    /// The Gitea instance jobs are told about (`github.server_url`, `github.api_url`), e.g.
    /// `gitea.example.com` or `http://localhost:3000`.
    #[arg(long = "gitea-instance")]
    pub gitea_instance: Option<String>,
    /// Print the runner's own debug log on stderr (without it, only its warnings and errors).
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Leave what `.gitignore` ignores out of the working tree copied into the workspace
    /// (`--use-gitignore=false` copies everything).
    #[arg(long = "use-gitignore", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub use_gitignore: bool,
}

/// Runs the command.
pub fn run(_config: Option<PathBuf>, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The job's output is on stdout; stderr gets what goes wrong around it, or all with `-d`.
    let level = if args.debug {
        crate::config::LogLevel::Debug
    } else {
        crate::config::LogLevel::Warn
    };
    super::logging::init(level, false);
    runtime.block_on(exec(args))
}

/// `github.server_url` and `github.api_url` for `--gitea-instance`, as upstream's act sets
/// them: `https://` when no scheme is given, the API under `/api/v1`.
fn instance_urls(instance: &str) -> (String, String) {
    let instance = instance.trim_end_matches('/');
    let server_url = if instance.starts_with("http://") || instance.starts_with("https://") {
        instance.to_string()
    } else {
        format!("https://{instance}")
    };
    let api_url = format!("{server_url}/api/v1");
    (server_url, api_url)
}

pub struct WorkflowFile {
    /// Path as shown (relative to `-C` when possible).
    display: String,
    yaml: String,
    workflow: Workflow,
}

async fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let directory = args.directory.clone();
    let workflows_path = if args.workflows.is_absolute() {
        args.workflows.clone()
    } else {
        directory.join(&args.workflows)
    };
    let mut files = Vec::new();
    collect_workflow_files(&workflows_path, !args.no_recurse, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(CliError::InvalidInput(format!(
            "no workflow files in {}",
            workflows_path.display()
        ))
        .into());
    }
    let mut workflows = Vec::new();
    let mut invalid = false;
    for path in files {
        let yaml = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let display = path
            .strip_prefix(&directory)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        match check_workflow(&yaml, &display) {
            Ok(workflow) => workflows.push(WorkflowFile {
                display,
                yaml,
                workflow,
            }),
            Err(error) => {
                eprintln!("{error}");
                invalid = true;
            }
        }
    }
    if invalid {
        return Ok(ExitCode::from(EXIT_INVALID_CONFIG));
    }

    let event = match &args.event {
        Some(event) => event.clone(),
        None if args.detect_event => plan::first_event(workflows.iter().map(|file| &file.workflow)),
        None => plan::default_event(workflows.iter().map(|file| &file.workflow)),
    };
    if args.list {
        list(&workflows)?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut base = base_spec(&args, &directory, &event)?;
    let on_host = args.image == SELF_HOSTED;
    let any_container = workflows.iter().any(|file| {
        file.workflow
            .jobs
            .values()
            .any(|job| job.container.is_some())
    });
    let docker = if args.dryrun || (on_host && !any_container) {
        None
    } else if on_host {
        // Only the jobs naming a `container:` need the engine; without one they fail, saying so.
        docker::DockerSession::connect(&args).await.ok()
    } else {
        Some(docker::DockerSession::connect(&args).await?)
    };
    let cache = if args.dryrun {
        None
    } else {
        exec_cache::start(
            &mut base,
            docker.is_some(),
            on_host,
            args.network.as_deref(),
        )
        .await
    };
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });

    let run = schedule::RunContext {
        args: &args,
        docker: docker.as_ref(),
        on_host,
        base: &base,
        cancel: &cancel,
    };
    let mut n_ran = 0usize;
    let mut all_ok = true;
    for file in &workflows {
        let jobs: Vec<String> = match &args.job {
            Some(job) if file.workflow.jobs.contains_key(job) => vec![job.clone()],
            Some(_) => continue,
            None if file.workflow.on.contains(&event) => {
                file.workflow.jobs.keys().cloned().collect()
            }
            None => continue,
        };
        let stages = plan::stages(&file.workflow, &jobs)
            .map_err(|error| CliError::InvalidInput(format!("{}: {error:#}", file.display)))?;
        let planned: Vec<String> = stages.0.into_iter().flatten().collect();
        let results = schedule::run_workflow(&run, file, planned).await;
        n_ran += results.len();
        all_ok &= results
            .values()
            .all(|result| matches!(result.result, Conclusion::Success | Conclusion::Skipped));
    }
    if let Some(docker) = &docker {
        docker.shutdown().await;
    }
    if let Some(cache) = cache {
        cache.stop().await;
    }
    if n_ran == 0 {
        let message = match &args.job {
            Some(job) => format!("there is no job `{job}` in the workflows"),
            None => format!("no workflow runs on event `{event}`"),
        };
        return Err(CliError::InvalidInput(message).into());
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn collect_workflow_files(
    path: &Path,
    recurse: bool,
    out: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
    {
        let entry_path = entry?.path();
        if entry_path.is_dir() {
            if recurse {
                collect_workflow_files(&entry_path, recurse, out)?;
            }
        } else if entry_path
            .extension()
            .is_some_and(|extension| extension == "yml" || extension == "yaml")
        {
            out.push(entry_path);
        }
    }
    Ok(())
}

fn list(workflows: &[WorkflowFile]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Stage  Job ID  Job name  Workflow name  Workflow file  Events"
    )?;
    for file in workflows {
        let all: Vec<String> = file.workflow.jobs.keys().cloned().collect();
        let stages = plan::stages(&file.workflow, &all).with_context(|| file.display.clone())?;
        for (stage_idx, stage) in stages.0.iter().enumerate() {
            for job_id in stage {
                let job = &file.workflow.jobs[job_id];
                let name = job
                    .name
                    .as_ref()
                    .map_or(job_id.as_str(), |name| name.value.as_str());
                writeln!(
                    out,
                    "{stage_idx}  {job_id}  {name}  {}  {}  {}",
                    file.workflow.name.as_deref().unwrap_or(&file.display),
                    file.display,
                    file.workflow.on.join(",")
                )?;
            }
        }
    }
    Ok(())
}

/// `K=V` pairs; a bare `K` takes `missing(K)`.
fn pairs(items: &[String], missing: impl Fn(&str) -> String) -> IndexMap<String, String> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => (item.clone(), missing(item)),
        })
        .collect()
}

/// A dotenv file: `K=V` lines, `#` comments, optional `export ` and quotes.
fn read_env_file(path: &Path) -> anyhow::Result<IndexMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(IndexMap::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut env = IndexMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|value| value.strip_suffix('"'))
            .or_else(|| {
                value
                    .strip_prefix('\'')
                    .and_then(|value| value.strip_suffix('\''))
            })
            .unwrap_or(value);
        env.insert(key.trim().to_string(), value.to_string());
    }
    Ok(env)
}

/// Puts `--input`/`--input-file` values into the payload's `inputs`, over what it holds (as act
/// does, they reach the `inputs` context through the event).
fn add_inputs(event_payload: &mut Json, inputs: IndexMap<String, String>) {
    if inputs.is_empty() {
        return;
    }
    let Json::Object(payload) = event_payload else {
        return;
    };
    let given = payload
        .entry("inputs")
        .or_insert_with(|| Json::Object(Default::default()));
    if !given.is_object() {
        *given = Json::Object(Default::default());
    }
    if let Json::Object(given) = given {
        for (name, value) in inputs {
            given.insert(name, Json::String(value));
        }
    }
}

fn git(directory: &Path, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(directory)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|text| !text.is_empty())
}

/// `owner/repo` from a remote URL (`https://host/owner/repo.git`, `git@host:owner/repo.git`).
fn repository_from_remote(url: &str) -> Option<String> {
    let trimmed = url.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = trimmed.rsplit(['/', ':']);
    let repo = parts.next()?;
    let owner = parts.next()?;
    (!owner.is_empty() && !repo.is_empty()).then(|| format!("{owner}/{repo}"))
}

/// The spec every job of this run starts from.
fn base_spec(args: &ExecArgs, directory: &Path, event: &str) -> anyhow::Result<JobSpec> {
    let mut spec = JobSpec::new(String::new(), String::new(), String::new());
    spec.secrets = pairs(&args.secrets, |key| std::env::var(key).unwrap_or_default())
        .into_iter()
        .map(|(key, value)| (key.to_ascii_uppercase(), value))
        .collect();
    spec.vars = pairs(&args.vars, |_| String::new());
    spec.env = read_env_file(&directory.join(&args.env_file))?;
    spec.env.extend(pairs(&args.env, |_| String::new()));
    let mut event_payload: Json = match &args.event_path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?
        }
        None => json!({}),
    };
    let mut inputs = read_env_file(&directory.join(&args.input_file))?;
    inputs.extend(pairs(&args.inputs, |_| String::new()));
    add_inputs(&mut event_payload, inputs);
    let repository = git(directory, &["config", "--get", "remote.origin.url"])
        .and_then(|url| repository_from_remote(&url))
        .unwrap_or_else(|| {
            let name = std::fs::canonicalize(directory)
                .ok()
                .and_then(|path| {
                    path.file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "repo".into());
            format!("local/{name}")
        });
    let git_ref =
        git(directory, &["symbolic-ref", "-q", "HEAD"]).unwrap_or_else(|| "refs/heads/main".into());
    let ref_name = git_ref.rsplit('/').next().unwrap_or("main").to_string();
    let token = spec
        .secrets
        .get("GITEA_TOKEN")
        .or_else(|| spec.secrets.get("GITHUB_TOKEN"))
        .cloned()
        .unwrap_or_default();
    let owner = repository.split('/').next().unwrap_or_default().to_string();
    let github = json!({
        "event": event_payload,
        "event_name": event,
        "repository": repository,
        "repository_owner": owner,
        "sha": git(directory, &["rev-parse", "HEAD"]).unwrap_or_default(),
        "ref": git_ref,
        "ref_name": ref_name,
        "ref_type": "branch",
        "actor": "act-runner",
        "token": token,
    });
    if let Json::Object(map) = github {
        spec.github = map;
    }
    if let Some(instance) = &args.gitea_instance {
        let (server_url, api_url) = instance_urls(instance);
        spec.github.insert("server_url".into(), json!(server_url));
        spec.github.insert("api_url".into(), json!(api_url));
    }
    spec.extra_env.insert("ACT_EXEC".into(), "true".into());
    if !args.no_skip_checkout {
        // Upstream's act tells the steps that `actions/checkout` of this repository is skipped.
        spec.extra_env
            .insert("ACT_SKIP_CHECKOUT".into(), "true".into());
    }
    spec.actions.default_url = args.default_actions_url.clone();
    // Reusable workflows: `./` from the working directory, `owner/repo/...@ref` from where the
    // actions come from.
    spec.actions.workflows_url = args.default_actions_url.clone();
    spec.actions.repository_dir = Some(directory.to_path_buf());
    spec.actions.force_rebuild = args.rebuild;
    spec.runner_name = String::from("act-runner-exec");
    spec.mask_secrets = !args.insecure_secrets;
    // The working tree is copied into every job's workspace, as upstream's `exec` does.
    spec.local_tree = Some(LocalTree {
        root: std::fs::canonicalize(directory)
            .with_context(|| format!("cannot read {}", directory.display()))?,
        use_gitignore: args.use_gitignore,
        skip_checkout: !args.no_skip_checkout,
    });
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_give_owner_and_repo() {
        assert_eq!(
            repository_from_remote("https://gitea.example/o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            repository_from_remote("git@gitea.example:o/r.git").as_deref(),
            Some("o/r")
        );
    }

    #[test]
    fn gitea_instance_gives_server_and_api_urls_as_upstream() {
        assert_eq!(
            instance_urls("gitea.example.com"),
            (
                "https://gitea.example.com".into(),
                "https://gitea.example.com/api/v1".into()
            )
        );
        assert_eq!(
            instance_urls("http://localhost:3000/"),
            (
                "http://localhost:3000".into(),
                "http://localhost:3000/api/v1".into()
            )
        );
    }

    #[test]
    fn bare_keys_take_the_fallback() {
        let parsed = pairs(&["A=1".into(), "B".into(), "C=x=y".into()], |_| "fb".into());
        assert_eq!(parsed["A"], "1");
        assert_eq!(parsed["B"], "fb");
        assert_eq!(parsed["C"], "x=y");
    }
}
