//! The expression language through its public API: the conformance table in
//! `tests/data/expr/conformance.txt` (one test that reports every failing row by name), parser
//! output pinned by insta snapshots through one `check` function, and a seeded random-input test
//! whose only claim is that nothing panics.

use std::panic::{AssertUnwindSafe, catch_unwind};

use act_runner::executor::expr::{
    self, EvalContext, ExprError, JobStatus, Value,
    ast::{BinaryOp, Expr, ExprKind},
};
use indexmap::IndexMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TABLE: &str = include_str!("data/expr/conformance.txt");
const CONTEXTS: &str = include_str!("data/expr/contexts.json");

fn contexts() -> IndexMap<String, Value> {
    let json: serde_json::Value = serde_json::from_str(CONTEXTS).unwrap();
    match Value::from(json) {
        Value::Object(map) => map,
        other => panic!(
            "contexts.json must hold an object, got {}",
            other.kind_name()
        ),
    }
}

/// The test's `hashFiles`: echoes its patterns so delegation is visible, fails for one pattern.
fn fake_hash_files(patterns: &[String]) -> Result<String, String> {
    if patterns.iter().any(|pattern| pattern == "missing/**") {
        return Err("no access".to_owned());
    }
    Ok(format!("hash({})", patterns.join("|")))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Evaluate,
    If,
    Interpolate,
    InterpolateValue,
}

enum Expected {
    Value(Value),
    Error(String),
}

struct Row {
    line: usize,
    name: String,
    mode: Mode,
    status: JobStatus,
    source: String,
    expected: Expected,
}

fn parse_expected(text: &str) -> Expected {
    if let Some(message) = text.strip_prefix("error:") {
        return Expected::Error(message.trim().to_owned());
    }
    Expected::Value(match text {
        "NaN" => Value::Number(f64::NAN),
        "Infinity" => Value::Number(f64::INFINITY),
        "-Infinity" => Value::Number(f64::NEG_INFINITY),
        json => Value::from(
            serde_json::from_str::<serde_json::Value>(json)
                .unwrap_or_else(|error| panic!("bad expected value `{json}`: {error}")),
        ),
    })
}

fn parse_table() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut mode = Mode::Evaluate;
    let mut status = JobStatus::Success;
    for (line_idx, line) in TABLE.lines().enumerate() {
        let line_no = line_idx + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(directive) = trimmed.strip_prefix('@') {
            match directive.split_once(' ') {
                Some(("mode", "evaluate")) => mode = Mode::Evaluate,
                Some(("mode", "if")) => mode = Mode::If,
                Some(("mode", "interpolate")) => mode = Mode::Interpolate,
                Some(("mode", "interpolate_value")) => mode = Mode::InterpolateValue,
                Some(("status", "success")) => status = JobStatus::Success,
                Some(("status", "failure")) => status = JobStatus::Failure,
                Some(("status", "cancelled")) => status = JobStatus::Cancelled,
                _ => panic!("line {line_no}: unknown directive `{trimmed}`"),
            }
            continue;
        }
        let (name, rest) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("line {line_no}: no `name:`"));
        let (source, expected) = rest
            .rsplit_once("=> ")
            .unwrap_or_else(|| panic!("line {line_no}: no ` => expected`"));
        rows.push(Row {
            line: line_no,
            name: name.trim().to_owned(),
            mode,
            status,
            source: source.trim().to_owned(),
            expected: parse_expected(expected.trim()),
        });
    }
    rows
}

fn run_row(row: &Row, contexts: &IndexMap<String, Value>) -> Result<Value, ExprError> {
    let ctx = EvalContext {
        contexts,
        status: row.status,
        hash_files: Some(&fake_hash_files),
    };
    match row.mode {
        Mode::Evaluate => expr::evaluate(&row.source, &ctx),
        Mode::If => expr::evaluate_if(&row.source, &ctx).map(Value::Bool),
        Mode::Interpolate => expr::interpolate(&row.source, &ctx).map(Value::String),
        Mode::InterpolateValue => expr::interpolate_value(&row.source, &ctx),
    }
}

/// Structural equality where NaN equals NaN, so a row can expect NaN.
fn same_value(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a == b || (a.is_nan() && b.is_nan()),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
        }
        _ => left == right,
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Number(n) if !n.is_finite() => format!("{n}"),
        other => other.to_json().to_string(),
    }
}

