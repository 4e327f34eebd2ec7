//! Writing entries: reserve a key and version, receive the bytes (v1 chunks at their offsets, v2
//! blocks or a single PUT), commit. An upload lives in memory and in `tmp/`; only its commit
//! (sync, rename, index insert) makes it an entry, so a crash or an abandoned upload never
//! leaves an entry that restores partial bytes.
//!
//! Bodies are streamed: at most [`WRITE_BUFFER_BYTES`] per request are held before they go to
//! disk, and one buffer is written while the next is received.
//!
//! May use: `super` (index, store, ranges, grants), tokio, futures-util, bytes, std.

use std::collections::HashMap;
use std::fs::File;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::CacheServer;
use super::entries::{check_key, check_version, now_us};
use super::error::CacheError;
use super::grants::Access;
use super::index::{EntryName, Record};
use super::ranges::Ranges;
use super::stats::EvictReason;

/// Bytes of a request body held in memory before they are written.
pub const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Chunks held for one vectored write: a body sent in tiny chunks holds at most this many before
/// they are written, not one entry per byte of the buffer.
const MAX_PARTS_PER_WRITE: usize = 256;

/// Uploads in flight at most (each holds a temp file).
pub const MAX_UPLOADS: usize = 1024;
/// A body that sends nothing for this long is abandoned.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// An upload that receives nothing for this long is discarded by the sweep.
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The uploads in flight.
#[derive(Default)]
pub(crate) struct Uploads {
    // A std mutex: held only for map operations, never across an await.
    by_id: Mutex<HashMap<u64, Arc<Upload>>>,
}

/// One upload in flight.
pub(crate) struct Upload {
    pub id: u64,
    pub name: EntryName,
    /// The size announced at reserve (v1 `cacheSize`), if any.
    pub declared: Option<u64>,
    /// Bytes the upload may reach: the announced size or the tightest limit.
    pub max_bytes: u64,
    pub(super) file: Arc<File>,
    state: Mutex<UploadState>,
}

#[derive(Default)]
pub(super) struct UploadState {
    pub(super) ranges: Ranges,
    /// v2 block ids with their file number and, once fully written, their length.
    pub(super) blocks: HashMap<String, (usize, Option<u64>)>,
    /// Block files created so far (the next file number).
    pub(super) n_block_files: usize,
    pub(super) committing: bool,
    pub(super) last_activity: Option<Instant>,
}

impl Upload {
    pub(super) fn state(&self) -> MutexGuard<'_, UploadState> {
        crate::sync::lock(&self.state)
    }
}

impl Uploads {
    fn map(&self) -> MutexGuard<'_, HashMap<u64, Arc<Upload>>> {
        crate::sync::lock(&self.by_id)
    }

    /// The upload `id`, if it belongs to `repository`; another repository's upload is as
    /// unknown as a missing one.
    pub(crate) fn get(&self, id: u64, repository: Option<&str>) -> Result<Arc<Upload>, CacheError> {
        let map = self.map();
        match map.get(&id) {
            Some(upload) if repository.is_none_or(|repo| upload.name.repository == repo) => {
                Ok(upload.clone())
            }
            _ => Err(CacheError::UnknownId(id)),
        }
    }

    /// The upload of `name` in flight, if any.
    pub(crate) fn find(&self, name: &EntryName) -> Option<Arc<Upload>> {
        self.map()
            .values()
            .find(|upload| upload.name == *name)
            .cloned()
    }

    /// Uploads idle for longer than `idle`, removed from the registry.
    fn take_idle(&self, idle: Duration) -> Vec<Arc<Upload>> {
        let mut map = self.map();
        let stale: Vec<u64> = map
            .values()
            .filter(|upload| {
                let state = upload.state();
                !state.committing
                    && !state.ranges.busy()
                    && state.last_activity.is_some_and(|at| at.elapsed() > idle)
            })
            .map(|upload| upload.id)
            .collect();
        stale.iter().filter_map(|id| map.remove(id)).collect()
    }
}

