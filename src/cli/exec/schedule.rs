//! How `exec` runs the planned jobs of one workflow: each job starts as soon as the jobs it needs
//! are done (independent jobs run concurrently), and each matrix leg is its own `run_job`, at most
//! `strategy.max-parallel` legs of one matrix at once. With `strategy.fail-fast` (the default) a
//! failing leg cancels its running siblings and the legs not yet started conclude cancelled
//! without running; with `fail-fast: false` every leg runs.

use std::collections::BTreeSet;
use std::io::Write;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use indexmap::IndexMap;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{ExecArgs, WorkflowFile, docker, print};
use crate::executor::backend::host::{HostBackend, HostOptions};
use crate::executor::backend::job_processes::ProcessScope;
use crate::executor::event::Conclusion;
use crate::executor::{JobSpec, NeedResult, matrix_plan, run_job};

/// Legs of one matrix running at once when the workflow sets no `max-parallel` (upstream act's
/// default), so a large matrix does not start every container at the same moment.
const DEFAULT_MAX_PARALLEL: usize = 4;

/// What every job of one `exec` run shares.
pub struct RunContext<'a> {
    pub args: &'a ExecArgs,
    /// With `-i -self-hosted`: the engine for the jobs that name a `container:`, when reachable.
    pub docker: Option<&'a docker::DockerSession>,
    /// `-i -self-hosted`: jobs run on the host unless they name a `container:`.
    pub on_host: bool,
    pub base: &'a JobSpec,
    pub cancel: &'a CancellationToken,
}

/// Runs `planned` jobs (in `needs` order) of one workflow; returns each job's result in the order
/// they finished.
pub async fn run_workflow(
    run: &RunContext<'_>,
    file: &WorkflowFile,
    planned: Vec<String>,
) -> IndexMap<String, NeedResult> {
    let planned_set: BTreeSet<&str> = planned.iter().map(String::as_str).collect();
    let needs_of = |job_id: &str| -> Vec<String> {
        file.workflow.jobs[job_id]
            .needs
            .iter()
            .map(|need| need.value.clone())
            .filter(|need| planned_set.contains(need.as_str()))
            .collect()
    };
    let mut results: IndexMap<String, NeedResult> = IndexMap::new();
    let mut waiting: Vec<String> = planned.clone();
    let mut running = FuturesUnordered::new();
    loop {
        let (ready, still_waiting): (Vec<String>, Vec<String>) =
            waiting.into_iter().partition(|job_id| {
                needs_of(job_id)
                    .iter()
                    .all(|need| results.contains_key(need))
            });
        waiting = still_waiting;
        for job_id in ready {
            let needs: IndexMap<String, NeedResult> = needs_of(&job_id)
                .into_iter()
                .filter_map(|need| results.get(&need).map(|result| (need, result.clone())))
                .collect();
            running.push(async move {
                let result = run_planned_job(run, file, &job_id, needs).await;
                (job_id, result)
            });
        }
        match running.next().await {
            Some((job_id, result)) => {
                results.insert(job_id, result);
            }
            None => break,
        }
    }
    results
}

