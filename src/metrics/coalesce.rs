//! Single-flight rendering for `/metrics`: scrapes that wait at the same time share one body.
//!
//! A scrape gets the first render that *started after it arrived*, so it never sees values older
//! than its own arrival. Renders never overlap: a scrape arriving during a render waits for the
//! next one, and every scrape waiting when that next render starts shares its body (one `Bytes`,
//! no copy). Under N concurrent scrapes the registry is rendered about twice per round instead
//! of N times. May use: `crate::sync`, `bytes`, `tokio::sync`.

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;

/// Runs `render` at most once at a time and hands its output to every scrape fresh enough for it.
pub(super) struct CoalescedRender<R> {
    render: R,
    state: Mutex<State>,
    /// The last finished render. Sent only while `state` is held, together with clearing
    /// `State::rendering`, so a waiter that sees an old result also sees a render it may start.
    finished: watch::Sender<Finished>,
}

struct State {
    /// Renders started so far; the number of a render is the count when it started.
    n_started: u64,
    rendering: bool,
}

#[derive(Clone)]
struct Finished {
    render_number: u64,
    /// `None` when that render failed (the renderer logged why).
    body: Option<Bytes>,
}

impl<R: Fn() -> Option<Bytes>> CoalescedRender<R> {
    pub(super) fn new(render: R) -> Self {
        let (finished, _) = watch::channel(Finished {
            render_number: 0,
            body: None,
        });
        Self {
            render,
            state: Mutex::new(State {
                n_started: 0,
                rendering: false,
            }),
            finished,
        }
    }

    /// A body rendered after this call began, or `None` if that render failed.
    pub(super) async fn body(&self) -> Option<Bytes> {
        // Subscribed before looking, so a render finishing after the look still wakes this scrape.
        let mut finished = self.finished.subscribe();
        let needed = {
            let state = self.lock_state();
            // A render under way started before this scrape arrived: only the next one will do.
            state.n_started + 1
        };
        loop {
            // Marked seen before deciding, so a render published after this wakes `changed`.
            drop(finished.borrow_and_update());
            match self.next_step(needed) {
                Step::Fresh(body) => return body,
                Step::Render(turn) => return turn.run(),
                Step::Wait => {}
            }
            // The sender lives in `self`, so `changed` cannot fail while this borrow holds.
            if finished.changed().await.is_err() {
                return None;
            }
        }
    }

    /// What a scrape needing render `needed` does now. Decided under the state lock, which every
    /// publication holds too: a render that started and finished since the scrape last looked is
    /// taken, not rendered again.
    fn next_step(&self, needed: u64) -> Step<'_, R> {
        let mut state = self.lock_state();
        {
            let last = self.finished.borrow();
            if last.render_number >= needed {
                return Step::Fresh(last.body.clone());
            }
        }
        if state.rendering {
            return Step::Wait;
        }
        state.rendering = true;
        state.n_started += 1;
        Step::Render(RenderTurn {
            coalesced: self,
            render_number: state.n_started,
            body: None,
        })
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

enum Step<'a, R: Fn() -> Option<Bytes>> {
    /// A render that started after the scrape arrived has finished: its body.
    Fresh(Option<Bytes>),
    /// This scrape renders.
    Render(RenderTurn<'a, R>),
    /// A render is under way; the scrape waits for it to finish.
    Wait,
}

/// One render in progress. Dropping it publishes the result and frees the turn, also when the
/// render panicked, so waiters never wait on a render that will not finish.
struct RenderTurn<'a, R: Fn() -> Option<Bytes>> {
    coalesced: &'a CoalescedRender<R>,
    render_number: u64,
    body: Option<Bytes>,
}

impl<R: Fn() -> Option<Bytes>> RenderTurn<'_, R> {
    fn run(mut self) -> Option<Bytes> {
        self.body = (self.coalesced.render)();
        self.body.clone()
    }
}

impl<R: Fn() -> Option<Bytes>> Drop for RenderTurn<'_, R> {
    fn drop(&mut self) {
        let mut state = self.coalesced.lock_state();
        state.rendering = false;
        self.coalesced.finished.send_replace(Finished {
            render_number: self.render_number,
            body: self.body.take(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::metrics::{Metrics, RunnerInfo};

    /// A render that numbers its bodies and holds the first one until `release` is sent.
    fn held_first_render(
        n_renders: Arc<AtomicU64>,
    ) -> (impl Fn() -> Option<Bytes>, std::sync::mpsc::SyncSender<()>) {
        let (release, released) = std::sync::mpsc::sync_channel::<()>(1);
        let released = Mutex::new(released);
        let render = move || {
            let number = n_renders.fetch_add(1, Ordering::SeqCst) + 1;
            if number == 1 {
                let _ = crate::sync::lock(&released).recv_timeout(Duration::from_secs(10));
            }
            Some(Bytes::from(number.to_string()))
        };
        (render, release)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_arriving_during_a_render_share_the_next_one() {
        let n_renders = Arc::new(AtomicU64::new(0));
        let (render, release) = held_first_render(Arc::clone(&n_renders));
        let coalesced = Arc::new(CoalescedRender::new(render));
        let first = tokio::spawn({
            let coalesced = Arc::clone(&coalesced);
            async move { coalesced.body().await }
        });
        while n_renders.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let later: Vec<_> = (0..10)
            .map(|_| {
                let coalesced = Arc::clone(&coalesced);
                tokio::spawn(async move { coalesced.body().await })
            })
            .collect();
        // Every later scrape is waiting (subscribed) before the first render finishes.
        tokio::time::timeout(Duration::from_secs(5), async {
            while coalesced.finished.receiver_count() < 11 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the later scrapes wait");
        release.send(()).unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), first).await;
        assert_eq!(first.unwrap().unwrap(), Some(Bytes::from("1")));
        for scrape in later {
            let body = tokio::time::timeout(Duration::from_secs(5), scrape).await;
            // Not the render that began before they arrived: the one after, shared.
            assert_eq!(body.unwrap().unwrap(), Some(Bytes::from("2")));
        }
        assert_eq!(n_renders.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_scrape_after_an_update_sees_it() {
        let metrics = Metrics::new(RunnerInfo {
            name: "runner-1".into(),
            capacity: 4,
            readiness_grace: Duration::from_secs(30),
        });
        let for_render = metrics.clone();
        let coalesced = CoalescedRender::new(move || for_render.render().ok().map(Bytes::from));
        let before = coalesced.body().await.unwrap();
        assert!(
            std::str::from_utf8(&before)
                .unwrap()
                .contains("act_runner_job_running 0\n")
        );
        metrics.job_started();
        let after = coalesced.body().await.unwrap();
        assert!(
            std::str::from_utf8(&after)
                .unwrap()
                .contains("act_runner_job_running 1\n")
        );
    }

    #[tokio::test]
    async fn a_panicking_render_frees_the_turn() {
        let n_renders = AtomicU64::new(0);
        let coalesced = Arc::new(CoalescedRender::new(move || {
            if n_renders.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("render failed");
            }
            Some(Bytes::from_static(b"ok"))
        }));
        let panicked = tokio::spawn({
            let coalesced = Arc::clone(&coalesced);
            async move { coalesced.body().await }
        });
        assert!(panicked.await.is_err());
        let body = tokio::time::timeout(Duration::from_secs(5), coalesced.body()).await;
        assert_eq!(body.unwrap(), Some(Bytes::from_static(b"ok")));
    }
}
