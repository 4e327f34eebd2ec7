//! The workflow model: a GitHub Actions workflow as the executor needs it, every value that may hold an
//! expression kept as written (`Located<String>`) with its position, so an evaluation error names a line
//! and column. Parsing is strict: unknown keys and wrong types are errors; keys GitHub accepts but the
//! runner ignores (`permissions`, `concurrency`, ...) are accepted.
//! May use: `serde-saphyr` (through `yaml`), `serde_json`. Never: the rest of the executor.

pub mod action;
mod convert;
pub mod matrix;
pub mod trigger_inputs;
pub mod workflow_call;
pub mod yaml;

use std::fmt;

use indexmap::IndexMap;

pub use workflow_call::{CallSecrets, WorkflowCall};
pub use yaml::Pos;

/// A value with the position it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub at: Pos,
}

/// An env block (`env:` at workflow, job, step or container level), in written order.
pub type EnvMap = IndexMap<String, Located<String>>;

/// Why a workflow was refused; Display is `line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ModelError {
    pub at: Pos,
    pub message: String,
}

/// A parsed workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub name: Option<String>,
    /// Event names the workflow triggers on (`on:` as a string, list or map).
    pub on: Vec<String>,
    /// The inputs `workflow_dispatch` and `workflow_call` declare, by event.
    pub trigger_inputs: trigger_inputs::TriggerInputs,
    pub env: EnvMap,
    pub defaults: RunDefaults,
    /// Jobs in written order, by id.
    pub jobs: IndexMap<String, Job>,
    /// `on.workflow_call` with its inputs, secrets and outputs, when `on` is a mapping holding it.
    pub workflow_call: Option<WorkflowCall>,
}

/// `defaults.run`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunDefaults {
    pub shell: Option<Located<String>>,
    pub working_directory: Option<Located<String>>,
}

/// One job of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub at: Pos,
    pub name: Option<Located<String>>,
    /// Labels from `runs-on` (string, list, or `{group, labels}`), unevaluated.
    pub runs_on: Vec<Located<String>>,
    pub container: Option<Container>,
    /// `services:` in written order.
    pub services: IndexMap<String, Container>,
    pub env: EnvMap,
    pub defaults: RunDefaults,
    pub condition: Option<Located<String>>,
    pub steps: Vec<Step>,
    pub outputs: IndexMap<String, Located<String>>,
    pub needs: Vec<Located<String>>,
    pub strategy: Option<Strategy>,
    /// A number or an expression, as written.
    pub timeout_minutes: Option<Located<String>>,
    /// A boolean or an expression, as written.
    pub continue_on_error: Option<Located<String>>,
    /// A job-level `uses:`: the reusable workflow the job runs instead of steps.
    pub uses: Option<Located<String>>,
    /// `with:` of a job with `uses:`: the called workflow's inputs, as written.
    pub with: IndexMap<String, Located<String>>,
    /// `secrets:` of a job with `uses:`.
    pub secrets: Option<CallSecrets>,
}

/// `container:` of a job, or one entry of `services:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub at: Pos,
    pub image: Located<String>,
    pub env: EnvMap,
    pub volumes: Vec<Located<String>>,
    pub options: Option<Located<String>>,
    pub ports: Vec<Located<String>>,
    pub credentials: Option<ContainerCredentials>,
    /// Gitea's `cmd:` for services.
    pub cmd: Vec<Located<String>>,
}

/// `credentials: {username, password}` of a container, as written (evaluated into the backend's
/// `RegistryCredentials`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerCredentials {
    pub username: Located<String>,
    pub password: Located<String>,
}

/// `strategy:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub matrix: Option<Matrix>,
    pub fail_fast: Option<Located<String>>,
    pub max_parallel: Option<Located<String>>,
}

/// `strategy.matrix`.
#[derive(Debug, Clone, PartialEq)]
pub enum Matrix {
    /// The whole matrix is one expression (`${{ fromJSON(...) }}`).
    Expression(Located<String>),
    Explicit(ExplicitMatrix),
}

/// A matrix written out as dimensions plus `include` and `exclude`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplicitMatrix {
    pub at: Pos,
    /// Each dimension: its values, or an expression producing them.
    pub dimensions: IndexMap<String, Dimension>,
    pub include: Vec<IndexMap<String, serde_json::Value>>,
    pub exclude: Vec<IndexMap<String, serde_json::Value>>,
}

/// One matrix dimension.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    Values(Vec<serde_json::Value>),
    Expression(Located<String>),
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: Pos,
    pub id: Option<String>,
    pub name: Option<Located<String>>,
    pub condition: Option<Located<String>>,
    pub run: Option<Located<String>>,
    pub uses: Option<Located<String>>,
    pub with: IndexMap<String, Located<String>>,
    pub env: EnvMap,
    pub shell: Option<Located<String>>,
    pub working_directory: Option<Located<String>>,
    pub continue_on_error: Option<Located<String>>,
    pub timeout_minutes: Option<Located<String>>,
}

impl Workflow {
    /// Parses a workflow file. Errors name the line and column of the offending node.
    pub fn parse(source: &str) -> Result<Workflow, ModelError> {
        let root = yaml::parse(source).map_err(|error| ModelError {
            at: error.at,
            message: error.message,
        })?;
        convert::workflow(&root)
    }
}

impl Step {
    /// The name shown for the step: `name:` as written, else derived from `run:` or `uses:`.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.value.clone();
        }
        if let Some(run) = &self.run {
            let first_line = run
                .value
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("");
            return format!("Run {}", first_line.trim());
        }
        if let Some(uses) = &self.uses {
            return format!("Run {}", uses.value);
        }
        String::from("Run step")
    }
}

impl fmt::Display for Located<String> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}
