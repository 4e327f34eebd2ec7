//! The model of an action's `action.yml`: inputs with defaults, outputs, and what it runs
//! (`composite` steps, a `node*` script with its `pre`/`post`, or a `docker` image with its
//! entrypoints, arguments and env).

use indexmap::IndexMap;

use super::convert::{Fields, env_map, error, opt_string, step, string, string_list};
use super::yaml::{self, Node, NodeKind};
use super::{EnvMap, Located, ModelError, Step};

/// A parsed `action.yml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: Option<String>,
    pub inputs: IndexMap<String, ActionInput>,
    /// Output name to its `value` (composite actions only).
    pub outputs: IndexMap<String, Option<Located<String>>>,
    pub runs: Runs,
}

/// One declared input.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionInput {
    pub default: Option<Located<String>>,
    pub required: bool,
}

/// What the action runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Runs {
    Composite {
        steps: Vec<Step>,
    },
    Node {
        using: String,
        main: String,
        pre: Option<String>,
        /// Default `always()`.
        pre_if: Option<Located<String>>,
        post: Option<String>,
        /// Default `always()`.
        post_if: Option<Located<String>>,
    },
    Docker(DockerRuns),
}

/// `runs:` of a docker action.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerRuns {
    /// `docker://image` or a Dockerfile path relative to the action directory.
    pub image: String,
    pub entrypoint: Option<Located<String>>,
    pub pre_entrypoint: Option<Located<String>>,
    pub pre_if: Option<Located<String>>,
    pub post_entrypoint: Option<Located<String>>,
    pub post_if: Option<Located<String>>,
    /// Interpolated with `inputs` before the container starts.
    pub args: Vec<Located<String>>,
    pub env: EnvMap,
}

impl Action {
    pub fn parse(source: &str) -> Result<Action, ModelError> {
        let root = yaml::parse(source).map_err(|error| ModelError {
            at: error.at,
            message: error.message,
        })?;
        action(&root)
    }
}

