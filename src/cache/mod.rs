//! The actions/cache server, embedded in the daemon and served alone by `act_runner cache-server`.
//!
//! [`CacheServer`] is the engine: a redb index of committed entries (`index`), their blobs as
//! files under `cache.dir` (`store`), the in-flight uploads (`upload`, `ranges`), eviction
//! (`evict`), task credentials (`grants`, `remote`), signed blob URLs (`signing`) and the HTTP
//! router (`http`: the v1 REST API, the v2 twirp `CacheService`, the blob URLs and the grant
//! endpoints of a shared server). Other rooms use the public API below; nothing else.
//!
//! Invariants: the index holds committed entries only, and every one of them names a complete
//! blob (written to a temp file, synced, renamed, then indexed); no key ever becomes a path (files
//! are named by numeric id); a request body is streamed to disk through a bounded buffer.
//!
//! May use: `crate::config` (settings, `Secret`), axum/hyper/tower, redb, reqwest (the grant
//! client), tokio. Never: `daemon`, `executor`, `client`, `metrics`, `systemd`.

mod blocks;
mod entries;
mod error;
mod evict;
mod grants;
mod http;
mod index;
mod ranges;
mod remote;
mod signing;
mod spans;
mod stats;
mod store;
mod upload;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{CacheConfig, Secret};

pub use entries::{DeleteSelector, EntryInfo};
pub use error::CacheError;
pub use grants::{Grant, Grants, LocalGrants, MAX_GRANT_LIFETIME, TaskGrants};
pub use remote::RemoteGrants;
pub use stats::{CacheStats, EvictReason, Op, Outcome};

use index::Index;
use signing::Signer;
use stats::Counters;
use store::Store;
use upload::Uploads;

/// How long a signed blob URL stays valid unless the settings say otherwise.
pub const DEFAULT_SIGNED_URL_TTL: Duration = Duration::from_secs(60 * 60);
/// The free-disk floor [`CacheSettings::from_config`] uses: below it, entries are evicted and
/// new ones refused.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 1 << 30;

/// What the engine needs to run; built from `cache:` by [`CacheSettings::from_config`].
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Where the index and the blobs live (`cache.dir`).
    pub dir: PathBuf,
    /// Entries not accessed for this long are evicted; `None` keeps them (`cache.retention`).
    pub retention: Option<Duration>,
    /// Bytes one repository's entries may take (`cache.repo_size_limit`).
    pub repo_size_limit: Option<u64>,
    /// Bytes all entries may take (`cache.size_limit`).
    pub size_limit: Option<u64>,
    /// Time between eviction sweeps (`cache.sweep_interval`).
    pub sweep_interval: Duration,
    /// Free bytes the cache's file system keeps: below it, least recently used entries go and
    /// reservations that would cross it are refused.
    pub min_free_bytes: u64,
    /// Serve the v2 twirp `CacheService` (`cache.v2`).
    pub v2: bool,
    /// The secret that runners send to `/_act_runner/grants` (`cache.external_secret`); without
    /// it, the grant endpoints answer 404 and only in-process grants exist.
    pub external_secret: Option<Secret>,
    /// How long signed blob URLs stay valid.
    pub signed_url_ttl: Duration,
    /// The base URL (ending in `/`) put into signed blob URLs; `None` uses the `Host` the client
    /// sent, so host jobs and Docker jobs each get an address they reach.
    pub public_url: Option<String>,
}

impl CacheSettings {
    /// The settings of `cache:`; keys without a config counterpart take the defaults above.
    pub fn from_config(config: &CacheConfig) -> CacheSettings {
        CacheSettings {
            dir: config.dir.clone(),
            retention: config.retention,
            repo_size_limit: config.repo_size_limit,
            size_limit: config.size_limit,
            sweep_interval: config.sweep_interval,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            v2: config.v2,
            external_secret: config.external_secret.clone(),
            signed_url_ttl: DEFAULT_SIGNED_URL_TTL,
            public_url: None,
        }
    }
}

/// The cache engine: index, blob store, uploads, grants and router.
pub struct CacheServer {
    settings: CacheSettings,
    index: Arc<Index>,
    store: Store,
    grants: Grants,
    signer: Signer,
    uploads: Uploads,
    /// The next id for an upload (which becomes the entry's id); never reused within a run, and
    /// ids of an earlier run are unreachable through old URLs because the signing key changed.
    next_id: AtomicU64,
    totals: Mutex<Totals>,
    counters: Counters,
}

/// Bytes and entries, kept in step with the index so limits are checked without a scan.
#[derive(Debug, Default)]
struct Totals {
    entries: u64,
    bytes: u64,
    per_repo: HashMap<String, u64>,
}

