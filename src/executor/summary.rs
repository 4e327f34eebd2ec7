//! Step summaries (`GITHUB_STEP_SUMMARY`): what each step wrote, kept bounded and masked, and
//! handed out once the job's steps are done.
//!
//! The executor knows nothing of where summaries go. A caller that wants them puts a
//! [`SummaryOutlet`] in the spec; after the steps (and post stages) the job sends the non-empty
//! summaries through it and waits, at most the outlet's bound, until the receiver drops the
//! [`SummaryHandoff`]'s `done` sender: so they are delivered before the job's result. A step keeps
//! at most [`MAX_STEP_SUMMARY_BYTES`] (GitHub's limit per step); more is cut at a character
//! boundary and ends with [`TRUNCATED_MARKER`].

use std::fmt;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// GitHub's limit for one step's summary.
pub const MAX_STEP_SUMMARY_BYTES: usize = 1024 * 1024;
/// Ends a summary that was cut to [`MAX_STEP_SUMMARY_BYTES`].
pub const TRUNCATED_MARKER: &str =
    "\n\n---\n**This step summary was truncated: a step's summary may hold at most 1 MiB.**\n";

/// One step's summary, ready to show.
#[derive(Clone, PartialEq, Eq)]
pub struct StepSummary {
    /// Index of the step in the job's `steps:` list, 0-based.
    pub step_idx: usize,
    /// Markdown, masked, at most [`MAX_STEP_SUMMARY_BYTES`].
    pub markdown: String,
}

impl fmt::Debug for StepSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepSummary")
            .field("step_idx", &self.step_idx)
            .field("bytes", &self.markdown.len())
            .finish()
    }
}

/// What the job hands out: its summaries, and `done`, whose drop lets the job go on.
#[derive(Debug)]
pub struct SummaryHandoff {
    pub summaries: Vec<StepSummary>,
    pub done: oneshot::Sender<()>,
}

/// Where a job's summaries go, and how long the job waits for them to be taken care of.
#[derive(Debug)]
pub struct SummaryOutlet {
    sender: oneshot::Sender<SummaryHandoff>,
    wait: Duration,
}

impl SummaryOutlet {
    /// An outlet and its receiving end; the job waits at most `wait` once it handed out.
    pub fn new(wait: Duration) -> (SummaryOutlet, oneshot::Receiver<SummaryHandoff>) {
        let (sender, receiver) = oneshot::channel();
        (SummaryOutlet { sender, wait }, receiver)
    }
}

/// The summaries of a running job, by step.
#[derive(Debug, Default)]
pub struct Summaries {
    by_step: Vec<(usize, Vec<u8>, bool)>,
}

impl Summaries {
    /// Adds what one process of step `step_idx` wrote (a composite action's steps each add to
    /// their top-level step). Keeps one byte past the limit so the cut is known.
    pub fn add(&mut self, step_idx: usize, written: &[u8]) {
        if written.is_empty() {
            return;
        }
        let entry = match self
            .by_step
            .iter_mut()
            .position(|(idx, ..)| *idx == step_idx)
        {
            Some(position) => &mut self.by_step[position],
            None => {
                self.by_step.push((step_idx, Vec::new(), false));
                self.by_step.last_mut().expect("just pushed")
            }
        };
        let space_left = (MAX_STEP_SUMMARY_BYTES + 1).saturating_sub(entry.1.len());
        entry
            .1
            .extend_from_slice(&written[..written.len().min(space_left)]);
        entry.2 |= written.len() > space_left;
    }

    /// Adds the summaries of a job whose step indices start at `offset` in the job's log.
    pub fn absorb(&mut self, job: Summaries, offset: usize) {
        for (step_idx, bytes, cut) in job.by_step {
            self.add(offset + step_idx, &bytes);
            if cut && let Some(entry) = self.by_step.last_mut() {
                entry.2 = true;
            }
        }
    }

    /// The summaries to send, masked with `mask`, each within the limit.
    fn finish(self, mask: impl Fn(&str) -> String) -> Vec<StepSummary> {
        let mut summaries: Vec<StepSummary> = self
            .by_step
            .into_iter()
            .map(|(step_idx, bytes, cut)| {
                let text = String::from_utf8_lossy(&bytes);
                let masked = mask(&text);
                StepSummary {
                    step_idx,
                    markdown: bounded(masked, cut),
                }
            })
            .filter(|summary| !summary.markdown.trim().is_empty())
            .collect();
        summaries.sort_by_key(|summary| summary.step_idx);
        summaries
    }
}