impl CacheServer {
    /// Reserves `key` and `version` for the grant's ref; returns the upload id.
    pub(crate) async fn reserve(
        &self,
        access: &Access,
        key: &str,
        version: &str,
        declared: Option<u64>,
    ) -> Result<u64, CacheError> {
        check_key(key)?;
        check_version(version)?;
        let max_bytes = self.admit_size(&access.repository, declared).await?;
        let name = EntryName {
            repository: access.repository.clone(),
            scope: access.write_scope.clone(),
            key: key.to_owned(),
            version: version.to_owned(),
        };
        let index = self.index.clone();
        let lookup_name = name.clone();
        let exists = self
            .blocking(move || {
                let found = index.find(
                    &lookup_name.repository,
                    &lookup_name.scope,
                    &lookup_name.key,
                    false,
                    &lookup_name.version,
                )?;
                Ok(found.is_some())
            })
            .await?;
        if exists {
            return Err(CacheError::Conflict(format!(
                "cache entry {key:?} (version {version}) already exists for this ref"
            )));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let map = self.uploads.map();
            if map.values().any(|upload| upload.name == name) {
                return Err(CacheError::Conflict(format!(
                    "cache entry {key:?} (version {version}) is being written by another job"
                )));
            }
            if map.len() >= MAX_UPLOADS {
                return Err(CacheError::Conflict(format!(
                    "{MAX_UPLOADS} uploads are in flight; try again later"
                )));
            }
        }
        let store = self.store.clone();
        let file = self.blocking(move || store.create_part(id)).await?;
        let upload = Arc::new(Upload {
            id,
            name: name.clone(),
            declared,
            max_bytes,
            file: Arc::new(file),
            state: Mutex::new(UploadState {
                last_activity: Some(Instant::now()),
                ..UploadState::default()
            }),
        });
        let refused = {
            let mut map = self.uploads.map();
            // Checked again: another reserve of the same name may have won meanwhile.
            if map.values().any(|other| other.name == name) {
                true
            } else {
                map.insert(id, upload);
                false
            }
        };
        if refused {
            let store = self.store.clone();
            self.blocking(move || {
                store.discard_upload(id, 0);
                Ok(())
            })
            .await?;
            return Err(CacheError::Conflict(format!(
                "cache entry {key:?} (version {version}) is being written by another job"
            )));
        }
        Ok(id)
    }

