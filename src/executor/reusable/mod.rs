//! Reusable workflows (`jobs.<id>.uses`), run runner-side as upstream's act does for the Gitea
//! versions that send such a job unexpanded. The called workflow is read from the local checkout
//! (`./path` with `ActionSettings::repository_dir`) or fetched with `git` into the action cache
//! (`owner/repo/path@ref`, and `./path` from the job's own repository at `github.sha`), with the
//! trusted server's token where it lives there. Its jobs run inside the calling job, one after
//! another in `needs` order (each matrix leg in turn) on the caller's backend, prepared and cleaned
//! up for each; their steps are numbered after one another in the caller's one log. A called job
//! may call a workflow in turn (`load` bounds the nesting); every level is loaded before the
//! first step runs, since the log announces the steps of each job's first leg at once (the legs
//! after it in `StepsPlanned`, once their matrix is known), and evaluated when its calling job
//! runs (`call`), so `with:` and `secrets:` may use `needs`, `inputs` and `matrix` of its level.

mod call;
mod load;

use std::time::SystemTime;

use indexmap::IndexMap;
use tokio_util::sync::CancellationToken;

use super::backend::Backend;
use super::emitter::CalledSteps;
use super::event::{Conclusion, JobEvent, PlannedStep};
use super::job::{Emitter, clean_up, refuse, run_started};
use super::masking::Masker;
use super::model::{Job, Located, Workflow};
use super::spec::{JobSpec, NeedResult, matrix_plan};
use call::BoundCall;
use load::{CalledWorkflow, Walk};

/// Runs the workflow the caller's job `uses` and returns the caller's conclusion; sends
/// `JobStarted`, the called jobs' steps and logs, and the caller's `Outputs`.
pub async fn run<B: Backend>(
    spec: &JobSpec,
    workflow: &Workflow,
    job: &Job,
    uses: &Located<String>,
    backend: &mut B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Conclusion {
    let where_ = format!("{}:{}: job `{}`", spec.workflow_file, uses.at, job.id);
    let loaded = match Walk::new(spec, cancel).load(&uses.value, &where_).await {
        Ok(loaded) => loaded,
        Err(message) => return refuse(emitter, message).await,
    };
    match call::evaluate(spec, workflow, job, &loaded, backend.paths(), &where_) {
        Err(message) => refuse(emitter, message).await,
        Ok(None) => {
            emitter
                .send(JobEvent::JobStarted {
                    at: SystemTime::now(),
                    steps: Vec::new(),
                })
                .await;
            emitter
                .log(None, "The job was skipped: its `if` condition is false")
                .await;
            Conclusion::Skipped
        }
        Ok(Some(call)) => run_call(spec, &call, backend, emitter, cancel).await,
    }
}

/// Where the steps of a called workflow's jobs stand in the caller's one log.
struct Layout {
    jobs: IndexMap<String, Slot>,
}

enum Slot {
    /// The job's steps start at this index.
    Steps(usize),
    /// The job calls a workflow, laid out in turn.
    Call(Layout),
}

/// Numbers the steps of `loaded`'s jobs from `next_idx` on, nested calls in place, and adds each
/// to `planned` named `job: step` (`caller / job: step` below a nested call).
fn lay_out(
    loaded: &CalledWorkflow,
    prefix: &str,
    next_idx: &mut usize,
    planned: &mut Vec<PlannedStep>,
    masker: &Masker,
) -> Layout {
    let mut jobs = IndexMap::new();
    for job_id in &loaded.order {
        let slot = match loaded.called.get(job_id) {
            Some(nested) => Slot::Call(lay_out(
                nested,
                &format!("{prefix}{job_id} / "),
                next_idx,
                planned,
                masker,
            )),
            None => {
                let start = *next_idx;
                for step in &loaded.workflow.jobs[job_id].steps {
                    planned.push(PlannedStep {
                        step_idx: *next_idx,
                        name: masker.mask(&format!("{prefix}{job_id}: {}", step.display_name())),
                    });
                    *next_idx += 1;
                }
                Slot::Steps(start)
            }
        };
        jobs.insert(job_id.clone(), slot);
    }
    Layout { jobs }
}

/// What every level of a call runs with.
struct Run<'r, B> {
    backend: &'r mut B,
    emitter: &'r mut Emitter,
    cancel: &'r CancellationToken,
    /// The first step index no leg has taken yet: matrix legs after the first are numbered
    /// after every announced step.
    next_idx: usize,
    /// The calling jobs above the running level, each with its leg (`call (2/3) / `), in front
    /// of a called step's name in the log.
    prefix: String,
}