/// `text` within [`MAX_STEP_SUMMARY_BYTES`], cut at a character boundary with the marker when
/// it is longer (or was already cut when it was read).
fn bounded(mut text: String, cut: bool) -> String {
    if !cut && text.len() <= MAX_STEP_SUMMARY_BYTES {
        return text;
    }
    let mut end = MAX_STEP_SUMMARY_BYTES - TRUNCATED_MARKER.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(TRUNCATED_MARKER);
    text
}

/// Hands the summaries out through `outlet` (when there are any) and waits for them to be taken
/// care of, at most the outlet's bound, or until the job is cancelled.
pub(super) async fn hand_out(
    outlet: Option<SummaryOutlet>,
    summaries: Summaries,
    mask: impl Fn(&str) -> String,
    cancel: &CancellationToken,
) {
    let Some(outlet) = outlet else {
        return;
    };
    let summaries = summaries.finish(mask);
    if summaries.is_empty() {
        return;
    }
    let (done, released) = oneshot::channel();
    let handoff = SummaryHandoff { summaries, done };
    if outlet.sender.send(handoff).is_err() {
        return;
    }
    tokio::select! {
        _ = tokio::time::timeout(outlet.wait, released) => {}
        () = cancel.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_keeps_what_its_processes_wrote_in_order() {
        let mut summaries = Summaries::default();
        summaries.add(2, b"## two\n");
        summaries.add(0, b"# zero\n");
        summaries.add(2, b"more\n");
        summaries.add(1, b"");
        let finished = summaries.finish(str::to_owned);
        let shown: Vec<(usize, &str)> = finished
            .iter()
            .map(|summary| (summary.step_idx, summary.markdown.as_str()))
            .collect();
        assert_eq!(shown, [(0, "# zero\n"), (2, "## two\nmore\n")]);
    }

    #[test]
    fn a_long_summary_is_cut_at_a_character_with_the_marker() {
        let mut summaries = Summaries::default();
        let long = "é".repeat(2 * MAX_STEP_SUMMARY_BYTES);
        summaries.add(0, long.as_bytes());
        summaries.add(0, b"never kept");
        let finished = summaries.finish(str::to_owned);
        let markdown = &finished[0].markdown;
        assert!(markdown.len() <= MAX_STEP_SUMMARY_BYTES);
        assert!(markdown.ends_with(TRUNCATED_MARKER));
        assert!(markdown.starts_with("éé"));
        assert!(!markdown.contains("never kept"));
    }

    #[test]
    fn a_summary_of_exactly_the_limit_is_whole() {
        let mut summaries = Summaries::default();
        summaries.add(0, &vec![b'x'; MAX_STEP_SUMMARY_BYTES]);
        let finished = summaries.finish(str::to_owned);
        assert_eq!(finished[0].markdown.len(), MAX_STEP_SUMMARY_BYTES);
        assert!(!finished[0].markdown.ends_with(TRUNCATED_MARKER));
    }

    #[test]
    fn summaries_are_masked() {
        let mut summaries = Summaries::default();
        summaries.add(0, b"token s3cret\n");
        let finished = summaries.finish(|text| text.replace("s3cret", "***"));
        assert_eq!(finished[0].markdown, "token ***\n");
    }

    #[tokio::test]
    async fn the_job_waits_until_the_summaries_are_taken_care_of_within_the_bound() {
        let (outlet, receiver) = SummaryOutlet::new(Duration::from_secs(30));
        let mut summaries = Summaries::default();
        summaries.add(1, b"hello");
        let taker = tokio::spawn(async move {
            let handoff = receiver.await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            handoff.summaries
        });
        hand_out(
            Some(outlet),
            summaries,
            str::to_owned,
            &CancellationToken::new(),
        )
        .await;
        let taken = taker.await.unwrap();
        assert_eq!(taken[0].markdown, "hello");

        tokio::time::pause();
        let (outlet, _receiver_kept) = SummaryOutlet::new(Duration::from_secs(15));
        let mut summaries = Summaries::default();
        summaries.add(0, b"x");
        let started = tokio::time::Instant::now();
        hand_out(
            Some(outlet),
            summaries,
            str::to_owned,
            &CancellationToken::new(),
        )
        .await;
        assert!(started.elapsed() >= Duration::from_secs(15));
    }
}
