//! Poll backoff: how long the poller waits after an empty or failed fetch.
//!
//! `fetch_interval × 2^(n−1)` (exponent capped at 5) capped at `fetch_interval_max`, where `n` is the
//! longer of the empty and the error streak; a streak of 0 or 1 waits `fetch_interval`. The wait gets
//! ±20 % jitter so that many runners started together do not poll in lockstep. Pure: no clock, no
//! I/O; the randomness is an argument so tests can pin it. Imports nothing outside `std` and `rand`.

use std::time::Duration;

/// The largest exponent of the doubling, as upstream (`2^5 = 32 × fetch_interval`).
const MAX_EXPONENT: u32 = 5;

/// Streak counters and the interval they give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    fetch_interval: Duration,
    fetch_interval_max: Duration,
    consecutive_empty: u32,
    consecutive_errors: u32,
}

impl Backoff {
    /// `fetch_interval_max` below `fetch_interval` is raised to it (the config validates this too).
    pub fn new(fetch_interval: Duration, fetch_interval_max: Duration) -> Backoff {
        Backoff {
            fetch_interval,
            fetch_interval_max: fetch_interval_max.max(fetch_interval),
            consecutive_empty: 0,
            consecutive_errors: 0,
        }
    }

    /// Applies new intervals (config reload) and keeps the streaks.
    pub fn set_intervals(&mut self, fetch_interval: Duration, fetch_interval_max: Duration) {
        self.fetch_interval = fetch_interval;
        self.fetch_interval_max = fetch_interval_max.max(fetch_interval);
    }

    /// An empty answer (or a fetch that hit its deadline, which upstream treats as empty).
    pub fn record_empty(&mut self) {
        self.consecutive_empty = self.consecutive_empty.saturating_add(1);
    }

    /// A failed fetch.
    pub fn record_error(&mut self) {
        self.consecutive_errors = self.consecutive_errors.saturating_add(1);
    }

    /// A successful answer ends the error streak (an empty one then starts counting via `record_empty`).
    pub fn record_answer(&mut self) {
        self.consecutive_errors = 0;
    }

    /// A task arrived: both streaks end.
    pub fn reset(&mut self) {
        self.consecutive_empty = 0;
        self.consecutive_errors = 0;
    }

    /// The pre-jitter wait for the current streaks (what `act_runner_poll_backoff_seconds` shows).
    pub fn base_interval(&self) -> Duration {
        let streak = self.consecutive_empty.max(self.consecutive_errors);
        if streak <= 1 {
            return self.fetch_interval;
        }
        let exponent = (streak - 1).min(MAX_EXPONENT);
        self.fetch_interval
            .saturating_mul(1 << exponent)
            .min(self.fetch_interval_max)
    }

    /// The wait for the current streaks with jitter drawn from the thread's random generator.
    pub fn next_wait(&self) -> Duration {
        jitter(self.base_interval(), rand::random::<f64>())
    }
}

/// `interval ± 20 %`: `unit` in `[0, 1)` maps linearly onto `[0.8 × interval, 1.2 × interval)`.
pub fn jitter(interval: Duration, unit: f64) -> Duration {
    if interval.is_zero() {
        return interval;
    }
    let unit = unit.clamp(0.0, 1.0);
    interval.mul_f64(0.8 + 0.4 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn base_after(empty: u32, errors: u32, interval: u64, max: u64) -> Duration {
        let mut backoff = Backoff::new(secs(interval), secs(max));
        for _ in 0..empty {
            backoff.record_empty();
        }
        for _ in 0..errors {
            backoff.record_error();
        }
        backoff.base_interval()
    }

    #[test]
    fn upstream_table_with_two_seconds_and_sixty_max() {
        // (empty, errors) → wait, as upstream's calculateInterval test table.
        let table = [
            ((0, 0), 2),
            ((1, 0), 2),
            ((2, 0), 4),
            ((5, 0), 32),
            ((20, 0), 60),
            ((0, 3), 8),
            ((2, 4), 16),
        ];
        for ((empty, errors), expected) in table {
            assert_eq!(
                base_after(empty, errors, 2, 60),
                secs(expected),
                "empty={empty} errors={errors}"
            );
        }
    }

    #[test]
    fn defaults_give_two_four_five_five() {
        let mut backoff = Backoff::new(secs(2), secs(5));
        let mut waits = Vec::new();
        for _ in 0..4 {
            backoff.record_empty();
            waits.push(backoff.base_interval().as_secs());
        }
        assert_eq!(waits, [2, 4, 5, 5]);
    }

    #[test]
    fn exponent_stops_at_five_even_without_a_cap() {
        assert_eq!(base_after(50, 0, 1, 10_000), secs(32));
    }

    #[test]
    fn a_task_resets_both_streaks() {
        let mut backoff = Backoff::new(secs(2), secs(60));
        for _ in 0..4 {
            backoff.record_empty();
            backoff.record_error();
        }
        backoff.reset();
        assert_eq!(backoff.base_interval(), secs(2));
    }

    #[test]
    fn an_answer_ends_the_error_streak_only() {
        let mut backoff = Backoff::new(secs(1), secs(60));
        for _ in 0..3 {
            backoff.record_error();
        }
        backoff.record_empty();
        backoff.record_answer();
        assert_eq!(backoff.base_interval(), secs(1));
        backoff.record_empty();
        backoff.record_empty();
        assert_eq!(backoff.base_interval(), secs(4));
    }

    #[test]
    fn max_below_interval_is_raised_to_interval() {
        assert_eq!(base_after(10, 0, 5, 1), secs(5));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let interval = secs(10);
        assert_eq!(jitter(interval, 0.0), secs(8));
        assert!(jitter(interval, 0.999_999) < secs(12));
        assert!(jitter(interval, 0.999_999) > Duration::from_millis(11_999));
        for _ in 0..10_000 {
            let wait = Backoff::new(interval, interval).next_wait();
            assert!(wait >= secs(8) && wait < secs(12), "{wait:?}");
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let backoff = Backoff::new(secs(10), secs(10));
        let waits: Vec<Duration> = (0..2_000).map(|_| backoff.next_wait()).collect();
        assert!(
            waits
                .iter()
                .any(|wait| *wait < Duration::from_millis(8_500))
        );
        assert!(
            waits
                .iter()
                .any(|wait| *wait > Duration::from_millis(11_500))
        );
    }

    #[test]
    fn zero_interval_has_no_jitter() {
        assert_eq!(jitter(Duration::ZERO, 0.7), Duration::ZERO);
    }
}
