//! The local planner `act_runner exec` uses (Gitea's server does this for the daemon): which jobs
//! run for an event or a `-j` choice, in `needs` order as stages. Matrix combinations are expanded
//! per job when its needs are done (`spec::matrix_plan`), as a matrix may read their outputs.

use std::collections::BTreeSet;

use indexmap::IndexMap;

use super::model::Workflow;

/// Jobs of one workflow in stages: every job's needs are in earlier stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages(pub Vec<Vec<String>>);

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("there is no job `{0}`")]
    UnknownJob(String),
    #[error("the jobs {0} need each other in a cycle")]
    Cycle(String),
}

/// The stages for `jobs` of `workflow` and everything they need, transitively.
pub fn stages(workflow: &Workflow, jobs: &[String]) -> Result<Stages, PlanError> {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<String> = jobs.to_vec();
    while let Some(job_id) = queue.pop() {
        let job = workflow
            .jobs
            .get(&job_id)
            .ok_or_else(|| PlanError::UnknownJob(job_id.clone()))?;
        if wanted.insert(job_id.clone()) {
            queue.extend(job.needs.iter().map(|need| need.value.clone()));
        }
    }
    // Kahn's algorithm, keeping the workflow's job order within a stage.
    let mut remaining: IndexMap<&str, Vec<&str>> = workflow
        .jobs
        .iter()
        .filter(|(id, _)| wanted.contains(*id))
        .map(|(id, job)| {
            (
                id.as_str(),
                job.needs.iter().map(|need| need.value.as_str()).collect(),
            )
        })
        .collect();
    let mut stages = Vec::new();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, needs)| needs.iter().all(|need| done.contains(need)))
            .map(|(id, _)| *id)
            .collect();
        if ready.is_empty() {
            let names: Vec<&str> = remaining.keys().copied().collect();
            return Err(PlanError::Cycle(names.join(", ")));
        }
        for id in &ready {
            remaining.shift_remove(id);
            done.insert(id);
        }
        stages.push(ready.into_iter().map(str::to_string).collect());
    }
    Ok(Stages(stages))
}

/// The event to plan for when none is given: the only one the workflows share, else `push`.
pub fn default_event<'a>(workflows: impl IntoIterator<Item = &'a Workflow>) -> String {
    let events: BTreeSet<&str> = workflows
        .into_iter()
        .flat_map(|workflow| workflow.on.iter().map(String::as_str))
        .collect();
    if events.len() == 1 {
        events.into_iter().next().unwrap_or("push").to_string()
    } else {
        String::from("push")
    }
}

/// `exec --detect-event`: the first event of the first workflow that has one, else `push`.
pub fn first_event<'a>(workflows: impl IntoIterator<Item = &'a Workflow>) -> String {
    workflows
        .into_iter()
        .find_map(|workflow| workflow.on.first().cloned())
        .unwrap_or_else(|| String::from("push"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(source: &str) -> Workflow {
        Workflow::parse(source).unwrap()
    }

    #[test]
    fn needs_order_becomes_stages() {
        let workflow = workflow(
            "on: push\njobs:\n  c: {needs: [a, b], steps: [{run: x}]}\n  a: {steps: [{run: x}]}\n  b: {needs: a, steps: [{run: x}]}\n",
        );
        let all: Vec<String> = workflow.jobs.keys().cloned().collect();
        assert_eq!(
            stages(&workflow, &all).unwrap(),
            Stages(vec![vec!["a".into()], vec!["b".into()], vec!["c".into()]])
        );
    }

    #[test]
    fn one_job_brings_its_needs() {
        let workflow = workflow(
            "on: push\njobs:\n  a: {steps: [{run: x}]}\n  b: {needs: a, steps: [{run: x}]}\n  z: {steps: [{run: x}]}\n",
        );
        assert_eq!(
            stages(&workflow, &["b".into()]).unwrap(),
            Stages(vec![vec!["a".into()], vec!["b".into()]])
        );
    }

    #[test]
    fn cycles_are_reported() {
        let workflow = workflow(
            "on: push\njobs:\n  a: {needs: b, steps: [{run: x}]}\n  b: {needs: a, steps: [{run: x}]}\n",
        );
        assert!(matches!(
            stages(&workflow, &["a".into()]),
            Err(PlanError::Cycle(_))
        ));
    }

    #[test]
    fn single_shared_event_is_the_default() {
        let workflows = [workflow(
            "on: workflow_dispatch\njobs:\n  a: {steps: [{run: x}]}\n",
        )];
        assert_eq!(default_event(&workflows), "workflow_dispatch");
    }
}
