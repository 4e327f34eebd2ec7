//! Fuzz target for the workflow parser: whatever the bytes, parsing a workflow or an `action.yml`
//! returns a model or a positioned error, never panics; for what parses, every embedded expression
//! is parsed and explicit matrices (when small) are expanded, as the executor does before running.
#![no_main]

// The rooms compiled on their own (see Cargo.toml); not every public item is used by the target.
#[allow(dead_code, unused_imports)]
#[path = "../../../src/executor/expr/mod.rs"]
mod expr;
#[allow(dead_code, unused_imports)]
#[path = "../../../src/executor/model/mod.rs"]
mod model;

use libfuzzer_sys::fuzz_target;
use model::{Dimension, Located, Matrix, Workflow};

/// Matrices with more combinations than this are not expanded (the product is the point, not the size).
const MAX_COMBINATIONS: usize = 4096;

fn check_expressions(field: &Located<String>) {
    if let Ok(embedded) = expr::template::find_embedded(&field.value) {
        for found in embedded {
            let _ = expr::parse(&field.value[found.inner.start..found.inner.end]);
        }
    }
    let _ = expr::parse(field.value.trim());
}

fn check_workflow(workflow: &Workflow) {
    for field in workflow.env.values() {
        check_expressions(field);
    }
    for job in workflow.jobs.values() {
        for field in job.env.values().chain(job.outputs.values()).chain(job.condition.iter()) {
            check_expressions(field);
        }
        for step in &job.steps {
            let fields = step
                .run
                .iter()
                .chain(step.condition.iter())
                .chain(step.uses.iter())
                .chain(step.env.values())
                .chain(step.with.values());
            for field in fields {
                check_expressions(field);
            }
        }
        let Some(Matrix::Explicit(matrix)) = job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) else {
            continue;
        };
        let mut dimensions = indexmap::IndexMap::new();
        let mut n_combinations: usize = 1;
        for (name, dimension) in &matrix.dimensions {
            if let Dimension::Values(values) = dimension {
                n_combinations = n_combinations.saturating_mul(values.len().max(1));
                dimensions.insert(name.clone(), values.clone());
            }
        }
        if n_combinations <= MAX_COMBINATIONS && matrix.include.len() + matrix.exclude.len() <= 256 {
            let _ = model::matrix::expand(&dimensions, &matrix.include, &matrix.exclude);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Workflow::parse(text) {
        Ok(workflow) => check_workflow(&workflow),
        Err(error) => {
            // Every refusal carries a position (line 0 only when the parser could not tell).
            let _ = error.to_string();
        }
    }
    let _ = model::action::Action::parse(text);
});
