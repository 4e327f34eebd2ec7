//! Reading committed entries: the restore lookup (GitHub's key and ref rules), opening a blob for
//! download, and the admin's `list` and `delete`. Also the validation of keys and versions that
//! every request path shares.
//!
//! May use: `super` (index, store, grants), tokio, std.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::CacheServer;
use super::error::CacheError;
use super::grants::Access;
use super::index::{EntryName, Record};
use super::stats::EvictReason;

/// Longest key accepted, as GitHub's service and the toolkit's `checkKey`.
pub const MAX_KEY_BYTES: usize = 512;
/// Longest version accepted; the toolkit sends a 64-character SHA-256.
pub const MAX_VERSION_BYTES: usize = 512;
/// Keys one lookup may try, as the toolkit's limit.
pub const MAX_LOOKUP_KEYS: usize = 10;

/// One entry, as `act_runner cache list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub id: u64,
    pub repository: String,
    /// The ref it was saved from.
    pub scope: String,
    pub key: String,
    pub version: String,
    pub size: u64,
    pub created: SystemTime,
    pub last_access: SystemTime,
}

/// What `act_runner cache delete` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteSelector {
    /// Every entry with this exact key (every version and ref), in one repository or in all.
    Key {
        repository: Option<String>,
        key: String,
    },
    /// Every entry of a repository.
    Repository(String),
}

/// A restore's answer: the entry found and the key it was saved under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub id: u64,
    pub key: String,
    pub size: u64,
}

impl CacheServer {
    /// Finds the entry to restore for `keys` (the first exact, the rest prefixes; newest wins)
    /// with `version`, searching the grant's own ref first, then its base and default branches.
    pub(crate) async fn lookup(
        &self,
        access: &Access,
        keys: &[String],
        version: &str,
    ) -> Result<Option<Hit>, CacheError> {
        if keys.is_empty() || keys.len() > MAX_LOOKUP_KEYS {
            return Err(CacheError::Invalid(format!(
                "a lookup needs 1 to {MAX_LOOKUP_KEYS} keys, got {}",
                keys.len()
            )));
        }
        for key in keys {
            check_key(key)?;
        }
        check_version(version)?;
        let index = self.index.clone();
        let access = access.clone();
        let keys = keys.to_vec();
        let version = version.to_owned();
        self.blocking(move || {
            for scope in &access.read_scopes {
                for (key_idx, key) in keys.iter().enumerate() {
                    let found =
                        index.find(&access.repository, scope, key, key_idx > 0, &version)?;
                    if let Some((name, record)) = found {
                        index.touch(&name, now_us())?;
                        return Ok(Some(Hit {
                            id: record.id,
                            key: name.key,
                            size: record.size,
                        }));
                    }
                }
            }
            Ok(None)
        })
        .await
    }

