//! A small pool of pre-created job networks, so a job does not wait for `docker network create`
//! (about 90 ms, most of the start overhead against a raw container).
//!
//! Each network is single-use: a job takes one, its containers join it, and the job's cleanup
//! removes it like a network it had created itself. So two live jobs never share a network, and
//! services stay reachable by alias (a pooled network is an ordinary user-defined bridge).
//! Its replacement is created once the job's containers have started ([`NetworkPool::replenish`]):
//! a `network create` running alongside a container start slows that start in dockerd. Spare networks carry the
//! runner's UUID and [`LABEL_NETWORK_POOL`] but no task id, so the daemon's start-up orphan sweep
//! removes those a crash left behind; [`NetworkPool::shutdown`] removes the rest.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bollard::Docker;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{LABEL_RUNNER_UUID, network};

/// Label marking a spare network of a [`NetworkPool`] (value `true`).
pub const LABEL_NETWORK_POOL: &str = "act-runner.network-pool";

/// Pre-created job networks of one runner. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct NetworkPool {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    runner_uuid: String,
    /// Spare networks, oldest first.
    ready: Mutex<VecDeque<String>>,
    /// Networks taken and not yet replaced.
    owed: AtomicUsize,
    /// Set by `shutdown`: no more creations, and one finishing afterwards removes its network.
    closed: CancellationToken,
    creations: TaskTracker,
}

impl std::fmt::Debug for NetworkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkPool")
            .field("runner_uuid", &self.inner.runner_uuid)
            .field("ready", &self.inner.ready_queue().len())
            .finish()
    }
}

impl NetworkPool {
    /// Starts a pool of `size` networks for the runner `runner_uuid`; they are created in the
    /// background (call from inside a tokio runtime).
    pub fn start(docker: Docker, runner_uuid: &str, size: usize) -> NetworkPool {
        let pool = NetworkPool {
            inner: Arc::new(Inner {
                docker,
                runner_uuid: runner_uuid.to_string(),
                ready: Mutex::new(VecDeque::new()),
                owed: AtomicUsize::new(0),
                closed: CancellationToken::new(),
                creations: TaskTracker::new(),
            }),
        };
        for _ in 0..size {
            pool.create_one();
        }
        pool
    }

    /// A ready network, now owned by the caller (who removes it after the job, and calls
    /// [`NetworkPool::replenish`] once its containers have started), or `None` when none is ready.
    pub fn take(&self) -> Option<String> {
        let taken = self.inner.ready_queue().pop_front()?;
        self.inner.owed.fetch_add(1, Ordering::Relaxed);
        Some(taken)
    }

    /// Starts creating a replacement for every network taken so far.
    pub fn replenish(&self) {
        for _ in 0..self.inner.owed.swap(0, Ordering::Relaxed) {
            self.create_one();
        }
    }

    /// How many networks are ready now.
    pub fn n_ready(&self) -> usize {
        self.inner.ready_queue().len()
    }

    /// Stops creating, waits for creations in flight, and removes every spare network.
    pub async fn shutdown(&self) {
        self.inner.closed.cancel();
        self.inner.creations.close();
        self.inner.creations.wait().await;
        let spares: Vec<String> = self.inner.ready_queue().drain(..).collect();
        for name in spares {
            if let Err(error) = network::remove(&self.inner.docker, &name).await {
                tracing::warn!(network = %name, error = %error, "cannot remove a spare job network");
            }
        }
    }

    fn create_one(&self) {
        if self.inner.closed.is_cancelled() {
            return;
        }
        let inner = Arc::clone(&self.inner);
        self.inner.creations.spawn(async move {
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            let name = format!("act-runner-job-network-{}", &suffix[..16]);
            let labels = HashMap::from([
                (LABEL_RUNNER_UUID.to_string(), inner.runner_uuid.clone()),
                (LABEL_NETWORK_POOL.to_string(), String::from("true")),
            ]);
            match network::create(&inner.docker, &name, &labels).await {
                Ok(()) if inner.closed.is_cancelled() => {
                    let _ = network::remove(&inner.docker, &name).await;
                }
                Ok(()) => inner.ready_queue().push_back(name),
                Err(error) => {
                    tracing::warn!(error = %error, "cannot create a spare job network; jobs create their own");
                }
            }
        });
    }
}

impl Inner {
    fn ready_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        // The lock is held for a push or a pop only; a poisoned one still holds valid names.
        match self.ready.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