/// Runs every matrix leg of one job; the job's result is the worst of them and its outputs those
/// of the last leg that set them.
async fn run_planned_job(
    run: &RunContext<'_>,
    file: &WorkflowFile,
    job_id: &str,
    needs: IndexMap<String, NeedResult>,
) -> NeedResult {
    let mut spec = clone_spec(run.base);
    spec.workflow_yaml = file.yaml.clone();
    spec.workflow_file = file.display.clone();
    spec.job_id = job_id.to_string();
    spec.needs = needs;
    let label = format!("{}/{job_id}", file.display);
    let plan = match matrix_plan(&spec) {
        Ok(plan) => plan,
        Err(error) => {
            println!("[{label}] ❌ {error}");
            return NeedResult {
                result: Conclusion::Failure,
                outputs: IndexMap::new(),
            };
        }
    };
    let n_legs = plan.combinations.len();
    let max_parallel = plan.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL);
    let slots = Semaphore::new(max_parallel);
    // Fail-fast cancels this token: running legs see their job cancelled, waiting legs never start.
    let legs_cancel = run.cancel.child_token();
    let legs = plan
        .combinations
        .into_iter()
        .enumerate()
        .map(|(leg_idx, combination)| {
            let label = if n_legs > 1 {
                let values: Vec<String> = combination.values().map(print::json_scalar).collect();
                format!("{label} ({})", values.join(", "))
            } else {
                label.clone()
            };
            let mut leg_spec = clone_spec(&spec);
            leg_spec.needs = spec.needs.clone();
            leg_spec.matrix = Some(combination);
            leg_spec.matrix_position = Some((leg_idx, n_legs));
            let (slots, legs_cancel) = (&slots, &legs_cancel);
            async move {
                // The semaphore is fair: legs start in matrix order. It is never closed.
                let Ok(_slot) = slots.acquire().await else {
                    return (Conclusion::Cancelled, IndexMap::new());
                };
                if legs_cancel.is_cancelled() {
                    println!("[{label}] 🚫 Cancelled before it started (fail-fast)");
                    return (Conclusion::Cancelled, IndexMap::new());
                }
                if run.args.dryrun {
                    return (dry_run(file, &leg_spec, &label), IndexMap::new());
                }
                let in_container = file.workflow.jobs[&leg_spec.job_id].container.is_some();
                let (result, outputs) =
                    run_one(run, leg_spec, &label, in_container, legs_cancel).await;
                if result == Conclusion::Failure && plan.fail_fast && n_legs > 1 {
                    if !legs_cancel.is_cancelled() {
                        println!("[{label}] failed: cancelling the other legs (fail-fast)");
                    }
                    legs_cancel.cancel();
                }
                (result, outputs)
            }
        });
    let leg_results = futures_util::future::join_all(legs).await;

    let mut overall = NeedResult {
        result: Conclusion::Success,
        outputs: IndexMap::new(),
    };
    let mut all_skipped = true;
    for (result, outputs) in leg_results {
        if result != Conclusion::Skipped {
            all_skipped = false;
        }
        overall.result = match (overall.result, result) {
            (_, Conclusion::Failure) | (Conclusion::Failure, _) => Conclusion::Failure,
            (_, Conclusion::Cancelled) | (Conclusion::Cancelled, _) => Conclusion::Cancelled,
            _ => Conclusion::Success,
        };
        overall
            .outputs
            .extend(outputs.into_iter().filter(|(_, value)| !value.is_empty()));
    }
    if all_skipped {
        overall.result = Conclusion::Skipped;
    }
    overall
}

async fn run_one(
    run: &RunContext<'_>,
    spec: JobSpec,
    label: &str,
    in_container: bool,
    cancel: &CancellationToken,
) -> (Conclusion, IndexMap<String, String>) {
    let (events, received) = mpsc::channel(256);
    let format = if run.args.json {
        print::Format::Json
    } else {
        print::Format::Text
    };
    let printer = tokio::spawn(print::print_events(received, label.to_string(), format));
    // A job `container:` runs in Docker even with `-self-hosted`, as upstream's act does; without
    // an engine the host backend refuses it.
    let docker = run.docker.filter(|_| in_container || !run.on_host);
    tracing::debug!(
        job = label,
        backend = if docker.is_some() { "docker" } else { "host" },
        "running job"
    );
    let result = match docker {
        None => {
            let mut backend = host_backend(run.args, &spec);
            run_job(spec, &mut backend, events, cancel.clone()).await
        }
        Some(docker) => {
            let mut backend = docker::docker_backend(docker, run.args, &spec);
            run_job(spec, &mut backend, events, cancel.clone()).await
        }
    };
    let outputs = printer.await.unwrap_or_default();
    (result, outputs)
}

/// A host backend for one job; `--tool-cache-mode shared` keeps `tool_cache` in the action cache
/// directory, as upstream's act does.
fn host_backend(args: &ExecArgs, spec: &JobSpec) -> HostBackend {
    let options = HostOptions {
        allocate_pty: false,
        shared_tool_cache: (args.tool_cache_mode == "shared")
            .then(|| spec.actions.cache_dir.join("tool_cache")),
        scope: ProcessScope::private(),
    };
    HostBackend::with_options(&std::env::temp_dir(), options)
}

/// `base` for a job or a matrix leg, with the working tree `exec` copies into every job.
fn clone_spec(base: &JobSpec) -> JobSpec {
    let mut spec = base.another_job(
        base.workflow_yaml.clone(),
        base.workflow_file.clone(),
        base.job_id.clone(),
    );
    spec.local_tree = base.local_tree.clone();
    spec
}

/// `--dryrun`: what would run, without a backend.
fn dry_run(file: &WorkflowFile, spec: &JobSpec, label: &str) -> Conclusion {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{label}] 🚀 Start job (dry run)");
    for step in &file.workflow.jobs[&spec.job_id].steps {
        let _ = writeln!(
            out,
            "[{label}] ⭐ {} (dry run: not run)",
            step.display_name()
        );
    }
    let _ = writeln!(out, "[{label}] 🏁 Job success (dry run)");
    Conclusion::Success
}