    /// Opens a committed blob for download: the file and its length.
    pub(crate) async fn open_blob(&self, id: u64) -> Result<(std::fs::File, u64), CacheError> {
        let path = self.store.blob_path(id);
        self.blocking(move || match std::fs::File::open(&path) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .map_err(|err| CacheError::io(&path, err))?
                    .len();
                Ok((file, len))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(CacheError::UnknownId(id))
            }
            Err(err) => Err(CacheError::io(&path, err)),
        })
        .await
    }

    /// Every entry, or those of one repository, ordered by repository, ref and key.
    pub async fn list(&self, repository: Option<&str>) -> Result<Vec<EntryInfo>, CacheError> {
        let index = self.index.clone();
        let all = self.blocking(move || index.all()).await?;
        let mut listed: Vec<EntryInfo> = all
            .into_iter()
            .filter(|(name, _)| repository.is_none_or(|repo| name.repository == repo))
            .map(|(name, record)| entry_info(name, record))
            .collect();
        // The index orders versions before keys; an admin reads by key.
        listed.sort_by(|a, b| {
            (&a.repository, &a.scope, &a.key, &a.version).cmp(&(
                &b.repository,
                &b.scope,
                &b.key,
                &b.version,
            ))
        });
        Ok(listed)
    }

    /// Removes the selected entries; returns how many went.
    pub async fn delete(&self, selector: DeleteSelector) -> Result<u64, CacheError> {
        let index = self.index.clone();
        let all = self.blocking(move || index.all()).await?;
        let ids: Vec<u64> = all
            .iter()
            .filter(|(name, _)| match &selector {
                DeleteSelector::Key { repository, key } => {
                    name.key == *key
                        && repository
                            .as_ref()
                            .is_none_or(|repo| name.repository == *repo)
                }
                DeleteSelector::Repository(repo) => name.repository == *repo,
            })
            .map(|(_, record)| record.id)
            .collect();
        let removed = self.remove_entries(ids, EvictReason::Deleted).await?;
        Ok(removed)
    }

    /// Removes entries by id: the index rows first (durably), then the blobs, so a crash in
    /// between leaves only orphan blobs, which the next open removes.
    pub(crate) async fn remove_entries(
        &self,
        ids: Vec<u64>,
        reason: EvictReason,
    ) -> Result<u64, CacheError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let index = self.index.clone();
        let store = self.store.clone();
        let removed = self
            .blocking(move || {
                let removed = index.remove_ids(&ids)?;
                for (_, record) in &removed {
                    store.remove_blob(record.id)?;
                }
                Ok(removed)
            })
            .await?;
        {
            let mut totals = self.totals();
            for (name, record) in &removed {
                totals.remove(&name.repository, record.size);
            }
        }
        let n_removed = removed.len() as u64;
        self.counters.evicted(reason, n_removed);
        for (name, record) in &removed {
            tracing::info!(
                repository = %name.repository,
                cache_ref = %name.scope,
                cache_key = %name.key,
                cache_id = record.id,
                cache_size = record.size,
                cache_reason = reason.as_str(),
                "cache entry removed"
            );
        }
        Ok(n_removed)
    }
}

fn entry_info(name: EntryName, record: Record) -> EntryInfo {
    EntryInfo {
        id: record.id,
        repository: name.repository,
        scope: name.scope,
        key: name.key,
        version: name.version,
        size: record.size,
        created: UNIX_EPOCH + Duration::from_micros(record.created_us),
        last_access: UNIX_EPOCH + Duration::from_micros(record.accessed_us),
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
        })
}

/// A key is 1 to 512 bytes without commas (the v1 lookup joins keys with them), control
/// characters (the index separates fields with NUL) or `../` (keys never reach the file system,
/// but one that looks like a path escape is a client bug or a probe, refused loudly).
pub(crate) fn check_key(key: &str) -> Result<(), CacheError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(CacheError::Invalid(format!(
            "a cache key must be 1 to {MAX_KEY_BYTES} bytes long, got {} bytes",
            key.len()
        )));
    }
    if key.contains(',') || key.chars().any(char::is_control) {
        return Err(CacheError::Invalid(
            "a cache key must not contain commas or control characters".into(),
        ));
    }
    if key.contains("../") || key.contains("..\\") {
        return Err(CacheError::Invalid(
            "a cache key must not contain `../`".into(),
        ));
    }
    Ok(())
}

/// A version is 1 to 512 bytes without control characters.
pub(crate) fn check_version(version: &str) -> Result<(), CacheError> {
    if version.is_empty()
        || version.len() > MAX_VERSION_BYTES
        || version.chars().any(char::is_control)
    {
        return Err(CacheError::Invalid(format!(
            "a cache version must be 1 to {MAX_VERSION_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_free_of_separators() {
        assert!(check_key("npm-linux-abc").is_ok());
        assert!(check_key("../../etc/passwd").is_err());
        assert!(check_key("node-..-x").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(check_key("a,b").is_err());
        assert!(check_key("a\0b").is_err());
        assert!(check_version("").is_err());
        assert!(check_version("deadbeef").is_ok());
    }
}