    /// Writes bytes `start..end` of upload `upload` from `body`, which must carry exactly that
    /// many bytes.
    pub(crate) async fn write_range<S, E>(
        &self,
        upload: &Upload,
        start: u64,
        end: u64,
        body: S,
    ) -> Result<(), CacheError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if start >= end {
            return Err(CacheError::Invalid(format!(
                "empty or reversed byte range {start}-{end}"
            )));
        }
        if end > upload.max_bytes {
            return Err(CacheError::Invalid(format!(
                "bytes {start}-{} lie past the {} bytes this upload may hold",
                end - 1,
                upload.max_bytes
            )));
        }
        {
            let mut state = upload.state();
            if state.committing {
                return Err(CacheError::Conflict(format!(
                    "cache upload {} is already committed",
                    upload.id
                )));
            }
            state.ranges.claim(start, end).map_err(|overlap| {
                CacheError::Invalid(format!(
                    "bytes {start}-{} overlap bytes {}-{} of this upload",
                    end - 1,
                    overlap.start,
                    overlap.end - 1
                ))
            })?;
            state.last_activity = Some(Instant::now());
        }
        let written = stream_to_file(upload.file.clone(), start, end - start, body).await;
        let mut state = upload.state();
        state.last_activity = Some(Instant::now());
        match written {
            Ok(()) => {
                state.ranges.finish(start);
                Ok(())
            }
            Err(err) => {
                state.ranges.abandon(start);
                Err(err)
            }
        }
    }

    /// Commits upload `upload` as an entry of `size` bytes: the bytes written must cover
    /// exactly `0..size` (and match the size announced at reserve).
    pub(crate) async fn commit(&self, upload: Arc<Upload>, size: u64) -> Result<u64, CacheError> {
        {
            let mut state = upload.state();
            if state.committing {
                return Err(CacheError::Conflict(format!(
                    "cache upload {} is already being committed",
                    upload.id
                )));
            }
            if let Some(declared) = upload.declared
                && declared != size
            {
                return Err(CacheError::Invalid(format!(
                    "commit size {size} differs from the {declared} bytes reserved"
                )));
            }
            if let Some(gap) = state.ranges.gap(size) {
                return Err(CacheError::Invalid(format!(
                    "cannot commit {size} bytes: {gap}"
                )));
            }
            state.committing = true;
        }
        let id = upload.id;
        let name = upload.name.clone();
        let file = upload.file.clone();
        let store = self.store.clone();
        let index = self.index.clone();
        let now = now_us();
        let record = Record {
            id,
            size,
            created_us: now,
            accessed_us: now,
        };
        let insert_name = name.clone();
        let committed = self
            .blocking(move || {
                store.commit_part(id, &file)?;
                let replaced = index.insert(&insert_name, record)?;
                if let Some(old) = replaced {
                    store.remove_blob(old.id)?;
                }
                Ok(replaced)
            })
            .await;
        self.uploads.map().remove(&id);
        let n_blocks = upload.state().n_block_files;
        let store = self.store.clone();
        // The part file is gone after a successful rename; the blocks always go.
        let _ = self
            .blocking(move || {
                store.discard_upload(id, n_blocks);
                Ok(())
            })
            .await;
        let replaced = committed?;
        {
            let mut totals = self.totals();
            if let Some(old) = replaced {
                totals.remove(&name.repository, old.size);
            }
            totals.add(&name.repository, size);
        }
        tracing::info!(
            repository = %name.repository,
            cache_ref = %name.scope,
            cache_key = %name.key,
            cache_id = id,
            cache_size = size,
            "cache entry committed"
        );
        self.enforce_limits(Some(&name.repository)).await?;
        Ok(id)
    }

    /// Discards uploads that stopped receiving bytes (the sweep calls this).
    pub(crate) async fn discard_idle_uploads(&self) -> Result<usize, CacheError> {
        let stale = self.uploads.take_idle(UPLOAD_IDLE_TIMEOUT);
        let n_stale = stale.len();
        let store = self.store.clone();
        self.blocking(move || {
            for upload in stale {
                let n_blocks = upload.state().n_block_files;
                store.discard_upload(upload.id, n_blocks);
            }
            Ok(())
        })
        .await?;
        Ok(n_stale)
    }

    /// The largest size an entry of `repository` may have, refusing `declared` when it cannot
    /// fit a limit or the free-disk floor (after evicting what the floor needs).
    async fn admit_size(&self, repository: &str, declared: Option<u64>) -> Result<u64, CacheError> {
        let settings = &self.settings;
        let mut max_bytes = u64::MAX;
        for (limit, key) in [
            (settings.repo_size_limit, "cache.repo_size_limit"),
            (settings.size_limit, "cache.size_limit"),
        ] {
            let Some(limit) = limit else { continue };
            if let Some(size) = declared
                && size > limit
            {
                return Err(CacheError::TooLarge(format!(
                    "cache entry of {size} bytes for {repository} is larger than {key} ({limit} bytes); not saving it"
                )));
            }
            max_bytes = max_bytes.min(limit);
        }
        if let Some(size) = declared {
            self.make_room(size).await?;
            max_bytes = size;
        }
        Ok(max_bytes)
    }

    /// Frees disk space for `size` more bytes above the floor, evicting least recently used
    /// entries; refuses when even an empty cache would not leave the floor free.
    async fn make_room(&self, size: u64) -> Result<(), CacheError> {
        let needed = size.saturating_add(self.settings.min_free_bytes);
        let store = self.store.clone();
        let free = self.blocking(move || store.free_bytes()).await?;
        if free >= needed {
            return Ok(());
        }
        let cache_bytes = self.totals().bytes;
        if free.saturating_add(cache_bytes) < needed {
            return Err(CacheError::TooLarge(format!(
                "cache entry of {size} bytes does not fit: {free} bytes are free on the cache's disk and {} must stay free",
                self.settings.min_free_bytes
            )));
        }
        self.evict_lru(None, needed - free, EvictReason::DiskFloor)
            .await?;
        Ok(())
    }
}

