//! Unit tests of the public API: parser output pinned through one `check` function, and claims
//! about positions, `if:` handling and interpolation. The conformance table lives in
//! `conformance.rs`; the never-panics test in `random_input.rs`.

use indexmap::IndexMap;
use serde_json::json;

use super::*;

fn contexts() -> IndexMap<String, Value> {
    let mut contexts = IndexMap::new();
    contexts.insert("github".to_owned(), Value::from(json!({"ref": "refs/heads/main", "event": {"commits": [{"message": "one"}, {"message": "two"}]}})));
    contexts.insert(
        "matrix".to_owned(),
        Value::from(json!({"os": "debian", "n": 3})),
    );
    contexts
}

fn with_ctx<T>(status: JobStatus, run: impl FnOnce(&EvalContext) -> T) -> T {
    let contexts = contexts();
    run(&EvalContext {
        contexts: &contexts,
        status,
        hash_files: None,
    })
}

#[test]
fn evaluate_reads_contexts_case_insensitively() {
    let value = with_ctx(JobStatus::Success, |ctx| {
        evaluate("MATRIX.OS == 'DEBIAN'", ctx)
    })
    .unwrap();
    assert_eq!(value, Value::Bool(true));
}

#[test]
fn object_filter_collects_a_property_of_every_element() {
    let value = with_ctx(JobStatus::Success, |ctx| {
        evaluate("github.event.commits.*.message", ctx)
    })
    .unwrap();
    assert_eq!(value, Value::from(json!(["one", "two"])));
}

#[test]
fn if_without_status_function_is_false_after_a_failure() {
    assert!(!with_ctx(JobStatus::Failure, |ctx| evaluate_if("true", ctx)).unwrap());
    assert!(
        with_ctx(JobStatus::Failure, |ctx| evaluate_if(
            "${{ failure() }}",
            ctx
        ))
        .unwrap()
    );
    assert!(with_ctx(JobStatus::Success, |ctx| evaluate_if("  ", ctx)).unwrap());
}

#[test]
fn status_functions_are_found_in_the_syntax_tree_not_the_text() {
    for (source, uses) in [
        ("${{ failure() }}", true),
        ("always() || false", true),
        ("${{ !contains('always()', 'x') }}", false),
        ("'success()' == 'x'", false),
        ("run ${{ always() }} text", false),
        ("", false),
    ] {
        assert_eq!(
            super::if_uses_status_function(source).unwrap(),
            uses,
            "{source}"
        );
    }
}

#[test]
fn interpolate_value_keeps_the_type_of_a_lone_expression() {
    let value = with_ctx(JobStatus::Success, |ctx| {
        interpolate_value(" ${{ matrix.n }} ", ctx)
    })
    .unwrap();
    assert_eq!(value, Value::Number(3.0));
    let text = with_ctx(JobStatus::Success, |ctx| {
        interpolate_value("n=${{ matrix.n }}", ctx)
    })
    .unwrap();
    assert_eq!(text, Value::from("n=3"));
}

#[test]
fn interpolation_errors_are_positioned_in_the_template() {
    let error = with_ctx(JobStatus::Success, |ctx| {
        interpolate("echo\nx ${{ matrix.os == }}", ctx)
    })
    .unwrap_err();
    assert_eq!((error.line, error.column), (2, 20));
    assert_eq!(
        error.to_string(),
        "2:20: expected an expression\n  x ${{ matrix.os == }}\n                     ^"
    );
}

/// Issue 22: forty nested doublings would build a terabyte; evaluation stops at the value bound
/// with an evaluation error instead of allocating it.
#[test]
fn nested_format_doublings_fail_at_the_value_bound() {
    let mut expression = "'ab'".to_owned();
    for _ in 0..40 {
        expression = format!("format('{{0}}{{0}}', {expression})");
    }
    let error = with_ctx(JobStatus::Success, |ctx| evaluate(&expression, ctx)).unwrap_err();
    assert_eq!(error.kind, ExprErrorKind::Evaluation);
    assert!(
        error.message.contains("larger than 10485760 bytes"),
        "{error}"
    );

    let template = format!("${{{{ {expression} }}}}");
    let error = with_ctx(JobStatus::Success, |ctx| interpolate(&template, ctx)).unwrap_err();
    assert_eq!(error.kind, ExprErrorKind::Evaluation);

    // Each 2 MiB piece fits, six of them would not.
    let piece = "format('{0}{0}{0}{0}{0}{0}{0}{0}', format('{0}{0}{0}{0}{0}{0}{0}{0}', format('{0}{0}{0}{0}{0}{0}{0}{0}', format('{0}{0}{0}{0}{0}{0}{0}{0}', format('{0}{0}{0}{0}{0}{0}{0}{0}', format('{0}{0}{0}{0}{0}{0}{0}{0}', format('{0}{0}{0}{0}{0}{0}{0}{0}', 'a')))))))";
    let template = format!("${{{{ {piece} }}}}").repeat(6);
    let error = with_ctx(JobStatus::Success, |ctx| interpolate(&template, ctx)).unwrap_err();
    assert!(
        error.message.contains("the template would build"),
        "{error}"
    );
}

#[test]
fn arrays_and_objects_interpolate_as_their_kind() {
    let text = with_ctx(JobStatus::Success, |ctx| {
        interpolate(
            "${{ fromJSON('[1]') }} ${{ matrix }} ${{ toJSON(fromJSON('[1]')) }}",
            ctx,
        )
    })
    .unwrap();
    assert_eq!(text, "Array Object [\n  1\n]");
}

#[test]
fn post_if_is_evaluated_as_written() {
    // After a failure: no implied success(), and the default (empty) holds.
    let failed = |source| with_ctx(JobStatus::Failure, |ctx| evaluate_post_if(source, ctx));
    assert!(failed("matrix.os == 'debian'").unwrap());
    assert!(failed("${{ matrix.n == 3 }}").unwrap());
    assert!(failed("").unwrap());
    assert!(!failed("success()").unwrap());
    assert!(failed("always()").unwrap());
    assert!(!failed("matrix.os == 'alpine'").unwrap());
    // The same conditions as `if:` imply success().
    assert!(
        !with_ctx(JobStatus::Failure, |ctx| evaluate_if(
            "matrix.os == 'debian'",
            ctx
        ))
        .unwrap()
    );
}
