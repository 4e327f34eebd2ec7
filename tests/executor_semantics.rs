//! Workflow semantics that must match GitHub's (issue 19, items 8 to 12), driven through `run_job`
//! on the host backend; `tests/workflows/` holds a self-checking workflow for each, run on both
//! backends.

use act_runner::executor::event::Conclusion;
use tokio_util::sync::CancellationToken;

use crate::executor::{log_lines, run, spec};

/// The job `job` of a workflow whose steps are `steps` (YAML indented for a job's `steps:`).
fn job_yaml(env: &str, steps: &str) -> String {
    format!("on: push\n{env}jobs:\n  job:\n    runs-on: ubuntu-latest\n    steps:\n{steps}")
}

#[tokio::test]
async fn add_mask_covers_a_line_printed_at_once_on_the_other_stream() {
    // Printed back to back, each value on the other stream than its add-mask: read from two pipes
    // apart, some of these lines would reach the masker before their add-mask.
    let steps = r#"      - run: |
          for i in $(seq 1 60); do
            echo "::add-mask::value-$i-of-the-loop"
            echo "value-$i-of-the-loop" >&2
            echo "::add-mask::other-$i-of-the-loop" >&2
            echo "other-$i-of-the-loop"
          done
"#;
    let (result, events) = run(spec(&job_yaml("", steps)), CancellationToken::new()).await;
    assert_eq!(result, Conclusion::Success);
    let lines = log_lines(&events);
    let leaked: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("of-the-loop"))
        .collect();
    assert!(leaked.is_empty(), "{} leaked: {leaked:?}", leaked.len());
    assert_eq!(lines.iter().filter(|line| *line == "***").count(), 120);
}

#[tokio::test]
async fn unsecure_commands_are_allowed_by_the_workflow_or_the_job_env() {
    let steps = r#"      - run: |
          echo "::set-env name=LEGACY::set"
          echo "::add-path::/opt/legacy-bin"
      - run: |
          test "$LEGACY" = set
          case "$PATH" in /opt/legacy-bin:*) ;; *) exit 1;; esac
"#;
    let workflow_env = "env:\n  ACTIONS_ALLOW_UNSECURE_COMMANDS: true\n";
    let (result, events) = run(
        spec(&job_yaml(workflow_env, steps)),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(result, Conclusion::Success, "{:?}", log_lines(&events));
    let job_env = job_yaml("", steps).replace(
        "    steps:\n",
        "    env:\n      ACTIONS_ALLOW_UNSECURE_COMMANDS: 'True'\n    steps:\n",
    );
    let (result, events) = run(spec(&job_env), CancellationToken::new()).await;
    assert_eq!(result, Conclusion::Success, "{:?}", log_lines(&events));
    let (result, _) = run(spec(&job_yaml("", steps)), CancellationToken::new()).await;
    assert_eq!(result, Conclusion::Failure, "refused without the variable");
}

#[tokio::test]
async fn a_composite_action_sees_its_directory_as_github_action_path() {
    // `@@` stands for the dollar sign, which the writing step would otherwise expand itself.
    let steps = r#"      - run: |
          mkdir -p greet
          printf '%s\n' 'runs:' '  using: composite' '  steps:' \
            '    - shell: sh' \
            '      run: echo "path=@@{{ github.action_path }} env=$GITHUB_ACTION_PATH"' > greet/action.yml
          sed -i 's/@@/$/' greet/action.yml
      - uses: ./greet
      - run: echo "after=${{ github.action_path }}."
"#;
    let (result, events) = run(spec(&job_yaml("", steps)), CancellationToken::new()).await;
    let lines = log_lines(&events);
    assert_eq!(result, Conclusion::Success, "{lines:?}");
    let line = lines
        .iter()
        .find(|line| line.starts_with("path="))
        .expect("the composite step's line");
    let (path, env) = line["path=".len()..].split_once(" env=").unwrap();
    assert!(path.ends_with("/greet"), "{line}");
    assert_eq!(path, env);
    assert!(lines.iter().any(|line| line == "after=."), "{lines:?}");
}

#[tokio::test]
async fn post_if_is_evaluated_as_written_and_posts_run_in_reverse_after_a_failure() {
    let steps = r#"      - run: |
          for name in first second third success-only; do
            mkdir -p "$name"
            echo "console.log('main of $name')" > "$name/main.js"
            echo "console.log('post of $name')" > "$name/post.js"
            printf 'runs:\n  using: node20\n  main: main.js\n  post: post.js\n' > "$name/action.yml"
          done
          echo "  post-if: env.KEEP == 'yes'" >> second/action.yml
          echo "  post-if: success()" >> success-only/action.yml
      - uses: ./first
      - uses: ./second
      - uses: ./success-only
      - uses: ./third
      - run: exit 1
"#;
    let yaml = job_yaml("env:\n  KEEP: 'yes'\n", steps);
    let (result, events) = run(spec(&yaml), CancellationToken::new()).await;
    let lines = log_lines(&events);
    assert_eq!(result, Conclusion::Failure);
    let posts: Vec<_> = lines
        .iter()
        .filter(|line| line.starts_with("post of"))
        .collect();
    assert_eq!(
        posts,
        ["post of third", "post of second", "post of first"],
        "{lines:?}"
    );
}
