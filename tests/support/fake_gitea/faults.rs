//! Fault injection per RPC: a seeded error rate, added latency, calls never answered, dropped
//! connections, and a full outage window. Decisions are made per request by `serve`, before
//! the request reaches either protocol adapter, so both transports see the same faults.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use act_runner::client::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// What goes wrong with one RPC; rates are fractions of calls in `0.0..=1.0`, drawn from the
/// fake's seeded generator (drop first, then timeout, then error).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Fraction of calls answered with `error` instead of being handled.
    pub error_rate: f64,
    /// The answer of an injected error.
    pub error: InjectedError,
    /// Added before every call of this RPC (handled or not).
    pub latency: Duration,
    /// Fraction of calls never answered (until [`HANG_LIMIT`] or the client gives up).
    pub timeout_rate: f64,
    /// Fraction of calls whose connection is closed without an answer.
    pub drop_rate: f64,
}

impl Faults {
    /// Every call fails with `error`.
    pub fn always(error: InjectedError) -> Faults {
        Faults {
            error_rate: 1.0,
            error,
            ..Faults::default()
        }
    }

    /// Every call is slowed by `latency`.
    pub fn latency(latency: Duration) -> Faults {
        Faults {
            latency,
            ..Faults::default()
        }
    }
}

/// How an injected error looks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InjectedError {
    /// Connect `unavailable` (HTTP 503 JSON) / gRPC UNAVAILABLE.
    #[default]
    Unavailable,
    /// Gitea's DB trouble: `unknown`, HTTP 500, `rpc error: code = Internal desc = …`.
    GiteaInternal,
    /// A proxy's non-JSON error page with this HTTP status (e.g. 429, 502, 504).
    ProxyStatus(u16),
    /// Connect only: HTTP 200 `application/proto` whose body is not a valid message.
    GarbledBody,
    /// Connect only: HTTP 200 whose gzip body inflates to this many MiB of zeros (a decompression
    /// bomb: about 1 KiB on the wire per MiB).
    GzipBomb { mebibytes: usize },
}

/// A "never answered" call gives up after this, so even a hung fake is bounded.
pub const HANG_LIMIT: Duration = Duration::from_secs(600);

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Proceed,
    Fail(InjectedError),
    Hang,
    Drop,
}

pub struct FaultTable {
    per_method: Mutex<BTreeMap<Method, Faults>>,
    outage: Mutex<Option<(Instant, Instant)>>,
    rng: Mutex<StdRng>,
}

impl FaultTable {
    pub fn new(seed: u64) -> FaultTable {
        FaultTable {
            per_method: Mutex::new(BTreeMap::new()),
            outage: Mutex::new(None),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    pub fn set(&self, method: Method, faults: Faults) {
        lock(&self.per_method).insert(method, faults);
    }

    pub fn clear(&self) {
        lock(&self.per_method).clear();
        *lock(&self.outage) = None;
    }

    pub fn outage(&self, from: Instant, until: Instant) {
        *lock(&self.outage) = Some((from, until));
    }

    /// The latency to add and the verdict for a call of `method` arriving at `now`.
    pub fn decide(&self, method: Method, now: Instant) -> (Duration, Decision) {
        if let Some((from, until)) = *lock(&self.outage)
            && now >= from
            && now < until
        {
            return (Duration::ZERO, Decision::Fail(InjectedError::Unavailable));
        }
        let Some(faults) = lock(&self.per_method).get(&method).cloned() else {
            return (Duration::ZERO, Decision::Proceed);
        };
        let draw: f64 = lock(&self.rng).random();
        let decision = if draw < faults.drop_rate {
            Decision::Drop
        } else if draw < faults.drop_rate + faults.timeout_rate {
            Decision::Hang
        } else if draw < faults.drop_rate + faults.timeout_rate + faults.error_rate {
            Decision::Fail(faults.error)
        } else {
            Decision::Proceed
        };
        (faults.latency, decision)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not wedge the fake for the others.
    act_runner::sync::lock(mutex)
}
