//! The `inputs` context of a `workflow_dispatch` or `workflow_call` run: the event payload's
//! `inputs`, typed as the workflow declares them (`boolean` → bool, `number` → number, anything
//! else → string), with the declared default for each input the event lacks. Inputs the event
//! carries but the workflow does not declare are kept as sent.

use serde_json::{Map, Number, Value as Json};

use super::model::Workflow;
use super::model::trigger_inputs::{InputDeclaration, InputType};

/// The inputs of a run of `workflow` for `event_name` with the payload `event`.
pub fn resolve(workflow: &Workflow, event_name: &str, event: &Json) -> Map<String, Json> {
    let given = event
        .get("inputs")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let Some(declared) = workflow.trigger_inputs.get(event_name) else {
        return given;
    };
    let mut inputs = Map::new();
    for (name, declaration) in declared {
        let value = given
            .get(name)
            .filter(|value| !value.is_null())
            .or(declaration.default.as_ref());
        inputs.insert(name.clone(), typed(declaration, value));
    }
    for (name, value) in given {
        if !inputs.contains_key(&name) {
            inputs.insert(name, value);
        }
    }
    inputs
}

/// A value as its declaration types it; a missing one is `false`, null or `''`.
pub fn typed(declaration: &InputDeclaration, value: Option<&Json>) -> Json {
    match declaration.kind {
        InputType::Boolean => Json::Bool(match value {
            Some(Json::Bool(flag)) => *flag,
            Some(Json::String(text)) => text == "true",
            _ => false,
        }),
        InputType::Number => match value {
            Some(Json::Number(number)) => Json::Number(number.clone()),
            Some(Json::String(text)) => number(text.trim()).unwrap_or_else(|| json_text(text)),
            Some(other) => other.clone(),
            None => Json::Null,
        },
        InputType::String => match value {
            None | Some(Json::Null) => json_text(""),
            Some(Json::String(text)) => json_text(text),
            Some(other) => Json::String(other.to_string()),
        },
    }
}

fn number(text: &str) -> Option<Json> {
    if let Ok(integer) = text.parse::<i64>() {
        return Some(Json::Number(Number::from(integer)));
    }
    let float = text.parse::<f64>().ok().filter(|float| float.is_finite())?;
    Number::from_f64(float).map(Json::Number)
}

fn json_text(text: &str) -> Json {
    Json::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const WORKFLOW: &str = "on:\n  workflow_dispatch:\n    inputs:\n      target:\n        type: choice\n        options: [a, b]\n        default: staging\n      dry:\n        type: boolean\n        default: true\n      count:\n        type: number\n        default: 3\n      plain:\n        description: no type\n  workflow_call:\n    inputs:\n      flag:\n        type: boolean\njobs:\n  j:\n    runs-on: x\n    steps:\n      - run: echo\n";

    fn workflow() -> Workflow {
        Workflow::parse(WORKFLOW).unwrap()
    }

    #[test]
    fn dispatch_inputs_are_typed_and_defaulted() {
        let event =
            json!({ "inputs": { "target": "prod", "dry": "false", "count": "12", "extra": "x" } });
        let inputs = resolve(&workflow(), "workflow_dispatch", &event);
        assert_eq!(
            Json::Object(inputs),
            json!({ "target": "prod", "dry": false, "count": 12, "plain": "", "extra": "x" })
        );
        let inputs = resolve(&workflow(), "workflow_dispatch", &json!({}));
        assert_eq!(
            Json::Object(inputs),
            json!({ "target": "staging", "dry": true, "count": 3, "plain": "" })
        );
    }

    #[test]
    fn call_inputs_use_their_own_declarations() {
        let inputs = resolve(
            &workflow(),
            "workflow_call",
            &json!({ "inputs": { "flag": true } }),
        );
        assert_eq!(Json::Object(inputs), json!({ "flag": true }));
        let inputs = resolve(&workflow(), "workflow_call", &json!({}));
        assert_eq!(Json::Object(inputs), json!({ "flag": false }));
    }

    #[test]
    fn other_events_keep_what_the_payload_sends() {
        assert!(resolve(&workflow(), "push", &json!({})).is_empty());
        let inputs = resolve(&workflow(), "push", &json!({ "inputs": { "a": "1" } }));
        assert_eq!(Json::Object(inputs), json!({ "a": "1" }));
    }

    #[test]
    fn a_number_that_does_not_parse_stays_text() {
        let inputs = resolve(
            &workflow(),
            "workflow_dispatch",
            &json!({ "inputs": { "count": "many", "dry": true } }),
        );
        assert_eq!(inputs["count"], json!("many"));
        assert_eq!(inputs["dry"], json!(true));
        let inputs = resolve(
            &workflow(),
            "workflow_dispatch",
            &json!({ "inputs": { "count": "2.5" } }),
        );
        assert_eq!(inputs["count"], json!(2.5));
    }
}
