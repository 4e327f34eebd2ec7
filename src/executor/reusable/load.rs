//! Loading a called workflow and, depth first, every workflow its jobs call in turn, before the
//! first step runs: the caller's log announces every step of the whole tree at once. Bounded as
//! GitHub bounds it (levels, unique workflows); a workflow calling one of its callers is refused.
//! `./path` at any level is the task's own repository, as in Gitea's act.

use std::collections::BTreeSet;
use std::path::Path;

use indexmap::IndexMap;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::super::action::{Reference, RemoteRepository, fetch_repository, redact_url};
use super::super::model::{Job, Workflow};
use super::super::spec::JobSpec;

/// The most workflows connected in one chain, the task's own included: GitHub's limit.
pub const MAX_LEVELS: usize = 4;
/// The most different reusable workflows one task's job calls, nested ones included: GitHub's.
pub const MAX_UNIQUE: usize = 20;
/// The largest workflow file read.
const MAX_WORKFLOW_BYTES: u64 = 1 << 20;

/// A called workflow, loaded with every workflow its jobs call.
pub struct CalledWorkflow {
    /// The name its messages use: the caller's `uses:` value.
    pub file: String,
    pub yaml: String,
    pub workflow: Workflow,
    /// Job ids in an order that runs every job after the jobs it needs.
    pub order: Vec<String>,
    /// The workflows its jobs call, by the calling job's id.
    pub called: IndexMap<String, CalledWorkflow>,
}

/// What the loading of one tree has seen so far.
pub struct Walk<'a> {
    pub spec: &'a JobSpec,
    pub cancel: &'a CancellationToken,
    /// The files from the task's workflow down to the one being loaded.
    pub chain: Vec<String>,
    pub unique: BTreeSet<String>,
}

impl<'a> Walk<'a> {
    pub fn new(spec: &'a JobSpec, cancel: &'a CancellationToken) -> Self {
        Walk {
            spec,
            cancel,
            chain: vec![spec.workflow_file.clone()],
            unique: BTreeSet::new(),
        }
    }

    /// Loads the workflow `uses` names (the caller's `uses:` value, trimmed) and the ones it calls;
    /// an error says which `uses:` failed and why, `where_` being the calling job's position.
    pub async fn load(&mut self, uses: &str, where_: &str) -> Result<CalledWorkflow, String> {
        let file = uses.trim().to_string();
        let fail = |message: String| format!("{where_}: `uses: {file}`: {message}");
        if self.chain.contains(&file) {
            let mut cycle = self.chain.clone();
            cycle.push(file.clone());
            let start = cycle.iter().position(|name| *name == file).unwrap_or(0);
            return Err(fail(format!(
                "the workflows call each other: {}",
                cycle[start..].join(" calls ")
            )));
        }
        if self.chain.len() >= MAX_LEVELS {
            return Err(fail(format!(
                "more than {MAX_LEVELS} levels of workflows (the task's and {} reusable ones below it), GitHub's limit",
                MAX_LEVELS - 1
            )));
        }
        self.unique.insert(file.clone());
        if self.unique.len() > MAX_UNIQUE {
            return Err(fail(format!(
                "more than {MAX_UNIQUE} different reusable workflows called from one job, GitHub's limit"
            )));
        }
        let yaml = read(self.spec, &file, self.cancel).await.map_err(&fail)?;
        let workflow = Workflow::parse(&yaml).map_err(|error| format!("{file}:{error}"))?;
        if !workflow.on.iter().any(|event| event == "workflow_call") {
            return Err(fail(String::from(
                "not a reusable workflow: its `on` lacks `workflow_call`",
            )));
        }
        let order = needs_order(&workflow).map_err(|cycle| format!("{file}: {cycle}"))?;
        self.chain.push(file.clone());
        let mut called = IndexMap::new();
        for job_id in &order {
            let job = &workflow.jobs[job_id];
            let Some(nested) = &job.uses else { continue };
            let nested_where = format!("{file}:{}: job `{job_id}`", nested.at);
            // Boxed: the future would otherwise contain itself.
            let loaded = Box::pin(self.load(&nested.value, &nested_where)).await;
            match loaded {
                Ok(loaded) => {
                    called.insert(job_id.clone(), loaded);
                }
                Err(message) => {
                    self.chain.pop();
                    return Err(message);
                }
            }
        }
        self.chain.pop();
        Ok(CalledWorkflow {
            file,
            yaml,
            workflow,
            order,
            called,
        })
    }
}

