//! The daemon: poller, task conversion (Task → executor Job), reporter, spool, shutdown and drain.
//!
//! - [`backoff`]: the poll wait after empty or failed fetches (pure).
//! - [`poller`]: one poll loop, the capacity gate, `tasks_version`; hands tasks to a `TaskRunner`.
//! - [`observe`]: the events metrics and systemd watch; they never decide anything.
//! - [`reporter`]: job events → UpdateLog / UpdateTask, with the delivery guarantees.
//! - [`spool`]: the on-disk log and state spool that survives outages and crashes.
//! - [`task`]: Task → executor job, a pure conversion.
//! - [`shutdown`]: the bounded drain after admission stops.
//! - [`cache_access`]: the actions cache a task's job is told about, and its credential's grant.
//! - [`backends`]: the host options, Docker job config and bound workspaces of one task.
//! - [`execution`]: runs one admitted task (reporter, backend, executor); the poller's `TaskRunner`.
//! - [`idle`]: idle maintenance, removing stale host job directories while no job runs.
//! - `job_lines`: the daemon's own lines in a task's log (set-up block, refusals).
//! - [`job_log`]: the local copy of each task's log (`log.job.*`).
//! - [`health`]: opt-in admission (`health_check:`): free disk space and a script.
//! - [`post_task_script`]: `runner.post_task_script`, run on the host after each task.
//! - [`service`]: the lifecycle: orphans, Declare, leftover spools, poll, reload, drain, orphans.
//! - [`step_summaries`]: a job's step summaries to Gitea, when it declared `job-summary`.
//!
//! May use: `cache` (grants), `client`, `config`, `executor`. Never: `metrics`, `systemd` (the `cli` adapts
//! [`observe::DaemonEvent`]s to them).

pub mod backends;
pub mod backoff;
pub mod cache_access;
pub mod execution;
pub mod health;
pub mod idle;
mod job_lines;
pub mod job_log;
pub mod observe;
pub mod poller;
pub mod post_task_script;
pub mod reporter;
pub mod service;
pub mod shutdown;
pub mod spool;
pub mod step_summaries;
pub mod task;
