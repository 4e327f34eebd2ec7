//! The workflow engine: runs one job of a GitHub Actions workflow on a backend and emits job events.
//! Imports nothing of `client`, `daemon`, `systemd` or `metrics`.
//!
//! # Entry point
//! [`run_job`] takes a [`JobSpec`] (the workflow text, the job id, and the contexts: `github`, env,
//! vars, secrets, inputs, matrix, needs, runner name, timeout cap, runtime env, extra masks), a
//! [`backend::Backend`] (`backend::host::HostBackend` or the docker backend) and an event sender, and
//! returns the job's [`event::Conclusion`]. Events follow the order documented in [`event`]; every
//! log line is masked and has had its workflow commands applied before it is sent.
//!
//! ```no_run
//! # async fn example() {
//! use act_runner::executor::{JobSpec, run_job, backend::host::HostBackend};
//! let spec = JobSpec::new("on: push\njobs:\n  a:\n    steps: [{run: echo hi}]\n".into(), "ci.yml".into(), "a".into());
//! let mut backend = HostBackend::new(&std::env::temp_dir());
//! let (events, mut received) = tokio::sync::mpsc::channel(64);
//! let printer = tokio::spawn(async move { while let Some(event) = received.recv().await { println!("{event:?}"); } });
//! let result = run_job(spec, &mut backend, events, tokio_util::sync::CancellationToken::new()).await;
//! # let _ = (result, printer.await);
//! # }
//! ```
//!
//! # Rooms
//! - [`model`]: the workflow model and its strict parser (positions in every error); matrix expansion.
//! - [`expr`]: the expression language.
//! - `job`, `step`, `contexts`, `scope`, `shell`: running a job, a step, building contexts, evaluating fields.
//! - [`commands`], [`command_files`], [`masking`]: what happens to a step's output and files;
//!   [`line_batch`]: the output travels as batches of lines, one per read of a stream.
//! - [`backend`]: where steps run.
//! - [`hooks`]: the administrator's job hooks, run before the first step and after the last.
//! - [`plan`]: the local planner `exec` uses (jobs in `needs` order, matrix expanded).

mod action;
pub mod backend;
pub mod command_files;
pub mod commands;
mod contexts;
mod emitter;
pub mod event;
pub mod expr;
mod hash_files;
pub mod hooks;
mod image_os;
pub mod inputs;
mod job;
pub mod line_batch;
mod local_tree;
mod log_checkpoint;
pub mod masking;
pub mod model;
pub mod plan;
mod process;
mod reusable;
mod scope;
mod shell;
mod spec;
mod step;
pub mod summary;

pub use job::run_job;
pub use local_tree::LocalTree;
pub use spec::{
    ActionSettings, DEFAULT_ACTIONS_URL, JobSpec, MatrixPlan, NeedResult, TrustedGitServer,
    check_workflow, conclusion_mark, conclusion_name, matrix_plan,
};
