//! A small pool of pre-created job networks, so a job does not wait for `docker network create`
//! (most of a job's start overhead against a raw container).
//!
//! Each network is single-use: a job takes one, its containers join it, and the job's cleanup
//! removes it like a network it had created itself. So two live jobs never share a network, and
//! services stay reachable by alias (a pooled network is an ordinary user-defined bridge).
//! Its replacement is created once the job's containers have started ([`NetworkPool::replenish`]):
//! a `network create` running alongside a container start slows that start in dockerd.
//!
//! A pool made by [`NetworkPool::with_sandboxes`] (the daemon's, whose start-up sweep removes what
//! a crash leaves) goes further. Once a job has told it an image it ran, each new spare also gets a
//! sandbox: a started container of that image on the network, doing nothing but holding the
//! network namespace. A job without services, ports or network options runs its container in that
//! namespace (`container:<sandbox>`) instead of joining the network itself: the endpoint, its
//! embedded DNS and firewall rules were set up ahead of time, which is most of what a start on a
//! user-defined network costs. The job's cleanup removes
//! the sandbox with its own containers. A sandbox that died meanwhile (a Docker restart stops them
//! all) only costs the job a second create, on the network. Spare networks and sandboxes carry the
//! runner's UUID and [`LABEL_NETWORK_POOL`] but no task id, so the daemon's start-up orphan sweep
//! removes those a crash left behind; [`NetworkPool::shutdown`] removes the rest.
//!
//! A job that finds no spare ready while one is being created waits for that one
//! ([`NetworkPool::take_or_wait`]) rather than creating a network of its own alongside it.
//!
//! A daemon that runs one job (`--once`, an ephemeral runner) uses [`NetworkPool::for_one_job`]:
//! one spare, never replaced, since a replacement would be made while the job runs (taking the
//! CPU its steps and their logs want) only to be removed when the daemon exits.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::network::IpFamilies;
use super::{LABEL_RUNNER_UUID, container, network};

/// How long a sandbox waits for its job before it exits.
const SANDBOX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Label marking a spare network of a [`NetworkPool`] (value `true`).
pub const LABEL_NETWORK_POOL: &str = "act-runner.network-pool";

/// A spare network, with the sandbox container holding its namespace when the pool had an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spare {
    pub network: String,
    pub sandbox: Option<String>,
}

