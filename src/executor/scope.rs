//! Evaluating workflow fields: the contexts an expression sees, and errors that name the file, line
//! and column of the field (plus the position inside the expression). Also the up-front check that
//! every expression of a job parses, so a typo fails the job before anything runs.

use std::fmt;

use indexmap::IndexMap;

use super::expr::{self, EvalContext, ExprError, JobStatus, Value};
use super::model::{Container, Job, Located, Pos, Step, Workflow};

/// An evaluation or validation failure, already worded for the job log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError(pub String);

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `hashFiles` as the job's backend computes it; `Send` so a job can move between threads.
pub type HashFiles = dyn Fn(&[String]) -> Result<String, String> + Send + Sync;

/// The contexts of a running job and the status the status functions report.
pub struct Scope {
    pub contexts: IndexMap<String, Value>,
    pub status: JobStatus,
    file: String,
    hash_files: Option<Box<HashFiles>>,
}

impl Scope {
    pub fn new(file: &str) -> Scope {
        Scope {
            contexts: IndexMap::new(),
            status: JobStatus::Success,
            file: file.to_string(),
            hash_files: None,
        }
    }

    pub fn set_hash_files(&mut self, hash_files: Box<HashFiles>) {
        self.hash_files = Some(hash_files);
    }

    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        self.contexts.insert(name.to_string(), value.into());
    }

    fn ctx(&self) -> EvalContext<'_> {
        EvalContext {
            contexts: &self.contexts,
            status: self.status,
            hash_files: self
                .hash_files
                .as_deref()
                .map(|hash_files| hash_files as &expr::HashFilesFn),
        }
    }

    fn fail(&self, field: &Located<String>, what: &str, error: &ExprError) -> FieldError {
        FieldError(format!(
            "{}:{}: {what}: {}",
            self.file,
            locate(field, error),
            error.message
        ))
    }

    /// A string field with `${{ }}` replaced.
    pub fn string(&self, field: &Located<String>, what: &str) -> Result<String, FieldError> {
        if !expr::contains_expression(&field.value) {
            return Ok(field.value.clone());
        }
        expr::interpolate(&field.value, &self.ctx()).map_err(|error| self.fail(field, what, &error))
    }

    /// A field whose whole value may be one expression keeping its type.
    pub fn value(&self, field: &Located<String>, what: &str) -> Result<Value, FieldError> {
        expr::interpolate_value(&field.value, &self.ctx())
            .map_err(|error| self.fail(field, what, &error))
    }

    /// An `if:`; absent means `success()`.
    pub fn condition(
        &self,
        field: Option<&Located<String>>,
        what: &str,
    ) -> Result<bool, FieldError> {
        match field {
            None => Ok(self.status == JobStatus::Success),
            Some(field) => expr::evaluate_if(&field.value, &self.ctx())
                .map_err(|error| self.fail(field, what, &error)),
        }
    }

    /// Whether an `if:` calls a status function (an absent one does not).
    pub fn condition_uses_status_function(
        &self,
        field: Option<&Located<String>>,
        what: &str,
    ) -> Result<bool, FieldError> {
        match field {
            None => Ok(false),
            Some(field) => expr::if_uses_status_function(&field.value)
                .map_err(|error| self.fail(field, what, &error)),
        }
    }

    /// A `post-if`, evaluated as written (its implied status check is `always()`).
    pub fn post_condition(&self, field: &Located<String>, what: &str) -> Result<bool, FieldError> {
        expr::evaluate_post_if(&field.value, &self.ctx())
            .map_err(|error| self.fail(field, what, &error))
    }

    /// A boolean field such as `continue-on-error` (`true`/`false` or an expression).
    pub fn boolean(&self, field: Option<&Located<String>>, what: &str) -> Result<bool, FieldError> {
        let Some(field) = field else { return Ok(false) };
        Ok(match self.value(field, what)? {
            Value::Bool(value) => value,
            Value::String(text) => match text.trim() {
                "true" => true,
                "false" | "" => false,
                other => {
                    return Err(FieldError(format!(
                        "{}:{}: {what}: expected true or false, found `{other}`",
                        self.file, field.at
                    )));
                }
            },
            other => other.is_truthy(),
        })
    }

    /// A number of minutes (`timeout-minutes`); must be positive.
    pub fn minutes(
        &self,
        field: Option<&Located<String>>,
        what: &str,
    ) -> Result<Option<f64>, FieldError> {
        let Some(field) = field else { return Ok(None) };
        let number = match self.value(field, what)? {
            Value::Number(number) => Some(number),
            Value::String(text) => text.trim().parse::<f64>().ok(),
            _ => None,
        };
        match number {
            Some(number) if number.is_finite() && number > 0.0 => Ok(Some(number)),
            _ => Err(FieldError(format!(
                "{}:{}: {what}: expected a positive number of minutes, found `{}`",
                self.file, field.at, field.value
            ))),
        }
    }
}