#[test]
fn conformance_table_matches_github_semantics() {
    let rows = parse_table();
    let contexts = contexts();
    assert!(rows.len() >= 300, "the table has only {} rows", rows.len());
    let mut names = std::collections::HashSet::new();
    for row in &rows {
        assert!(
            names.insert(row.name.as_str()),
            "line {}: duplicate row name {}",
            row.line,
            row.name
        );
    }
    let mut failures = Vec::new();
    for row in &rows {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_row(row, &contexts)));
        let problem = match (&row.expected, outcome) {
            (_, Err(_)) => Some("PANICKED".to_owned()),
            (Expected::Value(expected), Ok(Ok(actual))) if same_value(expected, &actual) => None,
            (Expected::Value(expected), Ok(Ok(actual))) => Some(format!(
                "expected {}, got {}",
                show(expected),
                show(&actual)
            )),
            (Expected::Value(expected), Ok(Err(error))) => Some(format!(
                "expected {}, got error {}",
                show(expected),
                error.message
            )),
            (Expected::Error(message), Ok(Err(error))) if error.message.contains(message) => None,
            (Expected::Error(message), Ok(Err(error))) => Some(format!(
                "expected an error containing `{message}`, got error `{}`",
                error.message
            )),
            (Expected::Error(message), Ok(Ok(actual))) => Some(format!(
                "expected an error containing `{message}`, got {}",
                show(&actual)
            )),
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "  line {} {} `{}`: {problem}",
                row.line, row.name, row.source
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} conformance rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Renders a tree as an S-expression with each node's byte span, for snapshots.
fn render(node: &Expr) -> String {
    let span = format!("@{}..{}", node.span.start, node.span.end);
    match &node.kind {
        ExprKind::Null => format!("null{span}"),
        ExprKind::Bool(b) => format!("{b}{span}"),
        ExprKind::Number(n) => format!("{}{span}", expr::value::format_number(*n)),
        ExprKind::String(s) => format!("{s:?}{span}"),
        ExprKind::Context(name) => format!("{name}{span}"),
        ExprKind::Property { base, name } => format!("(. {} {name}){span}", render(base)),
        ExprKind::Index { base, index } => format!("([] {} {}){span}", render(base), render(index)),
        ExprKind::Wildcard { base } => format!("(* {}){span}", render(base)),
        ExprKind::Not(operand) => format!("(! {}){span}", render(operand)),
        ExprKind::Binary { op, left, right } => {
            let op = match op {
                BinaryOp::Lt => "<",
                BinaryOp::Le => "<=",
                BinaryOp::Gt => ">",
                BinaryOp::Ge => ">=",
                BinaryOp::Eq => "==",
                BinaryOp::Ne => "!=",
                BinaryOp::And => "&&",
                BinaryOp::Or => "||",
            };
            format!("({op} {} {}){span}", render(left), render(right))
        }
        ExprKind::Call { function, args } => {
            let args: Vec<String> = args.iter().map(render).collect();
            format!(
                "({}{}{}){span}",
                function.name(),
                if args.is_empty() { "" } else { " " },
                args.join(" ")
            )
        }
    }
}

/// The one place the parser tests call the API: the tree, or the error as the user sees it.
#[track_caller]
fn check(input: &str) -> String {
    match expr::parse(input) {
        Ok(root) => render(&root),
        Err(error) => format!("error: {error}"),
    }
}

#[test]
fn parse_binds_and_tighter_than_or() {
    insta::assert_snapshot!(check("a || b && c"), @"(|| a@0..1 (&& b@5..6 c@10..11)@5..11)@0..11");
}

#[test]
fn parse_binds_comparison_tighter_than_equality() {
    insta::assert_snapshot!(check("1 < 2 == true"), @"(== (< 1@0..1 2@4..5)@0..5 true@9..13)@0..13");
}

#[test]
fn parse_binds_not_looser_than_dereference() {
    insta::assert_snapshot!(check("!github.event.x"), @"(! (. (. github@1..7 event)@1..13 x)@1..15)@0..15");
}

#[test]
fn parse_object_filter_in_both_spellings() {
    insta::assert_snapshot!(check("a.*.b[*]"), @"(* (. (* a@0..1)@0..3 b)@0..5)@0..8");
}