/// The called workflow's text: from the local checkout, or fetched into the action cache.
async fn read(spec: &JobSpec, uses: &str, cancel: &CancellationToken) -> Result<String, String> {
    let settings = &spec.actions;
    let expected = "expected `./.gitea/workflows/<file>.yml` or `owner/repo/.gitea/workflows/<file>.yml@ref` (`.github` works too)";
    let reference = Reference::parse(uses, &settings.workflows_url)?;
    let (root, path) = match reference {
        Reference::Docker(_) => return Err(String::from(expected)),
        Reference::Local(path) => {
            check_workflow_path(&path, expected)?;
            match &settings.repository_dir {
                Some(dir) => (dir.clone(), path),
                None => {
                    let text = |key: &str| {
                        spec.github
                            .get(key)
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    let repository = text("repository");
                    let own = RemoteRepository {
                        url: format!(
                            "{}/{repository}",
                            settings.workflows_url.trim_end_matches('/')
                        ),
                        repository,
                        path: path.clone(),
                        git_ref: text("sha"),
                    };
                    (fetch(&own, spec, cancel).await?, path)
                }
            }
        }
        Reference::Remote(remote) => {
            check_workflow_path(&remote.path, expected)?;
            (fetch(&remote, spec, cancel).await?, remote.path)
        }
    };
    read_bounded(&root.join(&path)).await
}

async fn fetch(
    remote: &RemoteRepository,
    spec: &JobSpec,
    cancel: &CancellationToken,
) -> Result<std::path::PathBuf, String> {
    // One checkout per repository and ref, whichever of its workflows is called.
    let key = format!("{}@{}", remote.url, remote.git_ref);
    fetch_repository(&key, remote, &spec.actions, cancel)
        .await
        .map_err(|message| format!("cannot fetch {}: {message}", redact_url(&remote.url)))
}

fn check_workflow_path(path: &str, expected: &str) -> Result<(), String> {
    let in_workflows = [".gitea/workflows/", ".github/workflows/"]
        .iter()
        .any(|dir| {
            path.strip_prefix(dir)
                .is_some_and(|name| !name.contains('/'))
        });
    let yaml = path.ends_with(".yml") || path.ends_with(".yaml");
    if in_workflows && yaml {
        Ok(())
    } else {
        Err(String::from(expected))
    }
}

async fn read_bounded(path: &Path) -> Result<String, String> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if metadata.len() > MAX_WORKFLOW_BYTES {
        return Err(format!(
            "{} is larger than {MAX_WORKFLOW_BYTES} bytes",
            path.display()
        ));
    }
    tokio::fs::read_to_string(path)
        .await
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// The workflow's job ids, each after the jobs it needs; an error names a cycle's jobs.
fn needs_order(workflow: &Workflow) -> Result<Vec<String>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut waiting: Vec<&Job> = workflow.jobs.values().collect();
    while !waiting.is_empty() {
        let (ready, still): (Vec<&Job>, Vec<&Job>) = waiting
            .into_iter()
            .partition(|job| job.needs.iter().all(|need| order.contains(&need.value)));
        if ready.is_empty() {
            let ids: Vec<&str> = still.iter().map(|job| job.id.as_str()).collect();
            return Err(format!("the jobs {} need each other", ids.join(", ")));
        }
        order.extend(ready.iter().map(|job| job.id.clone()));
        waiting = still;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository whose workflow `w<i>.yml` calls each of `calls[i]` from a job of its own.
    fn repository(calls: &[&[usize]]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".gitea/workflows");
        std::fs::create_dir_all(&dir).unwrap();
        for (idx, called) in calls.iter().enumerate() {
            let mut yaml =
                String::from("on: workflow_call\njobs:\n  own:\n    steps: [{run: x}]\n");
            for callee in called.iter() {
                yaml.push_str(&format!(
                    "  call{callee}:\n    uses: ./.gitea/workflows/w{callee}.yml\n"
                ));
            }
            std::fs::write(dir.join(format!("w{idx}.yml")), yaml).unwrap();
        }
        root
    }

    async fn load_first(calls: &[&[usize]]) -> Result<CalledWorkflow, String> {
        let root = repository(calls);
        let mut spec = JobSpec::new(String::new(), String::from("top.yml"), String::from("job"));
        spec.actions.repository_dir = Some(root.path().to_path_buf());
        let cancel = CancellationToken::new();
        Walk::new(&spec, &cancel)
            .load("./.gitea/workflows/w0.yml", "top.yml:3:5: job `job`")
            .await
    }

    #[tokio::test]
    async fn four_levels_connect_and_a_fifth_is_refused_naming_the_bound() {
        let loaded = load_first(&[&[1], &[2], &[]]).await.unwrap();
        let level_3 = &loaded.called["call1"].called["call2"];
        assert_eq!(level_3.file, "./.gitea/workflows/w2.yml");
        assert!(level_3.called.is_empty());

        let error = load_first(&[&[1], &[2], &[3], &[]]).await.err().unwrap();
        assert!(
            error.starts_with("./.gitea/workflows/w2.yml:6:11: job `call3`: `uses: ./.gitea/workflows/w3.yml`: more than 4 levels"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_workflow_calling_one_of_its_callers_is_refused_naming_the_loop() {
        let error = load_first(&[&[1], &[2], &[1]]).await.err().unwrap();
        assert!(
            error.ends_with("the workflows call each other: ./.gitea/workflows/w1.yml calls ./.gitea/workflows/w2.yml calls ./.gitea/workflows/w1.yml"),
            "{error}"
        );
        // The same workflow called twice side by side is no loop.
        let loaded = load_first(&[&[1, 2], &[2], &[]]).await.unwrap();
        assert_eq!(loaded.called.len(), 2);
    }

    #[tokio::test]
    async fn more_than_twenty_different_workflows_are_refused() {
        let twenty: Vec<usize> = (1..=MAX_UNIQUE).collect();
        let mut calls: Vec<&[usize]> = vec![&twenty[..MAX_UNIQUE - 1]];
        calls.extend(std::iter::repeat_n(&[][..], MAX_UNIQUE));
        assert!(load_first(&calls).await.is_ok(), "20 in all");
        calls[0] = &twenty;
        let error = load_first(&calls).await.err().unwrap();
        assert!(
            error.contains("more than 20 different reusable workflows"),
            "{error}"
        );
    }

    #[test]
    fn jobs_run_after_the_jobs_they_need() {
        let workflow = Workflow::parse(
            "on: workflow_call\njobs:\n  c:\n    needs: [a, b]\n    steps: [{run: x}]\n  b:\n    needs: a\n    steps: [{run: x}]\n  a:\n    steps: [{run: x}]\n",
        )
        .unwrap();
        assert_eq!(needs_order(&workflow).unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn only_files_in_a_workflows_directory_are_called() {
        for good in [".gitea/workflows/build.yml", ".github/workflows/x.yaml"] {
            assert!(check_workflow_path(good, "e").is_ok(), "{good}");
        }
        for bad in [
            ".gitea/workflows/sub/x.yml",
            "ci/x.yml",
            ".gitea/workflows/x.txt",
            ".gitea/x.yml",
        ] {
            assert!(check_workflow_path(bad, "e").is_err(), "{bad}");
        }
    }
}
