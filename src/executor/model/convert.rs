//! Builds the workflow model from a located YAML tree, refusing unknown keys and wrong types with
//! the position of the offending node.

use indexmap::IndexMap;

use super::yaml::{Node, NodeKind, Pos};
use super::{
    Container, ContainerCredentials, Dimension, EnvMap, ExplicitMatrix, Job, Located, Matrix,
    ModelError, RunDefaults, Step, Strategy, Workflow,
};

type Result<T> = std::result::Result<T, ModelError>;

pub(super) fn error(at: Pos, message: impl Into<String>) -> ModelError {
    ModelError {
        at,
        message: message.into(),
    }
}

/// The entries of a mapping node, taken one by one; whatever is left is an unknown key.
pub(super) struct Fields<'a> {
    what: &'static str,
    entries: Vec<(String, &'a Node, &'a Node)>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(node: &'a Node, what: &'static str) -> Result<Fields<'a>> {
        let NodeKind::Map(entries) = &node.kind else {
            return Err(error(
                node.at,
                format!("{what}: expected a mapping, found {}", node.kind_name()),
            ));
        };
        let mut fields = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(name) = key.scalar_text() else {
                return Err(error(key.at, format!("{what}: keys must be strings")));
            };
            fields.push((name, key, value));
        }
        Ok(Fields {
            what,
            entries: fields,
        })
    }

    pub(super) fn take(&mut self, name: &str) -> Option<&'a Node> {
        let idx = self.entries.iter().position(|(key, _, _)| key == name)?;
        Some(self.entries.remove(idx).2)
    }

    /// Fails on the first key that is neither taken nor in `ignored`.
    pub(super) fn finish(self, ignored: &[&str]) -> Result<()> {
        for (name, key, _) in self.entries {
            if !ignored.contains(&name.as_str()) {
                return Err(error(
                    key.at,
                    format!("{}: unknown key `{name}`", self.what),
                ));
            }
        }
        Ok(())
    }
}

pub(super) fn string(node: &Node, what: &str) -> Result<Located<String>> {
    match node.scalar_text() {
        Some(value) => Ok(Located { value, at: node.at }),
        None => Err(error(
            node.at,
            format!("{what}: expected a string, found {}", node.kind_name()),
        )),
    }
}

pub(super) fn opt_string(node: Option<&Node>, what: &str) -> Result<Option<Located<String>>> {
    match node {
        None => Ok(None),
        Some(node) if node.kind == NodeKind::Null => Ok(None),
        Some(node) => string(node, what).map(Some),
    }
}

/// A string or a list of strings.
pub(super) fn string_list(node: &Node, what: &str) -> Result<Vec<Located<String>>> {
    match &node.kind {
        NodeKind::Null => Ok(Vec::new()),
        NodeKind::Seq(items) => items.iter().map(|item| string(item, what)).collect(),
        _ => Ok(vec![string(node, what)?]),
    }
}

pub(super) fn env_map(node: Option<&Node>, what: &str) -> Result<EnvMap> {
    let Some(node) = node else {
        return Ok(EnvMap::new());
    };
    match &node.kind {
        NodeKind::Null => Ok(EnvMap::new()),
        NodeKind::Map(entries) => {
            let mut env = EnvMap::new();
            for (key, value) in entries {
                let key = string(key, what)?;
                let value = match value.kind {
                    NodeKind::Null => Located {
                        value: String::new(),
                        at: value.at,
                    },
                    _ => string(value, &format!("{what}.{}", key.value))?,
                };
                env.insert(key.value, value);
            }
            Ok(env)
        }
        // `env: ${{ fromJSON(...) }}` is rare and unsupported here; say so rather than guess.
        _ => Err(error(
            node.at,
            format!("{what}: expected a mapping, found {}", node.kind_name()),
        )),
    }
}