async fn run_call<B: Backend>(
    spec: &JobSpec,
    call: &BoundCall<'_>,
    backend: &mut B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Conclusion {
    let mut planned = Vec::new();
    let mut next_idx = 0;
    let layout = lay_out(
        call.loaded,
        "",
        &mut next_idx,
        &mut planned,
        &emitter.masker,
    );
    emitter
        .send(JobEvent::JobStarted {
            at: SystemTime::now(),
            steps: planned,
        })
        .await;
    let mut run = Run {
        backend,
        emitter,
        cancel,
        next_idx,
        prefix: String::new(),
    };
    let result = run_workflow(spec, call, &layout, &mut run).await;
    emitter.send(JobEvent::Outputs(result.outputs)).await;
    result.result
}

/// Runs a call's jobs in `needs` order: the call's conclusion and outputs.
async fn run_workflow<B: Backend>(
    spec: &JobSpec,
    call: &BoundCall<'_>,
    layout: &Layout,
    run: &mut Run<'_, B>,
) -> NeedResult {
    let mut results: IndexMap<String, NeedResult> = IndexMap::new();
    for job_id in &call.loaded.order {
        let job = &call.loaded.workflow.jobs[job_id];
        let needs = job
            .needs
            .iter()
            .filter_map(|need| {
                results
                    .get(&need.value)
                    .map(|result| (need.value.clone(), result.clone()))
            })
            .collect();
        let job_spec = child_spec(spec, call, job_id, needs);
        let result = if run.cancel.is_cancelled() {
            cancelled()
        } else {
            match (layout.jobs.get(job_id), call.loaded.called.get(job_id)) {
                (Some(Slot::Call(nested_layout)), Some(nested)) => {
                    // Boxed: the future would otherwise contain itself.
                    Box::pin(run_nested(job_spec, call, job, nested, nested_layout, run)).await
                }
                (Some(Slot::Steps(start)), None) => {
                    run_called_job(job_spec, call, job, *start, run).await
                }
                _ => unreachable!("`lay_out` gives each job of the loaded workflow its slot"),
            }
        };
        results.insert(job_id.clone(), result);
    }
    let outputs = call::outputs(spec, call, &results, run.emitter).await;
    let conclusions: Vec<Conclusion> = results.values().map(|result| result.result).collect();
    let result = if conclusions.contains(&Conclusion::Failure) {
        Conclusion::Failure
    } else if conclusions.contains(&Conclusion::Cancelled) {
        Conclusion::Cancelled
    } else {
        Conclusion::Success
    };
    NeedResult { result, outputs }
}

/// Runs every matrix leg of a called job that calls a workflow in turn.
async fn run_nested<B: Backend>(
    spec: JobSpec,
    caller: &BoundCall<'_>,
    job: &Job,
    nested: &CalledWorkflow,
    layout: &Layout,
    run: &mut Run<'_, B>,
) -> NeedResult {
    let at = job
        .uses
        .as_ref()
        .map_or(String::new(), |uses| uses.at.to_string());
    let where_ = format!("{}:{at}: job `{}`", caller.loaded.file, spec.job_id);
    let workflow = &caller.loaded.workflow;
    let Some(mut legs) = Legs::plan(&spec, run.emitter).await else {
        return failed();
    };
    while let Some((leg, leg_idx)) = legs.next(&spec, caller, run.cancel) {
        let paths = run.backend.paths();
        let result = match call::evaluate(&leg, workflow, job, nested, paths, &where_) {
            Err(message) => {
                run.emitter.log(None, &format!("::error::{message}")).await;
                failed()
            }
            Ok(None) => {
                let message = format!(
                    "The job `{}` was skipped: its `if` condition is false",
                    leg.job_id
                );
                run.emitter.log(None, &message).await;
                skipped()
            }
            Ok(Some(call)) => {
                let fresh;
                let leg_layout = if leg_idx == 0 {
                    layout
                } else {
                    let prefix = format!("{}{}{} / ", run.prefix, leg.job_id, legs.label(leg_idx));
                    let mut planned = Vec::new();
                    let masker = &run.emitter.masker;
                    fresh = lay_out(nested, &prefix, &mut run.next_idx, &mut planned, masker);
                    run.emitter.send(JobEvent::StepsPlanned(planned)).await;
                    &fresh
                };
                let message = format!(
                    "Running workflow {} for job `{}`{} of {}",
                    nested.file,
                    leg.job_id,
                    legs.label(leg_idx),
                    caller.loaded.file
                );
                run.emitter.log(None, &message).await;
                let below = format!("{}{}{} / ", run.prefix, leg.job_id, legs.label(leg_idx));
                let above = std::mem::replace(&mut run.prefix, below);
                let result = Box::pin(run_workflow(&leg, &call, leg_layout, run)).await;
                run.prefix = above;
                result
            }
        };
        legs.add(result);
    }
    legs.overall
}

/// Runs every matrix leg of one called job on the caller's backend, the first leg's steps from
/// `start`.
async fn run_called_job<B: Backend>(
    spec: JobSpec,
    call: &BoundCall<'_>,
    job: &Job,
    start: usize,
    run: &mut Run<'_, B>,
) -> NeedResult {
    let workflow = &call.loaded.workflow;
    let Some(mut legs) = Legs::plan(&spec, run.emitter).await else {
        return failed();
    };
    while let Some((leg, leg_idx)) = legs.next(&spec, call, run.cancel) {
        let message = format!(
            "Running job `{}`{} of {}",
            leg.job_id,
            legs.label(leg_idx),
            call.loaded.file
        );
        run.emitter.log(None, &message).await;
        let offset = if leg_idx == 0 {
            start
        } else {
            run.next_idx += job.steps.len();
            run.next_idx - job.steps.len()
        };
        let label = legs.label(leg_idx);
        let names: Vec<String> = job
            .steps
            .iter()
            .map(|step| {
                let step_name = step.display_name();
                format!("{}{}{label}: {step_name}", run.prefix, leg.job_id)
            })
            .collect();
        if leg_idx > 0 {
            let planned = names
                .iter()
                .enumerate()
                .map(|(step_idx, name)| PlannedStep {
                    step_idx: offset + step_idx,
                    name: run.emitter.masker.mask(name),
                })
                .collect();
            run.emitter.send(JobEvent::StepsPlanned(planned)).await;
        }
        run.emitter.call = Some(CalledSteps { offset, names });
        let ran = run_started(&leg, workflow, job, run.backend, run.emitter, run.cancel).await;
        run.emitter.call = None;
        clean_up(run.backend).await;
        legs.add(match ran {
            Ok((result, outputs)) => NeedResult {
                result,
                outputs: outputs.unwrap_or_default(),
            },
            Err(error) => {
                run.emitter.log(None, &format!("::error::{error}")).await;
                failed()
            }
        });
    }
    legs.overall
}

/// The matrix legs of a called job, run one after another: `overall` gathers the worst leg's
/// result and the outputs of the last leg that set them.
struct Legs {
    combinations: std::iter::Enumerate<std::vec::IntoIter<IndexMap<String, serde_json::Value>>>,
    n_legs: usize,
    fail_fast: bool,
    overall: NeedResult,
}

impl Legs {
    /// The legs of `spec`'s job; `None` (the reason logged) when its matrix cannot be evaluated.
    async fn plan(spec: &JobSpec, emitter: &Emitter) -> Option<Legs> {
        match matrix_plan(spec) {
            Ok(plan) => Some(Legs {
                n_legs: plan.combinations.len(),
                combinations: plan.combinations.into_iter().enumerate(),
                fail_fast: plan.fail_fast,
                overall: skipped(),
            }),
            Err(message) => {
                emitter.log(None, &format!("::error::{message}")).await;
                None
            }
        }
    }

    /// The next leg to run and its index; the legs that cancellation or `fail-fast` rule out
    /// count as cancelled.
    fn next(
        &mut self,
        spec: &JobSpec,
        call: &BoundCall<'_>,
        cancel: &CancellationToken,
    ) -> Option<(JobSpec, usize)> {
        for (leg_idx, combination) in self.combinations.by_ref() {
            if cancel.is_cancelled()
                || (self.fail_fast && self.overall.result == Conclusion::Failure)
            {
                self.overall.result = worst(self.overall.result, Conclusion::Cancelled);
                continue;
            }
            let mut leg = child_spec(spec, call, &spec.job_id, spec.needs.clone());
            leg.matrix = Some(combination);
            leg.matrix_position = Some((leg_idx, self.n_legs));
            return Some((leg, leg_idx));
        }
        None
    }

    fn add(&mut self, result: NeedResult) {
        self.overall.result = if self.overall.result == Conclusion::Skipped {
            result.result
        } else {
            worst(self.overall.result, result.result)
        };
        self.overall.outputs.extend(
            result
                .outputs
                .into_iter()
                .filter(|(_, value)| !value.is_empty()),
        );
    }

    /// ` (2/3)` in a message about a leg of several.
    fn label(&self, leg_idx: usize) -> String {
        if self.n_legs > 1 {
            format!(" ({}/{})", leg_idx + 1, self.n_legs)
        } else {
            String::new()
        }
    }
}

fn worst(a: Conclusion, b: Conclusion) -> Conclusion {
    match (a, b) {
        (Conclusion::Failure, _) | (_, Conclusion::Failure) => Conclusion::Failure,
        (Conclusion::Cancelled, _) | (_, Conclusion::Cancelled) => Conclusion::Cancelled,
        (Conclusion::Skipped, other) | (other, Conclusion::Skipped) => other,
        _ => Conclusion::Success,
    }
}

fn result(result: Conclusion) -> NeedResult {
    NeedResult {
        result,
        outputs: IndexMap::new(),
    }
}

fn failed() -> NeedResult {
    result(Conclusion::Failure)
}

fn cancelled() -> NeedResult {
    result(Conclusion::Cancelled)
}

fn skipped() -> NeedResult {
    result(Conclusion::Skipped)
}

/// A called job's spec: the caller's contexts (its `github` too, as on GitHub), the call's
/// inputs and secrets, and the results of the called jobs it needs.
fn child_spec(
    spec: &JobSpec,
    call: &BoundCall<'_>,
    job_id: &str,
    needs: IndexMap<String, NeedResult>,
) -> JobSpec {
    let loaded = call.loaded;
    let mut child = spec.another_job(loaded.yaml.clone(), loaded.file.clone(), job_id.to_string());
    child.secrets = call.secrets.clone();
    child.inputs = call.inputs.clone();
    child.needs = needs;
    child
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_result_wins_and_skipped_counts_for_nothing() {
        use Conclusion::*;
        assert_eq!(worst(Success, Failure), Failure);
        assert_eq!(worst(Cancelled, Success), Cancelled);
        assert_eq!(worst(Skipped, Success), Success);
        assert_eq!(worst(Failure, Cancelled), Failure);
    }
}
