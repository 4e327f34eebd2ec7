//! `on.workflow_call` of a reusable workflow (its secrets and outputs) and the calling job's
//! `secrets:`, as GitHub documents them.

use indexmap::IndexMap;

use super::convert::{Fields, error, opt_string, string};
use super::yaml::{Node, NodeKind};
use super::{EnvMap, Located, ModelError};

type Result<T> = std::result::Result<T, ModelError>;

/// `on.workflow_call`: what a reusable workflow gives back and which secrets it takes (its inputs
/// are in [`super::trigger_inputs`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkflowCall {
    /// `outputs.<name>.value`: an expression over the `jobs` context.
    pub outputs: IndexMap<String, Located<String>>,
    /// `secrets.<name>.required`.
    pub secrets: IndexMap<String, bool>,
}

/// `jobs.<id>.secrets` of a calling job.
#[derive(Debug, Clone, PartialEq)]
pub enum CallSecrets {
    /// `secrets: inherit`: every secret of the caller.
    Inherit,
    /// Named secrets, each an expression over the caller's contexts.
    Map(EnvMap),
}

/// `on.workflow_call` when `on` is a mapping that has it (`None` for `on: workflow_call` written
/// as a string or list: a call without inputs, secrets or outputs).
pub(super) fn workflow_call(on: &Node) -> Result<Option<WorkflowCall>> {
    let NodeKind::Map(entries) = &on.kind else {
        return Ok(None);
    };
    let Some((_, node)) = entries
        .iter()
        .find(|(key, _)| key.scalar_text().as_deref() == Some("workflow_call"))
    else {
        return Ok(None);
    };
    if node.kind == NodeKind::Null {
        return Ok(Some(WorkflowCall::default()));
    }
    let mut fields = Fields::new(node, "on.workflow_call")?;
    let mut call = WorkflowCall::default();
    // Read, with their types and defaults, by `trigger_inputs`.
    let _ = fields.take("inputs");
    for (name, output) in named_maps(fields.take("outputs"), "on.workflow_call.outputs")? {
        let mut output_fields = Fields::new(output, "on.workflow_call.outputs.<name>")?;
        let value = output_fields.take("value").ok_or_else(|| {
            error(
                output.at,
                format!("on.workflow_call.outputs.{name}: missing key `value`"),
            )
        })?;
        let value = string(value, "value")?;
        output_fields.finish(&["description"])?;
        call.outputs.insert(name, value);
    }
    for (name, secret) in named_maps(fields.take("secrets"), "on.workflow_call.secrets")? {
        let required = if secret.kind == NodeKind::Null {
            false
        } else {
            let mut secret_fields = Fields::new(secret, "on.workflow_call.secrets.<name>")?;
            let required = flag(secret_fields.take("required"), "required")?;
            secret_fields.finish(&["description"])?;
            required
        };
        call.secrets.insert(name, required);
    }
    fields.finish(&[])?;
    Ok(Some(call))
}

/// `jobs.<id>.secrets`: `inherit` or a mapping.
pub(super) fn call_secrets(node: Option<&Node>) -> Result<Option<CallSecrets>> {
    let Some(node) = node else {
        return Ok(None);
    };
    match &node.kind {
        NodeKind::Null => Ok(None),
        NodeKind::Map(_) => Ok(Some(CallSecrets::Map(super::convert::env_map(
            Some(node),
            "secrets",
        )?))),
        _ => {
            let text = string(node, "secrets")?;
            if text.value == "inherit" {
                Ok(Some(CallSecrets::Inherit))
            } else {
                Err(error(
                    text.at,
                    format!(
                        "secrets: expected `inherit` or a mapping of secrets, found `{}`",
                        text.value
                    ),
                ))
            }
        }
    }
}

/// The entries of a mapping whose values are mappings (or empty), by name.
fn named_maps<'a>(node: Option<&'a Node>, what: &str) -> Result<Vec<(String, &'a Node)>> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    match &node.kind {
        NodeKind::Null => Ok(Vec::new()),
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(key, value)| Ok((string(key, what)?.value, value)))
            .collect(),
        _ => Err(error(
            node.at,
            format!("{what}: expected a mapping, found {}", node.kind_name()),
        )),
    }
}

fn flag(node: Option<&Node>, what: &str) -> Result<bool> {
    let Some(value) = opt_string(node, what)? else {
        return Ok(false);
    };
    match value.value.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(error(
            value.at,
            format!("{what}: expected true or false, found `{other}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::executor::model::Workflow;

    use super::*;

    #[test]
    fn outputs_and_secrets_are_read() {
        let workflow = Workflow::parse(
            "on:\n  workflow_call:\n    inputs:\n      name: {type: string, required: true}\n      debug: {type: boolean, default: false}\n      count:\n        type: number\n        default: ${{ 1 + 1 }}\n    outputs:\n      out:\n        description: d\n        value: ${{ jobs.a.outputs.x }}\n    secrets:\n      token: {required: true}\n      extra:\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n",
        )
        .unwrap();
        let call = workflow.workflow_call.unwrap();
        assert_eq!(call.outputs["out"].value, "${{ jobs.a.outputs.x }}");
        assert_eq!(
            call.secrets.iter().collect::<Vec<_>>(),
            [
                (&"token".to_string(), &true),
                (&"extra".to_string(), &false)
            ]
        );
    }

    #[test]
    fn a_caller_passes_with_and_secrets() {
        let workflow = Workflow::parse(
            "on: push\njobs:\n  call:\n    uses: ./.gitea/workflows/x.yml\n    with: {a: 1}\n    secrets: inherit\n  map:\n    uses: o/r/.gitea/workflows/x.yml@v1\n    secrets:\n      token: ${{ secrets.T }}\n",
        )
        .unwrap();
        assert_eq!(workflow.jobs["call"].with["a"].value, "1");
        assert_eq!(workflow.jobs["call"].secrets, Some(CallSecrets::Inherit));
        let Some(CallSecrets::Map(map)) = &workflow.jobs["map"].secrets else {
            panic!("a map");
        };
        assert_eq!(map["token"].value, "${{ secrets.T }}");
    }

    #[test]
    fn a_secrets_value_other_than_inherit_is_refused_with_its_position() {
        let source = "on: push\njobs:\n  j:\n    uses: ./x.yml\n    secrets: all\n";
        assert_eq!(
            Workflow::parse(source).unwrap_err().to_string(),
            "5:14: secrets: expected `inherit` or a mapping of secrets, found `all`"
        );
    }
}
