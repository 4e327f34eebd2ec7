//! Fuzz target for the expression language: whatever the bytes, lexing, parsing, evaluating,
//! `if:` handling and `${{ }}` interpolation return a value or a positioned error, never panic.
#![no_main]

// The room compiled on its own (see Cargo.toml); not every public item is used by the target.
#[allow(dead_code, unused_imports)]
#[path = "../../../src/executor/expr/mod.rs"]
mod expr;

use expr::{EvalContext, JobStatus, Value};
use std::sync::OnceLock;

use indexmap::IndexMap;
use libfuzzer_sys::fuzz_target;

fn build_contexts() -> IndexMap<String, Value> {
    let json = serde_json::json!({
        "github": {"ref": "refs/heads/main", "event": {"commits": [{"message": "a"}, {"message": "b"}]}},
        "env": {"A": "1", "EMPTY": ""},
        "matrix": {"os": "debian", "list": [1, [2, {"x": null}]], "n": 1.5},
        "steps": {"s": {"outputs": {"o": "{\"k\": [1]}"}, "outcome": "success"}},
    });
    match Value::from(json) {
        Value::Object(map) => map,
        _ => IndexMap::new(),
    }
}

fn hash_files(patterns: &[String]) -> Result<String, String> {
    if patterns.is_empty() {
        Err("no patterns".to_owned())
    } else {
        Ok(patterns.join(","))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    static CONTEXTS: OnceLock<IndexMap<String, Value>> = OnceLock::new();
    let ctx = EvalContext {
        contexts: CONTEXTS.get_or_init(build_contexts),
        status: JobStatus::Failure,
        hash_files: Some(&hash_files),
    };
    if let Err(error) = expr::parse(source) {
        // Positions must stay inside the source and render.
        assert!(error.offset + error.len <= source.len());
        let _ = error.to_string();
    }
    if let Ok(value) = expr::evaluate(source, &ctx) {
        let _ = value.to_scalar_string();
        let _ = value.to_pretty_json();
    }
    let _ = expr::evaluate_if(source, &ctx);
    let _ = expr::interpolate(source, &ctx);
    let _ = expr::interpolate_value(source, &ctx);
});
