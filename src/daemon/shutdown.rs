//! Shutdown and drain: admission has stopped; running jobs get `shutdown_timeout` to finish, then
//! are cancelled and still report their final state, and only then does delivery give up (what is
//! left stays in the spool for the next start).
//!
//! Every phase has its own bound, so a stuck job or an unreachable Gitea can delay the exit but
//! never block it. Signals are not handled here: the caller passes the future that says "stop"
//! (mini-redis's `server::run(listener, shutdown)`). May use: tokio, `daemon::observe`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long cancelled jobs get to clean up (the backends bound their clean-up by a minute) and to
/// deliver their final report before delivery is told to stop.
pub const CANCELLED_JOBS_LIMIT: Duration = Duration::from_secs(90);
/// How long jobs get after delivery was told to stop (spooling what is left is quick).
pub const SPOOL_LIMIT: Duration = Duration::from_secs(10);

/// The tokens a drain pulls, in order.
#[derive(Debug, Clone)]
pub struct DrainTokens {
    /// Cancels every running job (their steps, containers, processes).
    pub jobs_cancel: CancellationToken,
    /// Stops report delivery; undelivered logs and state stay in the spool.
    pub delivery_exit: CancellationToken,
}

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every job finished within `shutdown_timeout`.
    Finished,
    /// The grace ran out; jobs were cancelled and then ended.
    Cancelled,
    /// Even cancelled jobs did not end in time; the process exits anyway.
    Abandoned,
}

/// Waits for the jobs on `jobs` (whose admission has stopped) in three bounded phases.
pub async fn drain(
    jobs: &TaskTracker,
    tokens: &DrainTokens,
    shutdown_timeout: Duration,
    cancelled_jobs_limit: Duration,
) -> DrainOutcome {
    jobs.close();
    if tokio::time::timeout(shutdown_timeout, jobs.wait())
        .await
        .is_ok()
    {
        return DrainOutcome::Finished;
    }
    tracing::warn!(
        running = jobs.len(),
        "shutdown_timeout passed, cancelling running jobs"
    );
    tokens.jobs_cancel.cancel();
    if tokio::time::timeout(cancelled_jobs_limit, jobs.wait())
        .await
        .is_ok()
    {
        return DrainOutcome::Cancelled;
    }
    tracing::error!(
        running = jobs.len(),
        "cancelled jobs did not finish reporting; keeping their reports in the spool"
    );
    tokens.delivery_exit.cancel();
    if tokio::time::timeout(SPOOL_LIMIT, jobs.wait())
        .await
        .is_err()
    {
        tracing::error!(running = jobs.len(), "jobs still running at exit");
    }
    DrainOutcome::Abandoned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> DrainTokens {
        DrainTokens {
            jobs_cancel: CancellationToken::new(),
            delivery_exit: CancellationToken::new(),
        }
    }

    /// A job that takes `work` unless cancelled, then `report` to deliver (cut by delivery exit).
    fn spawn_job(jobs: &TaskTracker, tokens: &DrainTokens, work: Duration, report: Duration) {
        let (cancel, exit) = (tokens.jobs_cancel.clone(), tokens.delivery_exit.clone());
        jobs.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(work) => {}
                _ = cancel.cancelled() => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(report) => {}
                _ = exit.cancelled() => {}
            }
        });
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_within_the_grace_finish_untouched() {
        let (jobs, tokens) = (TaskTracker::new(), tokens());
        spawn_job(&jobs, &tokens, Duration::from_secs(20), Duration::ZERO);
        let outcome = drain(
            &jobs,
            &tokens,
            Duration::from_secs(30),
            CANCELLED_JOBS_LIMIT,
        )
        .await;
        assert_eq!(outcome, DrainOutcome::Finished);
        assert!(!tokens.jobs_cancel.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_grace_jobs_are_cancelled_and_still_report() {
        let (jobs, tokens) = (TaskTracker::new(), tokens());
        spawn_job(
            &jobs,
            &tokens,
            Duration::from_secs(3600),
            Duration::from_secs(5),
        );
        let started = tokio::time::Instant::now();
        let outcome = drain(
            &jobs,
            &tokens,
            Duration::from_secs(10),
            CANCELLED_JOBS_LIMIT,
        )
        .await;
        assert_eq!(outcome, DrainOutcome::Cancelled);
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        assert!(!tokens.delivery_exit.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_grace_cancels_at_once() {
        let (jobs, tokens) = (TaskTracker::new(), tokens());
        spawn_job(
            &jobs,
            &tokens,
            Duration::from_secs(3600),
            Duration::from_secs(1),
        );
        let started = tokio::time::Instant::now();
        let outcome = drain(&jobs, &tokens, Duration::ZERO, CANCELLED_JOBS_LIMIT).await;
        assert_eq!(outcome, DrainOutcome::Cancelled);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_stuck_on_gitea_is_cut_and_left_in_the_spool() {
        let (jobs, tokens) = (TaskTracker::new(), tokens());
        spawn_job(
            &jobs,
            &tokens,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        let started = tokio::time::Instant::now();
        let outcome = drain(&jobs, &tokens, Duration::from_secs(5), CANCELLED_JOBS_LIMIT).await;
        assert_eq!(outcome, DrainOutcome::Abandoned);
        assert!(tokens.delivery_exit.is_cancelled());
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5) + CANCELLED_JOBS_LIMIT
        );
        assert!(jobs.is_empty());
    }
}