pub(super) fn workflow(root: &Node) -> Result<Workflow> {
    let mut fields = Fields::new(root, "workflow")?;
    let name = opt_string(fields.take("name"), "name")?.map(|name| name.value);
    let on_node = fields.take("on");
    let (on, trigger_inputs) = match on_node {
        None => (Vec::new(), Default::default()),
        Some(node) => (events(node)?, super::trigger_inputs::trigger_inputs(node)),
    };
    let workflow_call = match on_node {
        None => None,
        Some(node) => super::workflow_call::workflow_call(node)?,
    };
    let env = env_map(fields.take("env"), "env")?;
    let defaults = defaults(fields.take("defaults"), "defaults")?;
    let jobs_node = fields
        .take("jobs")
        .ok_or_else(|| error(root.at, "workflow: missing key `jobs`"))?;
    fields.finish(&["run-name", "permissions", "concurrency"])?;

    let NodeKind::Map(entries) = &jobs_node.kind else {
        return Err(error(
            jobs_node.at,
            format!("jobs: expected a mapping, found {}", jobs_node.kind_name()),
        ));
    };
    let mut jobs = IndexMap::new();
    for (key, value) in entries {
        let id = string(key, "jobs")?;
        if id.value.is_empty() {
            return Err(error(key.at, "jobs: a job id must not be empty"));
        }
        jobs.insert(id.value.clone(), job(&id.value, value)?);
    }
    if jobs.is_empty() {
        return Err(error(jobs_node.at, "jobs: the workflow has no jobs"));
    }
    for job in jobs.values() {
        for need in &job.needs {
            if !jobs.contains_key(&need.value) {
                return Err(error(
                    need.at,
                    format!("job `{}`: needs unknown job `{}`", job.id, need.value),
                ));
            }
        }
    }
    Ok(Workflow {
        name,
        on,
        trigger_inputs,
        env,
        defaults,
        jobs,
        workflow_call,
    })
}

fn events(node: &Node) -> Result<Vec<String>> {
    match &node.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(key, _)| string(key, "on").map(|event| event.value))
            .collect(),
        _ => Ok(string_list(node, "on")?
            .into_iter()
            .map(|event| event.value)
            .collect()),
    }
}

fn defaults(node: Option<&Node>, what: &'static str) -> Result<RunDefaults> {
    let Some(node) = node else {
        return Ok(RunDefaults::default());
    };
    let mut fields = Fields::new(node, what)?;
    let run = fields.take("run");
    fields.finish(&[])?;
    let Some(run) = run else {
        return Ok(RunDefaults::default());
    };
    let mut fields = Fields::new(run, "defaults.run")?;
    let shell = opt_string(fields.take("shell"), "defaults.run.shell")?;
    let working_directory = opt_string(
        fields.take("working-directory"),
        "defaults.run.working-directory",
    )?;
    fields.finish(&[])?;
    Ok(RunDefaults {
        shell,
        working_directory,
    })
}

fn job(id: &str, node: &Node) -> Result<Job> {
    let mut fields = Fields::new(node, "job")?;
    let name = opt_string(fields.take("name"), "name")?;
    let runs_on = match fields.take("runs-on") {
        None => Vec::new(),
        Some(node) => runs_on(node)?,
    };
    let job_container = match fields.take("container") {
        None => None,
        Some(node) if node.kind == NodeKind::Null => None,
        Some(node) => Some(container(node, "container")?),
    };
    let mut services = IndexMap::new();
    if let Some(node) = fields.take("services") {
        if let NodeKind::Map(entries) = &node.kind {
            for (key, value) in entries {
                let service_id = string(key, "services")?;
                services.insert(service_id.value, container(value, "services")?);
            }
        } else if node.kind != NodeKind::Null {
            return Err(error(
                node.at,
                format!("services: expected a mapping, found {}", node.kind_name()),
            ));
        }
    }
    let env = env_map(fields.take("env"), "env")?;
    let defaults = defaults(fields.take("defaults"), "defaults")?;
    let condition = opt_string(fields.take("if"), "if")?;
    let uses = opt_string(fields.take("uses"), "uses")?;
    let steps = match fields.take("steps") {
        None => Vec::new(),
        Some(node) => match &node.kind {
            NodeKind::Seq(items) => items.iter().map(step).collect::<Result<Vec<_>>>()?,
            NodeKind::Null => Vec::new(),
            _ => {
                return Err(error(
                    node.at,
                    format!("steps: expected a sequence, found {}", node.kind_name()),
                ));
            }
        },
    };
    if steps.is_empty() && uses.is_none() {
        return Err(error(node.at, format!("job `{id}`: has no steps")));
    }
    if let Some(uses) = &uses
        && !steps.is_empty()
    {
        return Err(error(
            uses.at,
            format!("job `{id}`: `uses` (a reusable workflow) cannot be used with `steps`"),
        ));
    }
    let with = env_map(fields.take("with"), "with")?;
    let secrets = super::workflow_call::call_secrets(fields.take("secrets"))?;
    let outputs = env_map(fields.take("outputs"), "outputs")?;
    let needs = match fields.take("needs") {
        None => Vec::new(),
        Some(node) => string_list(node, "needs")?,
    };
    let strategy = match fields.take("strategy") {
        None => None,
        Some(node) => Some(strategy(node)?),
    };
    let timeout_minutes = opt_string(fields.take("timeout-minutes"), "timeout-minutes")?;
    let continue_on_error = opt_string(fields.take("continue-on-error"), "continue-on-error")?;
    fields.finish(&["permissions", "concurrency", "environment"])?;
    Ok(Job {
        id: id.to_string(),
        at: node.at,
        name,
        runs_on,
        container: job_container,
        services,
        env,
        defaults,
        condition,
        steps,
        outputs,
        needs,
        strategy,
        timeout_minutes,
        continue_on_error,
        uses,
        with,
        secrets,
    })
}