#[test]
fn parse_index_with_an_expression() {
    insta::assert_snapshot!(check("a['b'][c.d]"), @r#"([] ([] a@0..1 "b"@2..5)@0..6 (. c@7..8 d)@7..10)@0..11"#);
}

#[test]
fn parse_call_resolves_the_name_ignoring_case() {
    insta::assert_snapshot!(check("STARTSWITH(github.ref, 'refs/')"), @r#"(startsWith (. github@11..17 ref)@11..21 "refs/"@23..30)@0..31"#);
}

#[test]
fn parse_group_keeps_the_parentheses_in_its_span() {
    insta::assert_snapshot!(check("(a || b) && c"), @"(&& (|| a@1..2 b@6..7)@0..8 c@12..13)@0..13");
}

#[test]
fn parse_literals_and_escapes() {
    insta::assert_snapshot!(check("'it''s' != -1.5e3"), @r#"(!= "it's"@0..7 -1500@11..17)@0..17"#);
}

#[test]
fn parse_error_points_a_caret_at_the_culprit() {
    insta::assert_snapshot!(check("github.ref == 'a' & true"), @r"
    error: 1:19: unexpected character '&', did you mean '&&'?
      github.ref == 'a' & true
                        ^
    ");
}

#[test]
fn parse_error_on_a_later_line_counts_lines_and_columns() {
    insta::assert_snapshot!(check("true &&\n  contains('a')"), @r"
    error: 2:3: contains() takes exactly 2 arguments, got 1
        contains('a')
        ^^^^^^^^^^^^^
    ");
}

#[test]
fn parse_error_for_an_unknown_function_underlines_its_name() {
    insta::assert_snapshot!(check("toUpper(x)"), @r"
    error: 1:1: unknown function 'toUpper'
      toUpper(x)
      ^^^^^^^
    ");
}

#[test]
fn parse_rejects_an_expression_longer_than_github_allows() {
    let long = format!("'{}'", "x".repeat(expr::parser::MAX_LENGTH));
    let error = expr::parse(&long).unwrap_err();
    assert!(error.message.contains("longer than"), "{error}");
}

#[test]
fn evaluation_error_is_positioned_at_the_failing_call() {
    let contexts = contexts();
    let ctx = EvalContext {
        contexts: &contexts,
        status: JobStatus::Success,
        hash_files: None,
    };
    let error = expr::evaluate("true && hashFiles('a')", &ctx).unwrap_err();
    assert_eq!(
        (error.line, error.column, error.offset, error.len),
        (1, 9, 8, 14)
    );
    assert_eq!(error.message, "hashFiles is not available here");
}

/// Fragments the random test glues together: every token kind, near-misses, and odd characters.
const FRAGMENTS: &[&str] = &[
    "github",
    "env",
    "matrix",
    "steps",
    "fixture",
    "nope",
    ".",
    "*",
    "[",
    "]",
    "(",
    ")",
    ",",
    "!",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "&&",
    "||",
    "=",
    "&",
    "|",
    "'",
    "''",
    "'a'",
    "'}}'",
    "null",
    "true",
    "false",
    "NaN",
    "Infinity",
    "-Infinity",
    "0",
    "1",
    "-1.5",
    "0x1f",
    "1e3",
    ".5",
    "1.2.3",
    "-",
    "+",
    "contains",
    "startsWith",
    "endsWith",
    "format",
    "join",
    "toJSON",
    "fromJSON",
    "hashFiles",
    "success",
    "always",
    "cancelled",
    "failure",
    "'{0}'",
    "'{'",
    "'[1,{\"a\":2}]'",
    "numbers",
    "nested",
    "event",
    "commits",
    "${{",
    "}}",
    " ",
    "\n",
    "\t",
    "é",
    "✓",
    "\u{0}",
    "💥",
    "$",
    "#",
];

fn random_input(rng: &mut StdRng) -> String {
    let n_pieces = rng.random_range(0..24);
    let mut input = String::new();
    for _ in 0..n_pieces {
        if rng.random_bool(0.1) {
            input.push(char::from_u32(rng.random_range(0..0x3000)).unwrap_or('?'));
        } else {
            input.push_str(FRAGMENTS[rng.random_range(0..FRAGMENTS.len())]);
        }
    }
    input
}

#[test]
fn random_input_never_panics_the_lexer_parser_or_evaluator() {
    const SEED: u64 = 0x6769_7468_7562;
    const N_INPUTS: usize = 20_000;
    let contexts = contexts();
    let ctx = EvalContext {
        contexts: &contexts,
        status: JobStatus::Failure,
        hash_files: Some(&fake_hash_files),
    };
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut n_parsed = 0;
    for input_idx in 0..N_INPUTS {
        let input = random_input(&mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _ = expr::lexer::tokenize(&input);
            let parsed = expr::parse(&input).is_ok();
            let _ = expr::evaluate(&input, &ctx);
            let _ = expr::evaluate_if(&input, &ctx);
            let _ = expr::interpolate(&input, &ctx);
            let _ = expr::interpolate_value(&input, &ctx);
            if let Err(error) = expr::parse(&input) {
                let _ = error.to_string();
            }
            parsed
        }));
        match outcome {
            Ok(parsed) => n_parsed += usize::from(parsed),
            Err(_) => panic!("input #{input_idx} (seed {SEED:#x}) panicked: {input:?}"),
        }
    }
    // The generator must reach the evaluator, not only the error paths.
    assert!(
        n_parsed > N_INPUTS / 50,
        "only {n_parsed} of {N_INPUTS} random inputs parsed"
    );
}
