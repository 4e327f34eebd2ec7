//! The inputs a workflow declares for `workflow_dispatch` and `workflow_call` (`on.<event>.inputs`):
//! each input's type and default, which the `inputs` context is typed and filled with. Everything
//! else under `on:` (descriptions, `required`, `options`, filters) is the server's business and is
//! not modelled; a declaration that is not a mapping is skipped rather than refused, as the server
//! has already accepted the workflow.

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::yaml::{Node, NodeKind};

/// The events whose inputs are declared in the workflow.
pub const EVENTS_WITH_INPUTS: [&str; 2] = ["workflow_dispatch", "workflow_call"];

/// The declared type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    Boolean,
    Number,
    /// `string`, `choice`, `environment`, or no `type:` at all.
    String,
}

/// One declared input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDeclaration {
    pub kind: InputType,
    /// `default:` as written (a scalar), `None` when absent.
    pub default: Option<Json>,
}

/// Declared inputs by event name, then by input name in written order.
pub type TriggerInputs = IndexMap<String, IndexMap<String, InputDeclaration>>;

/// The declarations under an `on:` node written as a mapping.
pub(super) fn trigger_inputs(on: &Node) -> TriggerInputs {
    let mut declared = TriggerInputs::new();
    let NodeKind::Map(events) = &on.kind else {
        return declared;
    };
    for (event, config) in events {
        let Some(event) = event.scalar_text() else {
            continue;
        };
        if !EVENTS_WITH_INPUTS.contains(&event.as_str()) {
            continue;
        }
        let Some(NodeKind::Map(inputs)) = field(config, "inputs").map(|node| &node.kind) else {
            continue;
        };
        let mut by_name = IndexMap::new();
        for (name, input) in inputs {
            let Some(name) = name.scalar_text() else {
                continue;
            };
            let kind = match field(input, "type").and_then(Node::scalar_text).as_deref() {
                Some("boolean") => InputType::Boolean,
                Some("number") => InputType::Number,
                _ => InputType::String,
            };
            let default = field(input, "default")
                .filter(|node| node.kind != NodeKind::Null)
                .map(Node::to_json);
            by_name.insert(name, InputDeclaration { kind, default });
        }
        declared.insert(event, by_name);
    }
    declared
}

fn field<'a>(node: &'a Node, name: &str) -> Option<&'a Node> {
    let NodeKind::Map(entries) = &node.kind else {
        return None;
    };
    entries
        .iter()
        .find(|(key, _)| key.scalar_text().as_deref() == Some(name))
        .map(|(_, value)| value)
}