fn runs_on(node: &Node) -> Result<Vec<Located<String>>> {
    if let NodeKind::Map(_) = node.kind {
        let mut fields = Fields::new(node, "runs-on")?;
        let group = opt_string(fields.take("group"), "runs-on.group")?;
        let labels = match fields.take("labels") {
            None => Vec::new(),
            Some(node) => string_list(node, "runs-on.labels")?,
        };
        fields.finish(&[])?;
        return Ok(group.into_iter().chain(labels).collect());
    }
    string_list(node, "runs-on")
}

fn container(node: &Node, what: &'static str) -> Result<Container> {
    if let Some(image) = node.scalar_text() {
        return Ok(Container {
            at: node.at,
            image: Located {
                value: image,
                at: node.at,
            },
            env: EnvMap::new(),
            volumes: Vec::new(),
            options: None,
            ports: Vec::new(),
            credentials: None,
            cmd: Vec::new(),
        });
    }
    let mut fields = Fields::new(node, what)?;
    let image = opt_string(fields.take("image"), "image")?.unwrap_or(Located {
        value: String::new(),
        at: node.at,
    });
    let env = env_map(fields.take("env"), "env")?;
    let volumes = match fields.take("volumes") {
        None => Vec::new(),
        Some(node) => string_list(node, "volumes")?,
    };
    let options = opt_string(fields.take("options"), "options")?;
    let ports = match fields.take("ports") {
        None => Vec::new(),
        Some(node) => string_list(node, "ports")?,
    };
    let credentials = match fields.take("credentials") {
        None => None,
        Some(node) => {
            let mut credential_fields = Fields::new(node, "credentials")?;
            let username = opt_string(credential_fields.take("username"), "username")?;
            let password = opt_string(credential_fields.take("password"), "password")?;
            credential_fields.finish(&[])?;
            match (username, password) {
                (Some(username), Some(password)) => {
                    Some(ContainerCredentials { username, password })
                }
                _ => {
                    return Err(error(
                        node.at,
                        "credentials: both `username` and `password` are required",
                    ));
                }
            }
        }
    };
    let cmd = match fields.take("cmd") {
        None => Vec::new(),
        Some(node) => string_list(node, "cmd")?,
    };
    fields.finish(&[])?;
    Ok(Container {
        at: node.at,
        image,
        env,
        volumes,
        options,
        ports,
        credentials,
        cmd,
    })
}

fn strategy(node: &Node) -> Result<Strategy> {
    let mut fields = Fields::new(node, "strategy")?;
    let matrix = match fields.take("matrix") {
        None => None,
        Some(node) => Some(matrix(node)?),
    };
    let fail_fast = opt_string(fields.take("fail-fast"), "fail-fast")?;
    let max_parallel = opt_string(fields.take("max-parallel"), "max-parallel")?;
    fields.finish(&[])?;
    Ok(Strategy {
        matrix,
        fail_fast,
        max_parallel,
    })
}

fn matrix(node: &Node) -> Result<Matrix> {
    if let NodeKind::String(_) = node.kind {
        return Ok(Matrix::Expression(string(node, "matrix")?));
    }
    let NodeKind::Map(entries) = &node.kind else {
        return Err(error(
            node.at,
            format!("matrix: expected a mapping, found {}", node.kind_name()),
        ));
    };
    let mut dimensions = IndexMap::new();
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for (key, value) in entries {
        let key = string(key, "matrix")?;
        match key.value.as_str() {
            "include" => include = combinations(value, "matrix.include")?,
            "exclude" => exclude = combinations(value, "matrix.exclude")?,
            _ => {
                let dimension = match &value.kind {
                    NodeKind::Seq(items) => {
                        Dimension::Values(items.iter().map(Node::to_json).collect())
                    }
                    NodeKind::String(_) => Dimension::Expression(string(value, "matrix")?),
                    _ => {
                        return Err(error(
                            value.at,
                            format!(
                                "matrix.{}: expected a sequence, found {}",
                                key.value,
                                value.kind_name()
                            ),
                        ));
                    }
                };
                dimensions.insert(key.value, dimension);
            }
        }
    }
    Ok(Matrix::Explicit(ExplicitMatrix {
        at: node.at,
        dimensions,
        include,
        exclude,
    }))
}