impl Totals {
    fn add(&mut self, repository: &str, size: u64) {
        self.entries += 1;
        self.bytes += size;
        *self.per_repo.entry(repository.to_owned()).or_default() += size;
    }

    fn remove(&mut self, repository: &str, size: u64) {
        self.entries = self.entries.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(size);
        if let Some(repo_bytes) = self.per_repo.get_mut(repository) {
            *repo_bytes = repo_bytes.saturating_sub(size);
            if *repo_bytes == 0 {
                self.per_repo.remove(repository);
            }
        }
    }
}

impl CacheServer {
    /// Opens the cache under `settings.dir`: creates the layout, opens the index, and recovers
    /// from a crash (temp files removed, blobs without a row removed, rows without a blob
    /// removed).
    pub async fn open(settings: CacheSettings) -> Result<Arc<CacheServer>, CacheError> {
        let dir = settings.dir.clone();
        let (store, index, totals, max_id) = tokio::task::spawn_blocking(move || {
            let store = Store::create(&dir)?;
            let index = Index::open(&store.index_path())?;
            let mut known = HashSet::new();
            let mut missing = Vec::new();
            let mut totals = Totals::default();
            for (name, record) in index.all()? {
                if store.blob_size(record.id) == Some(record.size) {
                    known.insert(record.id);
                    totals.add(&name.repository, record.size);
                } else {
                    missing.push(record.id);
                }
            }
            index.remove_ids(&missing)?;
            let max_id = store.recover(&known)?.max(index.max_id()?);
            Ok::<_, CacheError>((store, index, totals, max_id))
        })
        .await
        .map_err(|err| CacheError::Index(format!("opening the cache panicked: {err}")))??;
        Ok(Arc::new(CacheServer {
            signer: Signer::new(settings.signed_url_ttl),
            settings,
            index: Arc::new(index),
            store,
            grants: Grants::default(),
            uploads: Uploads::default(),
            next_id: AtomicU64::new(max_id + 1),
            totals: Mutex::new(totals),
            counters: Counters::default(),
        }))
    }

    /// Serves HTTP on an already-bound listener until `shutdown` is cancelled; runs the eviction
    /// sweep every `sweep_interval` meanwhile.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), CacheError> {
        let sweeper = tokio::spawn(evict::sweep_loop(self.clone(), shutdown.clone()));
        let served = http::serve(self, listener, shutdown).await;
        sweeper.abort();
        served
    }

    /// The registry of task credentials this server checks.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The counters and gauges, for the metrics room.
    pub fn stats(&self) -> CacheStats {
        let (entries, bytes) = {
            let totals = self.totals();
            (totals.entries, totals.bytes)
        };
        self.counters.snapshot(entries, bytes)
    }

    /// The settings the server runs with.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Fills the index with `n` one-byte entries `<key_prefix><i>` of `repository` on `scope`
    /// (blob files included, so every row still names a complete blob). For the lookup
    /// benchmark (`packaging/bench/cache.sh`), which needs an index of 100k entries faster than
    /// 100k separate commits would build it.
    #[doc(hidden)]
    pub async fn fill_for_benchmark(
        &self,
        repository: &str,
        scope: &str,
        key_prefix: &str,
        version: &str,
        n: u64,
    ) -> Result<(), CacheError> {
        let first_id = self
            .next_id
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let now = entries::now_us();
        let rows: Vec<(index::EntryName, index::Record)> = (0..n)
            .map(|i| {
                let name = index::EntryName {
                    repository: repository.to_owned(),
                    scope: scope.to_owned(),
                    key: format!("{key_prefix}{i}"),
                    version: version.to_owned(),
                };
                let record = index::Record {
                    id: first_id + i,
                    size: 1,
                    created_us: now + i,
                    accessed_us: now + i,
                };
                (name, record)
            })
            .collect();
        let store = self.store.clone();
        let index = self.index.clone();
        let rows = self
            .blocking(move || {
                for (_, record) in &rows {
                    let path = store.blob_path(record.id);
                    std::fs::write(&path, b"x").map_err(|err| CacheError::io(&path, err))?;
                }
                index.insert_batch(&rows)?;
                Ok(rows)
            })
            .await?;
        let mut totals = self.totals();
        for (name, record) in &rows {
            totals.add(&name.repository, record.size);
        }
        Ok(())
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        crate::sync::lock(&self.totals)
    }

    /// Runs blocking index or file work off the runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|err| CacheError::Index(format!("a cache task panicked: {err}")))?
    }
}
