//! Eviction: entries not accessed within `cache.retention` go at every sweep; when a repository
//! passes `cache.repo_size_limit`, the cache passes `cache.size_limit`, or the disk's free space
//! falls below the floor, the least recently used entries go until it fits again. Limits are
//! checked after every commit too; the sweep runs every `cache.sweep_interval` and also discards
//! uploads that stopped receiving bytes.
//!
//! May use: `super` (index, store, totals, uploads), tokio, std.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::CacheServer;
use super::entries::now_us;
use super::error::CacheError;
use super::stats::EvictReason;

impl CacheServer {
    /// Runs one sweep now: retention, limits, the disk floor, idle uploads.
    pub async fn sweep(&self) -> Result<(), CacheError> {
        if let Some(retention) = self.settings.retention {
            let cutoff =
                now_us().saturating_sub(u64::try_from(retention.as_micros()).unwrap_or(u64::MAX));
            let index = self.index.clone();
            let expired: Vec<u64> = self
                .blocking(move || index.all())
                .await?
                .into_iter()
                .filter(|(_, record)| record.accessed_us < cutoff)
                .map(|(_, record)| record.id)
                .collect();
            self.remove_entries(expired, EvictReason::Retention).await?;
        }
        self.enforce_limits(None).await?;
        let min_free = self.settings.min_free_bytes;
        let store = self.store.clone();
        let free = self.blocking(move || store.free_bytes()).await?;
        if free < min_free {
            self.evict_lru(None, min_free - free, EvictReason::DiskFloor)
                .await?;
        }
        self.discard_idle_uploads().await?;
        Ok(())
    }

    /// Brings `repository` (or every repository) under `cache.repo_size_limit` and the cache
    /// under `cache.size_limit`.
    pub(crate) async fn enforce_limits(&self, repository: Option<&str>) -> Result<(), CacheError> {
        if let Some(limit) = self.settings.repo_size_limit {
            let over: Vec<(String, u64)> = {
                let totals = self.totals();
                totals
                    .per_repo
                    .iter()
                    .filter(|(repo, bytes)| {
                        **bytes > limit && repository.is_none_or(|wanted| wanted == repo.as_str())
                    })
                    .map(|(repo, bytes)| (repo.clone(), bytes - limit))
                    .collect()
            };
            for (repo, excess) in over {
                self.evict_lru(Some(&repo), excess, EvictReason::RepoSizeLimit)
                    .await?;
            }
        }
        if let Some(limit) = self.settings.size_limit {
            let bytes = self.totals().bytes;
            if bytes > limit {
                self.evict_lru(None, bytes - limit, EvictReason::SizeLimit)
                    .await?;
            }
        }
        Ok(())
    }

    /// Removes least recently used entries (of one repository, or of all) until at least
    /// `bytes` are freed or none are left.
    pub(crate) async fn evict_lru(
        &self,
        repository: Option<&str>,
        bytes: u64,
        reason: EvictReason,
    ) -> Result<u64, CacheError> {
        let index = self.index.clone();
        let mut candidates = self.blocking(move || index.all()).await?;
        candidates.retain(|(name, _)| repository.is_none_or(|repo| name.repository == repo));
        candidates.sort_by_key(|(_, record)| (record.accessed_us, record.id));
        let mut freed = 0u64;
        let mut ids = Vec::new();
        for (_, record) in candidates {
            if freed >= bytes {
                break;
            }
            freed = freed.saturating_add(record.size);
            ids.push(record.id);
        }
        self.remove_entries(ids, reason).await?;
        Ok(freed)
    }
}

/// Sweeps every `sweep_interval` until `shutdown`; a failed sweep is logged and retried at the
/// next interval.
pub(crate) async fn sweep_loop(server: Arc<CacheServer>, shutdown: CancellationToken) {
    let interval = server
        .settings
        .sweep_interval
        .max(std::time::Duration::from_secs(1));
    loop {
        if let Err(err) = server.sweep().await {
            tracing::warn!(error = %err, "cache sweep failed");
        }
        server.grants.remove_expired();
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