/// The file position of an expression error: the field's position, moved to the culprit when
/// the field is a single line (block scalars start on the line after their key).
fn locate(field: &Located<String>, error: &ExprError) -> Pos {
    let single_line = !field.value.trim_end().contains('\n');
    if single_line {
        Pos {
            line: field.at.line,
            column: field.at.column + u32::try_from(error.column.saturating_sub(1)).unwrap_or(0),
        }
    } else {
        Pos {
            line: field.at.line + u32::try_from(error.line).unwrap_or(0),
            column: u32::try_from(error.column).unwrap_or(0),
        }
    }
}

/// Checks that every expression of `job` (and the workflow parts it uses) parses.
pub fn validate(file: &str, workflow: &Workflow, job: &Job) -> Result<(), FieldError> {
    let mut fields: Vec<(&Located<String>, bool, &str)> = Vec::new();
    for field in workflow.env.values().chain(job.env.values()) {
        fields.push((field, false, "env"));
    }
    for defaults in [&workflow.defaults, &job.defaults] {
        fields.extend(
            defaults
                .shell
                .iter()
                .map(|f| (f, false, "defaults.run.shell")),
        );
        fields.extend(
            defaults
                .working_directory
                .iter()
                .map(|f| (f, false, "defaults.run.working-directory")),
        );
    }
    fields.extend(job.name.iter().map(|f| (f, false, "name")));
    fields.extend(job.runs_on.iter().map(|f| (f, false, "runs-on")));
    fields.extend(job.condition.iter().map(|f| (f, true, "if")));
    fields.extend(job.outputs.values().map(|f| (f, false, "outputs")));
    fields.extend(
        job.timeout_minutes
            .iter()
            .map(|f| (f, false, "timeout-minutes")),
    );
    fields.extend(
        job.continue_on_error
            .iter()
            .map(|f| (f, false, "continue-on-error")),
    );
    for container in job.container.iter().chain(job.services.values()) {
        container_fields(container, &mut fields);
    }
    for step in &job.steps {
        step_fields(step, &mut fields);
    }
    for (field, is_condition, what) in fields {
        check(file, field, is_condition, what)?;
    }
    Ok(())
}

fn container_fields<'a>(
    container: &'a Container,
    fields: &mut Vec<(&'a Located<String>, bool, &'static str)>,
) {
    fields.push((&container.image, false, "image"));
    fields.extend(container.env.values().map(|f| (f, false, "env")));
    fields.extend(container.volumes.iter().map(|f| (f, false, "volumes")));
    fields.extend(container.options.iter().map(|f| (f, false, "options")));
    fields.extend(container.ports.iter().map(|f| (f, false, "ports")));
    fields.extend(container.cmd.iter().map(|f| (f, false, "cmd")));
    if let Some(credentials) = &container.credentials {
        fields.push((&credentials.username, false, "credentials.username"));
        fields.push((&credentials.password, false, "credentials.password"));
    }
}

fn step_fields<'a>(step: &'a Step, fields: &mut Vec<(&'a Located<String>, bool, &'static str)>) {
    fields.extend(step.name.iter().map(|f| (f, false, "name")));
    fields.extend(step.condition.iter().map(|f| (f, true, "if")));
    fields.extend(step.run.iter().map(|f| (f, false, "run")));
    fields.extend(step.uses.iter().map(|f| (f, false, "uses")));
    fields.extend(step.with.values().map(|f| (f, false, "with")));
    fields.extend(step.env.values().map(|f| (f, false, "env")));
    fields.extend(step.shell.iter().map(|f| (f, false, "shell")));
    fields.extend(
        step.working_directory
            .iter()
            .map(|f| (f, false, "working-directory")),
    );
    fields.extend(
        step.continue_on_error
            .iter()
            .map(|f| (f, false, "continue-on-error")),
    );
    fields.extend(
        step.timeout_minutes
            .iter()
            .map(|f| (f, false, "timeout-minutes")),
    );
}

fn check(
    file: &str,
    field: &Located<String>,
    is_condition: bool,
    what: &str,
) -> Result<(), FieldError> {
    let fail = |error: ExprError| {
        FieldError(format!(
            "{file}:{}: {what}: {}",
            locate(field, &error),
            error.message
        ))
    };
    if is_condition && !expr::contains_expression(&field.value) {
        let trimmed = field.value.trim();
        if trimmed.is_empty() {
            return Ok(());
        }
        let offset = field.value.len() - field.value.trim_start().len();
        return expr::parse(trimmed).map(drop).map_err(|error| {
            let error = error.within(&field.value, offset);
            fail(error)
        });
    }
    for embedded in expr::template::find_embedded(&field.value).map_err(fail)? {
        let inner = &field.value[embedded.inner.start..embedded.inner.end];
        expr::parse(inner)
            .map_err(|error| fail(error.within(&field.value, embedded.inner.start)))?;
    }
    Ok(())
}

impl Scope {
    /// The file name used in messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// A context as JSON (`Null` when unset).
    pub fn context_json(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        match self.contexts.get(name).map(Value::to_json) {
            Some(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}