/// Writes exactly `len` bytes of `body` at `offset` of `file`; fewer or more is an error. The
/// body's chunks are written as they came, with one vectored write per buffer (no copy into a
/// buffer of our own), on a blocking thread while the next buffer fills.
pub(super) async fn stream_to_file<S, E>(
    file: Arc<File>,
    offset: u64,
    len: u64,
    mut body: S,
) -> Result<(), CacheError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut received: u64 = 0;
    let mut parts: Vec<Bytes> = Vec::new();
    let mut buffered: usize = 0;
    let mut in_flight: Option<JoinHandle<std::io::Result<()>>> = None;
    let flush = |parts: Vec<Bytes>, at: u64, file: &Arc<File>| {
        let file = file.clone();
        tokio::task::spawn_blocking(move || write_parts_at(&file, &parts, at))
    };
    loop {
        let next = tokio::time::timeout(BODY_IDLE_TIMEOUT, body.next())
            .await
            .map_err(|_| CacheError::Invalid("the request body stalled".into()))?;
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(err)) => {
                return Err(CacheError::Invalid(format!(
                    "reading the request body failed: {err}"
                )));
            }
        };
        received = received.saturating_add(chunk.len() as u64);
        if received > len {
            return Err(CacheError::Invalid(format!(
                "the body is longer than the {len} bytes its range announces"
            )));
        }
        buffered += chunk.len();
        parts.push(chunk);
        if buffered >= WRITE_BUFFER_BYTES || parts.len() >= MAX_PARTS_PER_WRITE {
            if let Some(previous) = in_flight.take() {
                finish_write(previous).await?;
            }
            let at = offset + received - buffered as u64;
            in_flight = Some(flush(std::mem::take(&mut parts), at, &file));
            buffered = 0;
        }
    }
    if let Some(previous) = in_flight.take() {
        finish_write(previous).await?;
    }
    if !parts.is_empty() {
        let at = offset + received - buffered as u64;
        finish_write(flush(parts, at, &file)).await?;
    }
    if received != len {
        return Err(CacheError::Invalid(format!(
            "the body holds {received} bytes, its range announces {len}"
        )));
    }
    Ok(())
}

/// Writes `parts` one after another from `at`, resuming after short writes.
fn write_parts_at(file: &File, parts: &[Bytes], mut at: u64) -> std::io::Result<()> {
    let start = at;
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|part| !part.is_empty())
        .map(|part| IoSlice::new(part))
        .collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        let written = rustix::io::pwritev(file, remaining, at)?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        at += written as u64;
        IoSlice::advance_slices(&mut remaining, written);
    }
    // Starts the write-back of these bytes now (DONTNEED on dirty pages writes them without
    // waiting), so the commit's fsync finds little left to write. A hint: its failure is harmless.
    let _ = rustix::fs::fadvise(
        file,
        start,
        std::num::NonZeroU64::new(at - start),
        rustix::fs::Advice::DontNeed,
    );
    Ok(())
}

async fn finish_write(write: JoinHandle<std::io::Result<()>>) -> Result<(), CacheError> {
    write
        .await
        .map_err(|err| CacheError::Index(format!("a cache write panicked: {err}")))?
        .map_err(|err| CacheError::io("upload temp file", err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: Vec<Vec<u8>>) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures_util::stream::iter(parts.into_iter().map(|part| Ok(Bytes::from(part))))
    }

    #[tokio::test]
    async fn a_body_of_more_tiny_chunks_than_one_write_takes_lands_whole_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let file = Arc::new(File::create(&path).unwrap());
        // More one-byte chunks than the kernel's IOV_MAX (1024) takes in one vectored write.
        let expected: Vec<u8> = (0..2 * 1024 + 7).map(|i| (i % 251) as u8).collect();
        let parts = expected.iter().map(|byte| vec![*byte]).collect();
        stream_to_file(file, 5, expected.len() as u64, chunks(parts))
            .await
            .unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(&written[..5], &[0; 5]);
        assert_eq!(&written[5..], &expected[..]);
    }

    #[tokio::test]
    async fn a_body_shorter_or_longer_than_its_range_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(File::create(dir.path().join("part")).unwrap());
        let short = stream_to_file(file.clone(), 0, 4, chunks(vec![b"abc".to_vec()])).await;
        assert!(matches!(short, Err(CacheError::Invalid(_))), "{short:?}");
        let long = stream_to_file(file, 0, 2, chunks(vec![vec![], b"abc".to_vec()])).await;
        assert!(matches!(long, Err(CacheError::Invalid(_))), "{long:?}");
    }
}