fn action(root: &Node) -> Result<Action, ModelError> {
    let mut fields = Fields::new(root, "action")?;
    let name = opt_string(fields.take("name"), "name")?.map(|name| name.value);
    let mut inputs = IndexMap::new();
    if let Some(node) = fields.take("inputs")
        && let NodeKind::Map(entries) = &node.kind
    {
        {
            for (key, value) in entries {
                let input_name = string(key, "inputs")?.value;
                let mut input_fields = Fields::new(value, "input")?;
                let default = opt_string(input_fields.take("default"), "default")?;
                let required = opt_string(input_fields.take("required"), "required")?
                    .is_some_and(|required| required.value == "true");
                input_fields.finish(&["description", "deprecationMessage"])?;
                inputs.insert(input_name, ActionInput { default, required });
            }
        }
    }
    let mut outputs = IndexMap::new();
    if let Some(node) = fields.take("outputs")
        && let NodeKind::Map(entries) = &node.kind
    {
        {
            for (key, value) in entries {
                let output_name = string(key, "outputs")?.value;
                let mut output_fields = Fields::new(value, "output")?;
                let output_value = opt_string(output_fields.take("value"), "value")?;
                output_fields.finish(&["description"])?;
                outputs.insert(output_name, output_value);
            }
        }
    }
    let runs_node = fields
        .take("runs")
        .ok_or_else(|| error(root.at, "action: missing key `runs`"))?;
    fields.finish(&["description", "author", "branding"])?;
    let mut runs_fields = Fields::new(runs_node, "runs")?;
    let using = opt_string(runs_fields.take("using"), "runs.using")?
        .ok_or_else(|| error(runs_node.at, "runs: missing key `using`"))?;
    let runs = match using.value.as_str() {
        "composite" => {
            let steps_node = runs_fields
                .take("steps")
                .ok_or_else(|| error(runs_node.at, "runs: a composite action needs `steps`"))?;
            let NodeKind::Seq(items) = &steps_node.kind else {
                return Err(error(steps_node.at, "runs.steps: expected a sequence"));
            };
            let steps = items.iter().map(step).collect::<Result<Vec<_>, _>>()?;
            runs_fields.finish(&[])?;
            Runs::Composite { steps }
        }
        node if node.starts_with("node") => {
            let main = opt_string(runs_fields.take("main"), "runs.main")?
                .ok_or_else(|| error(runs_node.at, "runs: a node action needs `main`"))?;
            let pre = opt_string(runs_fields.take("pre"), "runs.pre")?.map(|pre| pre.value);
            let pre_if = opt_string(runs_fields.take("pre-if"), "runs.pre-if")?;
            let post = opt_string(runs_fields.take("post"), "runs.post")?.map(|post| post.value);
            let post_if = opt_string(runs_fields.take("post-if"), "runs.post-if")?;
            runs_fields.finish(&[])?;
            Runs::Node {
                using: using.value.clone(),
                main: main.value,
                pre,
                pre_if,
                post,
                post_if,
            }
        }
        "docker" => {
            let image = opt_string(runs_fields.take("image"), "runs.image")?
                .ok_or_else(|| error(runs_node.at, "runs: a docker action needs `image`"))?;
            let args = match runs_fields.take("args") {
                Some(node) => string_list(node, "runs.args")?,
                None => Vec::new(),
            };
            let docker = DockerRuns {
                image: image.value,
                entrypoint: opt_string(runs_fields.take("entrypoint"), "runs.entrypoint")?,
                pre_entrypoint: opt_string(
                    runs_fields.take("pre-entrypoint"),
                    "runs.pre-entrypoint",
                )?,
                pre_if: opt_string(runs_fields.take("pre-if"), "runs.pre-if")?,
                post_entrypoint: opt_string(
                    runs_fields.take("post-entrypoint"),
                    "runs.post-entrypoint",
                )?,
                post_if: opt_string(runs_fields.take("post-if"), "runs.post-if")?,
                args,
                env: env_map(runs_fields.take("env"), "runs.env")?,
            };
            runs_fields.finish(&[])?;
            Runs::Docker(docker)
        }
        other => {
            return Err(error(
                using.at,
                format!(
                    "runs.using: `{other}` is not supported (composite, node12..node24, docker)"
                ),
            ));
        }
    };
    Ok(Action {
        name,
        inputs,
        outputs,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_action_parses() {
        let action = Action::parse(
            "name: x\ninputs:\n  who:\n    description: d\n    default: ${{ github.actor }}\n    required: false\noutputs:\n  out:\n    value: ${{ steps.a.outputs.v }}\nruns:\n  using: composite\n  steps:\n    - id: a\n      shell: bash\n      run: echo\n",
        )
        .unwrap();
        assert!(matches!(action.runs, Runs::Composite { ref steps } if steps.len() == 1));
        assert_eq!(
            action.inputs["who"].default.as_ref().unwrap().value,
            "${{ github.actor }}"
        );
        assert!(action.outputs["out"].is_some());
    }

    #[test]
    fn node_action_parses() {
        let action = Action::parse("runs:\n  using: node20\n  main: dist/index.js\n").unwrap();
        assert_eq!(
            action.runs,
            Runs::Node {
                using: "node20".into(),
                main: "dist/index.js".into(),
                pre: None,
                pre_if: None,
                post: None,
                post_if: None,
            }
        );
    }

    #[test]
    fn docker_action_parses_entrypoints_args_and_env() {
        let action = Action::parse(
            "runs:\n  using: docker\n  image: Dockerfile\n  entrypoint: /main.sh\n  post-entrypoint: /post.sh\n  args: [\"${{ inputs.who }}\", two]\n  env:\n    A: b\n",
        )
        .unwrap();
        let Runs::Docker(docker) = action.runs else {
            panic!("not docker")
        };
        assert_eq!(docker.image, "Dockerfile");
        assert_eq!(docker.entrypoint.unwrap().value, "/main.sh");
        assert_eq!(docker.post_entrypoint.unwrap().value, "/post.sh");
        assert_eq!(docker.args.len(), 2);
        assert_eq!(docker.env["A"].value, "b");
    }

    #[test]
    fn unknown_runs_key_is_refused_with_position() {
        let error =
            Action::parse("runs:\n  using: docker\n  image: x\n  entrypont: y\n").unwrap_err();
        assert_eq!(error.at.line, 4);
    }

    #[test]
    fn unknown_runtime_is_refused_with_position() {
        let error = Action::parse("runs:\n  using: go\n").unwrap_err();
        assert_eq!(error.at.line, 2);
    }
}