fn combinations(node: &Node, what: &str) -> Result<Vec<IndexMap<String, serde_json::Value>>> {
    let NodeKind::Seq(items) = &node.kind else {
        return Err(error(
            node.at,
            format!("{what}: expected a sequence, found {}", node.kind_name()),
        ));
    };
    items
        .iter()
        .map(|item| {
            let NodeKind::Map(entries) = &item.kind else {
                return Err(error(
                    item.at,
                    format!("{what}: expected a mapping, found {}", item.kind_name()),
                ));
            };
            entries
                .iter()
                .map(|(key, value)| Ok((string(key, what)?.value, value.to_json())))
                .collect()
        })
        .collect()
}

pub(super) fn step(node: &Node) -> Result<Step> {
    let mut fields = Fields::new(node, "step")?;
    let id = opt_string(fields.take("id"), "id")?.map(|id| id.value);
    let name = opt_string(fields.take("name"), "name")?;
    let condition = opt_string(fields.take("if"), "if")?;
    let run = opt_string(fields.take("run"), "run")?;
    let uses = opt_string(fields.take("uses"), "uses")?;
    let with = env_map(fields.take("with"), "with")?;
    let env = env_map(fields.take("env"), "env")?;
    let shell = opt_string(fields.take("shell"), "shell")?;
    let working_directory = opt_string(fields.take("working-directory"), "working-directory")?;
    let continue_on_error = opt_string(fields.take("continue-on-error"), "continue-on-error")?;
    let timeout_minutes = opt_string(fields.take("timeout-minutes"), "timeout-minutes")?;
    fields.finish(&[])?;
    match (&run, &uses) {
        (Some(_), Some(_)) => {
            return Err(error(
                node.at,
                "step: `run` and `uses` cannot be used together",
            ));
        }
        (None, None) => return Err(error(node.at, "step: needs either `run` or `uses`")),
        _ => {}
    }
    Ok(Step {
        at: node.at,
        id,
        name,
        condition,
        run,
        uses,
        with,
        env,
        shell,
        working_directory,
        continue_on_error,
        timeout_minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Workflow;

    #[track_caller]
    fn check_error(source: &str, expected: &str) {
        let error = Workflow::parse(source).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }

    #[test]
    fn full_job_parses() {
        let workflow = Workflow::parse(
            "name: ci\non: [push, pull_request]\nenv: {A: 1}\njobs:\n  build:\n    runs-on: {group: g, labels: [a, b]}\n    container:\n      image: debian\n      credentials: {username: u, password: p}\n    services:\n      db: postgres\n    strategy:\n      matrix:\n        os: [x, y]\n        include: [{os: z}]\n    steps:\n      - run: echo hi\n        timeout-minutes: 2\n      - uses: ./a\n        with: {x: 1}\n",
        )
        .unwrap();
        assert_eq!(workflow.on, ["push", "pull_request"]);
        let job = &workflow.jobs["build"];
        assert_eq!(job.runs_on.len(), 3);
        assert_eq!(job.container.as_ref().unwrap().image.value, "debian");
        assert_eq!(job.services["db"].image.value, "postgres");
        assert_eq!(job.steps.len(), 2);
        assert_eq!(job.steps[0].timeout_minutes.as_ref().unwrap().value, "2");
        assert_eq!(workflow.env["A"].value, "1");
    }

    #[test]
    fn unknown_step_key_names_its_position() {
        check_error(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: hi\n        colour: red\n",
            "7:9: step: unknown key `colour`",
        );
    }

    #[test]
    fn wrong_type_names_its_position() {
        check_error(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: [1, 2]\n",
            "6:14: run: expected a string, found a sequence",
        );
    }

    #[test]
    fn run_and_uses_together_are_refused() {
        check_error(
            "on: push\njobs:\n  a:\n    steps:\n      - run: hi\n        uses: x@v1\n",
            "5:9: step: `run` and `uses` cannot be used together",
        );
    }

    #[test]
    fn needs_must_name_a_job() {
        check_error(
            "on: push\njobs:\n  a:\n    needs: b\n    steps: [{run: x}]\n",
            "4:12: job `a`: needs unknown job `b`",
        );
    }

    #[test]
    fn missing_jobs_is_an_error() {
        check_error("on: push\n", "1:1: workflow: missing key `jobs`");
    }
}