/// Pre-created job networks of one runner. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct NetworkPool {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    runner_uuid: String,
    /// `container.network_create_options`.
    ip: IpFamilies,
    /// Spare networks, oldest first.
    ready: Mutex<VecDeque<Spare>>,
    /// The image sandboxes are made of: the last one a job ran (so it is present and has
    /// `/bin/sleep`, which job containers need too).
    sandbox_image: Mutex<Option<String>>,
    /// Networks taken and not yet replaced.
    owed: AtomicUsize,
    /// Creations started and not yet ended, and the signal each end gives.
    in_flight: AtomicUsize,
    ended: Notify,
    /// Spares get sandboxes once an image is known.
    sandboxes: bool,
    /// Taken networks are replaced (false when no job will come after the one that took it).
    replaces: bool,
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
        NetworkPool::new(
            docker,
            runner_uuid,
            IpFamilies::default(),
            size,
            false,
            true,
        )
    }

    /// Like [`NetworkPool::start`], with `container.network_create_options`, and spares made after
    /// a job ran get a sandbox container.
    pub fn with_sandboxes(
        docker: Docker,
        runner_uuid: &str,
        ip: IpFamilies,
        size: usize,
    ) -> NetworkPool {
        NetworkPool::new(docker, runner_uuid, ip, size, true, true)
    }

    /// One spare network for the one job of a daemon that then exits; [`NetworkPool::replenish`]
    /// creates nothing.
    pub fn for_one_job(docker: Docker, runner_uuid: &str, ip: IpFamilies) -> NetworkPool {
        NetworkPool::new(docker, runner_uuid, ip, 1, false, false)
    }

    fn new(
        docker: Docker,
        runner_uuid: &str,
        ip: IpFamilies,
        size: usize,
        sandboxes: bool,
        replaces: bool,
    ) -> NetworkPool {
        let pool = NetworkPool {
            inner: Arc::new(Inner {
                docker,
                runner_uuid: runner_uuid.to_string(),
                ip,
                ready: Mutex::new(VecDeque::new()),
                sandbox_image: Mutex::new(None),
                owed: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                ended: Notify::new(),
                sandboxes,
                replaces,
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
    pub fn take(&self) -> Option<Spare> {
        let taken = self.inner.ready_queue().pop_front()?;
        self.inner.owed.fetch_add(1, Ordering::Relaxed);
        Some(taken)
    }

    /// Like [`NetworkPool::take`], but when no network is ready and one is being created, waits
    /// for it: it is ready sooner than a network the job would start creating now, and the two
    /// creations would only slow each other (a job fetched right after the daemon started).
    /// `None` when nothing is ready or on its way.
    pub async fn take_or_wait(&self) -> Option<Spare> {
        loop {
            let ended = self.inner.ended.notified();
            tokio::pin!(ended);
            // Registered before looking, so an end between the look and the wait is not missed.
            ended.as_mut().enable();
            if let Some(spare) = self.take() {
                return Some(spare);
            }
            if self.inner.in_flight.load(Ordering::Acquire) == 0 {
                return None;
            }
            ended.await;
        }
    }

    /// Starts creating a replacement for every network taken so far; `image` (one a job has just
    /// run) is what sandboxes are made of from now on.
    pub fn replenish(&self, image: Option<&str>) {
        if let Some(image) = image.filter(|_| self.inner.sandboxes) {
            *lock(&self.inner.sandbox_image) = Some(image.to_string());
        }
        let owed = self.inner.owed.swap(0, Ordering::Relaxed);
        if self.inner.replaces {
            for _ in 0..owed {
                self.create_one();
            }
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
        let spares: Vec<Spare> = self.inner.ready_queue().drain(..).collect();
        for spare in spares {
            remove_spare(&self.inner.docker, &spare).await;
        }
    }

    fn create_one(&self) {
        if self.inner.closed.is_cancelled() {
            return;
        }
        let inner = Arc::clone(&self.inner);
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let ends = CreationEnd(Arc::clone(&self.inner));
        self.inner.creations.spawn(async move {
            let _ends = ends;
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            let name = format!("act-runner-job-network-{}", &suffix[..16]);
            let labels = HashMap::from([
                (LABEL_RUNNER_UUID.to_string(), inner.runner_uuid.clone()),
                (LABEL_NETWORK_POOL.to_string(), String::from("true")),
            ]);
            if let Err(error) = network::create(&inner.docker, &name, &labels, inner.ip).await {
                tracing::warn!(error = %error, "cannot create a spare job network; jobs create their own");
                return;
            }
            let image = lock(&inner.sandbox_image).clone();
            let sandbox = match image {
                Some(image) => start_sandbox(&inner.docker, &name, &image, &labels).await,
                None => None,
            };
            let spare = Spare {
                network: name,
                sandbox,
            };
            if inner.closed.is_cancelled() {
                remove_spare(&inner.docker, &spare).await;
            } else {
                inner.ready_queue().push_back(spare);
            }
        });
    }
}

/// Counts a creation as ended and wakes those waiting for a spare, however the creation ends
/// (its network ready or not, or its task dropped).
struct CreationEnd(Arc<Inner>);

impl Drop for CreationEnd {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

/// Starts the sandbox of `network`; `None` (logged) when it cannot, and the spare is a bare network.
async fn start_sandbox(
    docker: &Docker,
    network: &str,
    image: &str,
    labels: &HashMap<String, String>,
) -> Option<String> {
    let name = format!("{network}-sandbox");
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        // Bounded like job containers, so a daemon killed for good leaves no sleeper behind for
        // long; a spare that outlives its sandbox just makes its job join the network itself.
        entrypoint: Some(vec![
            String::from("/bin/sleep"),
            SANDBOX_LIFETIME.as_secs().to_string(),
        ]),
        labels: Some(labels.clone()),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    match container::create_and_start(docker, &name, None, body).await {
        Ok(_) => Some(name),
        Err(error) => {
            tracing::debug!(error = %error, image, "no sandbox for a spare network; its job joins the network itself");
            let _ = container::remove_container(docker, &name).await;
            None
        }
    }
}

async fn remove_spare(docker: &Docker, spare: &Spare) {
    if let Some(sandbox) = &spare.sandbox
        && let Err(error) = container::remove_container(docker, sandbox).await
    {
        tracing::warn!(container = %sandbox, error = %error, "cannot remove a spare network's sandbox");
    }
    if let Err(error) = network::remove(docker, &spare.network).await {
        tracing::warn!(network = %spare.network, error = %error, "cannot remove a spare job network");
    }
}

use crate::sync::lock;

impl Inner {
    fn ready_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Spare>> {
        lock(&self.ready)
    }
}
