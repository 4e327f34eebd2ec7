//! Step summaries to Gitea: when the instance declared the `job-summary` capability, a job's
//! spec gets a [`SummaryOutlet`] and a background task sends what comes out of it, one PUT per
//! step ([`crate::client::step_summary`]), at most two tries each, the whole phase within
//! [`PHASE_LIMIT`]. A failure is a warning in the runner's log: it never changes the job's result.
//! Without the capability, a runtime URL or token, or a `JobID` claim, nothing is sent.
//! May use: `client`, `executor` (its summary types). Never: `metrics`, `systemd`.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::client::step_summary::{StepSummaryUploader, runtime_token_job_id};
use crate::executor::JobSpec;
use crate::executor::summary::{SummaryHandoff, SummaryOutlet};

/// The whole sending phase, so a slow or unreachable server delays the job's result little.
pub const PHASE_LIMIT: Duration = Duration::from_secs(15);
/// Tries per step.
const TRIES: usize = 2;
/// The capability Gitea announces in `X-Gitea-Actions-Capabilities`.
const CAPABILITY: &str = "job-summary";

/// Whether the Declare answer lists `job-summary` (a comma- or space-separated list).
pub fn server_accepts_summaries(capabilities: &str) -> bool {
    capabilities
        .split([',', ' '])
        .any(|capability| capability.trim() == CAPABILITY)
}

/// Gives `spec` an outlet and starts the task that sends what comes out of it, when the
/// server takes summaries and the job has what the upload needs.
pub fn start(spec: &mut JobSpec, run_id: &str, capabilities: &str, insecure: bool) {
    if !server_accepts_summaries(capabilities) || run_id.is_empty() {
        return;
    }
    let runtime_url = spec.extra_env.get("ACTIONS_RUNTIME_URL");
    let token = spec.extra_env.get("ACTIONS_RUNTIME_TOKEN");
    let (Some(runtime_url), Some(token)) = (runtime_url, token) else {
        return;
    };
    let Some(job_id) = runtime_token_job_id(token) else {
        tracing::warn!("the runtime token has no JobID claim; step summaries are not sent");
        return;
    };
    let uploader = match StepSummaryUploader::new(
        runtime_url,
        token,
        run_id,
        job_id,
        insecure,
        PHASE_LIMIT / TRIES as u32,
    ) {
        Ok(uploader) => uploader,
        Err(error) => {
            tracing::warn!(error = %error, "step summaries are not sent");
            return;
        }
    };
    // The job waits a little longer than the phase, so it is the phase's bound that ends it.
    let (outlet, handoff) = SummaryOutlet::new(PHASE_LIMIT + Duration::from_secs(1));
    spec.summary_outlet = Some(outlet);
    tokio::spawn(deliver(handoff, uploader));
}

/// Sends the handed-out summaries; dropping the handoff lets the job go on.
async fn deliver(handoff: oneshot::Receiver<SummaryHandoff>, uploader: StepSummaryUploader) {
    let Ok(handoff) = handoff.await else {
        return; // The job had no summaries, or ended without handing them out.
    };
    let deadline = Instant::now() + PHASE_LIMIT;
    let sent = tokio::time::timeout_at(deadline, async {
        for summary in &handoff.summaries {
            let mut tries = 0;
            loop {
                tries += 1;
                match uploader.put(summary.step_idx, &summary.markdown).await {
                    Ok(()) => break,
                    Err(error) if tries < TRIES => {
                        tracing::debug!(step = summary.step_idx, error = %error, "step summary refused; trying again");
                    }
                    Err(error) => {
                        tracing::warn!(step = summary.step_idx, error = %error, "step summary not delivered");
                        break;
                    }
                }
            }
        }
    })
    .await;
    if sent.is_err() {
        tracing::warn!(
            limit_s = PHASE_LIMIT.as_secs(),
            "step summaries not all delivered in time"
        );
    }
    drop(handoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_is_one_item_of_the_list() {
        assert!(server_accepts_summaries("job-summary"));
        assert!(server_accepts_summaries("cancelling, job-summary"));
        assert!(server_accepts_summaries("cancelling,job-summary"));
        assert!(!server_accepts_summaries("job-summary-v2"));
        assert!(!server_accepts_summaries(""));
    }

    #[test]
    fn without_the_capability_the_job_gets_no_outlet() {
        let mut spec = JobSpec::new(String::new(), String::new(), String::new());
        spec.extra_env
            .insert("ACTIONS_RUNTIME_URL".into(), "http://gitea.test/".into());
        spec.extra_env
            .insert("ACTIONS_RUNTIME_TOKEN".into(), "a.eyJKb2JJRCI6NH0.c".into());
        start(&mut spec, "3", "cancelling", false);
        assert!(spec.summary_outlet.is_none());
    }
}
