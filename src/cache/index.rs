//! The index of committed entries, in a redb database (`index.redb` under `cache.dir`).
//!
//! `entries` maps `repository \0 scope \0 version \0 key` to the entry's record (id, size,
//! creation and last-access time), ordered so that the keys with one prefix, in one repository,
//! scope and version, are one range; `ids` maps an entry id back to that composite key; `spans`
//! holds the newest entry of each span of `entries` (see [`super::spans`]), which a prefix lookup
//! reads instead of every match; `meta` records the layout, so an index written by an earlier
//! version is converted when it opens. Every call blocks (redb is synchronous): the engine calls
//! them from `spawn_blocking`. Only committed entries are ever stored, so an index row always
//! names a complete blob.
//!
//! A restore's access time is kept in memory (`pending`) and written with the next write
//! transaction, or before anything reads access times (`all`): a restore is then a read
//! transaction only, never a write that waits for the writer lock behind a commit's fsync.
//!
//! May use: `redb`, `super::error`, `super::spans`, `crate::sync`, std.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use super::error::CacheError;
use super::spans;

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const IDS: TableDefinition<u64, &[u8]> = TableDefinition::new("ids");
const SPANS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("spans");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The layout this version writes: 2 orders the version before the key and keeps `spans`. An
/// index without `meta` is layout 1 (key before version, no spans).
const LAYOUT: u64 = 2;
/// One entry in this many starts a span: a prefix lookup reads about this many rows at each edge
/// of its range, plus one per span inside it.
const SPAN_EVERY: u64 = 64;

/// Separates the parts of a composite key; validation keeps it out of every part.
const SEP: u8 = 0;
/// Above every byte of UTF-8, so `prefix ++ [END]` bounds a prefix range.
const END: u8 = 0xff;

/// Where an entry lives: its repository, the ref it was written on, its key and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryName {
    pub repository: String,
    /// The ref the entry was saved from (e.g. `refs/heads/main`).
    pub scope: String,
    pub key: String,
    pub version: String,
}

/// One committed entry's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub size: u64,
    /// Microseconds since the Unix epoch.
    pub created_us: u64,
    /// Microseconds since the Unix epoch; moved forward by every restore.
    pub accessed_us: u64,
}

/// Access times held in memory at most; one more writes them all first.
const MAX_PENDING_TOUCHES: usize = 4096;

/// The redb index.
pub struct Index {
    db: Database,
    /// One entry in `every` anchors a span ([`SPAN_EVERY`] but in tests).
    every: u64,
    /// Access times not yet written, by composite key (the latest wins). A std mutex: held for a
    /// map operation only, never over a write or across an await.
    pending: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Index {
    /// Opens (or creates) the database at `path`, converting an index of an earlier layout.
    pub fn open(path: &Path) -> Result<Index, CacheError> {
        Index::open_spanned(path, SPAN_EVERY)
    }

    /// [`Index::open`] with spans of `every` entries on average; the spans are rebuilt when the
    /// index was written with another value.
    pub(super) fn open_spanned(path: &Path, every: u64) -> Result<Index, CacheError> {
        let db = Database::create(path).map_err(CacheError::index)?;
        let txn = db.begin_write().map_err(CacheError::index)?;
        {
            let mut meta = txn.open_table(META).map_err(CacheError::index)?;
            let mut entries = txn.open_table(ENTRIES).map_err(CacheError::index)?;
            let mut ids = txn.open_table(IDS).map_err(CacheError::index)?;
            let mut spans = txn.open_table(SPANS).map_err(CacheError::index)?;
            let stored = |meta: &redb::Table<'_, &str, u64>, name: &str| {
                meta.get(name)
                    .map(|value| value.map(|value| value.value()))
                    .map_err(CacheError::index)
            };
            let layout = match stored(&meta, "layout")? {
                Some(layout) => layout,
                None if entries.is_empty().map_err(CacheError::index)? => LAYOUT,
                None => 1,
            };
            if layout > LAYOUT {
                return Err(CacheError::Index(format!(
                    "{} was written by a newer act_runner (index layout {layout}, this one reads \
                     up to {LAYOUT}); upgrade, or remove the cache directory",
                    path.display()
                )));
            }
            if layout == 1 {
                convert_from_layout_1(&mut entries, &mut ids)?;
            }
            if layout != LAYOUT
                || stored(&meta, "span_every")? != Some(every)
                || spans.is_empty().map_err(CacheError::index)?
            {
                spans::rebuild(&entries, &mut spans, every)?;
            }
            meta.insert("layout", LAYOUT).map_err(CacheError::index)?;
            meta.insert("span_every", every)
                .map_err(CacheError::index)?;
        }
        txn.commit().map_err(CacheError::index)?;
        Ok(Index {
            db,
            every,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The highest id in the index, 0 when empty.
    pub fn max_id(&self) -> Result<u64, CacheError> {
        let txn = self.db.begin_read().map_err(CacheError::index)?;
        let ids = txn.open_table(IDS).map_err(CacheError::index)?;
        let last = ids.last().map_err(CacheError::index)?;
        Ok(last.map_or(0, |(id, _)| id.value()))
    }

    /// Inserts a committed entry durably, replacing (and returning) any entry of the same name.
    pub fn insert(&self, name: &EntryName, record: Record) -> Result<Option<Record>, CacheError> {
        let composite = encode_name(name);
        let touches = self.take_touches();
        let txn = self.db.begin_write().map_err(CacheError::index)?;
        let replaced;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(CacheError::index)?;
            let mut ids = txn.open_table(IDS).map_err(CacheError::index)?;
            let mut spans = txn.open_table(SPANS).map_err(CacheError::index)?;
            write_touches(&mut entries, &touches)?;
            replaced = self.put(&mut entries, &mut ids, &mut spans, &composite, record)?;
        }
        txn.commit().map_err(CacheError::index)?;
        Ok(replaced)
    }

    /// Writes one entry's rows in all three tables, replacing any of the same name.
    fn put(
        &self,
        entries: &mut Table<'_>,
        ids: &mut redb::Table<'_, u64, &'static [u8]>,
        spans: &mut Table<'_>,
        composite: &[u8],
        record: Record,
    ) -> Result<Option<Record>, CacheError> {
        let replaced = entries
            .insert(composite, encode_record(record).as_slice())
            .map_err(CacheError::index)?
            .and_then(|old| decode_record(old.value()));
        if let Some(old) = replaced {
            ids.remove(old.id).map_err(CacheError::index)?;
            spans::removed(entries, spans, composite, old, self.every)?;
        }
        ids.insert(record.id, composite)
            .map_err(CacheError::index)?;
        spans::added(entries, spans, composite, record, self.every)?;
        Ok(replaced)
    }

    /// Inserts many committed entries in one durable transaction (the benchmark's index fill).
    pub fn insert_batch(&self, rows: &[(EntryName, Record)]) -> Result<(), CacheError> {
        let txn = self.db.begin_write().map_err(CacheError::index)?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(CacheError::index)?;
            let mut ids = txn.open_table(IDS).map_err(CacheError::index)?;
            let mut spans = txn.open_table(SPANS).map_err(CacheError::index)?;
            for (name, record) in rows {
                let composite = encode_name(name);
                self.put(&mut entries, &mut ids, &mut spans, &composite, *record)?;
            }
        }
        txn.commit().map_err(CacheError::index)
    }

    /// The newest entry of `repository` in `scope` whose key is `key` (exact) or starts with it
    /// (`prefix`), with exactly `version`.
    pub fn find(
        &self,
        repository: &str,
        scope: &str,
        key: &str,
        prefix: bool,
        version: &str,
    ) -> Result<Option<(EntryName, Record)>, CacheError> {
        let txn = self.db.begin_read().map_err(CacheError::index)?;
        let entries = txn.open_table(ENTRIES).map_err(CacheError::index)?;
        if !prefix {
            let name = EntryName {
                repository: repository.to_owned(),
                scope: scope.to_owned(),
                key: key.to_owned(),
                version: version.to_owned(),
            };
            let found = entries
                .get(encode_name(&name).as_slice())
                .map_err(CacheError::index)?
                .and_then(|value| decode_record(value.value()));
            return Ok(found.map(|record| (name, record)));
        }
        let mut start = encode_name(&EntryName {
            repository: repository.to_owned(),
            scope: scope.to_owned(),
            version: version.to_owned(),
            key: key.to_owned(),
        });
        let mut end = start.clone();
        end.push(END);
        let spans_table = txn.open_table(SPANS).map_err(CacheError::index)?;
        let Some((_, id)) = spans::newest_in(&entries, &spans_table, &start, &end)? else {
            return Ok(None);
        };
        let ids = txn.open_table(IDS).map_err(CacheError::index)?;
        let Some(composite) = ids.get(id).map_err(CacheError::index)? else {
            return Ok(None);
        };
        start.clear();
        start.extend_from_slice(composite.value());
        let record = entries
            .get(start.as_slice())
            .map_err(CacheError::index)?
            .and_then(|value| decode_record(value.value()));
        Ok(record.and_then(|record| decode_name(&start).map(|name| (name, record))))
    }

    /// The entry with `id`.
    #[cfg(test)]
    pub fn get_by_id(&self, id: u64) -> Result<Option<(EntryName, Record)>, CacheError> {
        let txn = self.db.begin_read().map_err(CacheError::index)?;
        let ids = txn.open_table(IDS).map_err(CacheError::index)?;
        let entries = txn.open_table(ENTRIES).map_err(CacheError::index)?;
        let Some(composite) = ids.get(id).map_err(CacheError::index)? else {
            return Ok(None);
        };
        let composite = composite.value().to_vec();
        let record = entries
            .get(composite.as_slice())
            .map_err(CacheError::index)?
            .and_then(|value| decode_record(value.value()));
        Ok(record.and_then(|record| decode_name(&composite).map(|name| (name, record))))
    }

    /// Moves an entry's last access to `now_us`, in memory until the next write (see the module
    /// doc). Not durable: a crash may lose access times, which only makes eviction slightly
    /// less fair, and it keeps a restore free of a write transaction.
    pub fn touch(&self, name: &EntryName, now_us: u64) -> Result<(), CacheError> {
        let touches = {
            let mut pending = crate::sync::lock(&self.pending);
            let accessed = pending.entry(encode_name(name)).or_default();
            *accessed = (*accessed).max(now_us);
            if pending.len() < MAX_PENDING_TOUCHES {
                return Ok(());
            }
            std::mem::take(&mut *pending)
        };
        self.write_touches_now(&touches)
    }

    /// The access times held in memory, which the caller writes. The lock is never held over
    /// a write, so a restore's touch never waits for a commit's fsync.
    fn take_touches(&self) -> HashMap<Vec<u8>, u64> {
        std::mem::take(&mut *crate::sync::lock(&self.pending))
    }

    /// Writes the access times held in memory (not durably: see [`Index::touch`]).
    fn flush_touches(&self) -> Result<(), CacheError> {
        let touches = self.take_touches();
        if touches.is_empty() {
            return Ok(());
        }
        self.write_touches_now(&touches)
    }

    fn write_touches_now(&self, touches: &HashMap<Vec<u8>, u64>) -> Result<(), CacheError> {
        let mut txn = self.db.begin_write().map_err(CacheError::index)?;
        txn.set_durability(Durability::None)
            .map_err(CacheError::index)?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(CacheError::index)?;
            write_touches(&mut entries, touches)?;
        }
        txn.commit().map_err(CacheError::index)
    }

    /// Removes the entries with these ids durably; returns the removed ones.
    pub fn remove_ids(&self, remove: &[u64]) -> Result<Vec<(EntryName, Record)>, CacheError> {
        let touches = self.take_touches();
        let txn = self.db.begin_write().map_err(CacheError::index)?;
        let mut removed = Vec::new();
        {
            let mut entries = txn.open_table(ENTRIES).map_err(CacheError::index)?;
            let mut ids = txn.open_table(IDS).map_err(CacheError::index)?;
            let mut spans = txn.open_table(SPANS).map_err(CacheError::index)?;
            write_touches(&mut entries, &touches)?;
            for id in remove {
                let Some(composite) = ids.remove(*id).map_err(CacheError::index)? else {
                    continue;
                };
                let composite = composite.value().to_vec();
                let record = entries
                    .remove(composite.as_slice())
                    .map_err(CacheError::index)?
                    .and_then(|value| decode_record(value.value()));
                let Some(record) = record else { continue };
                spans::removed(&entries, &mut spans, &composite, record, self.every)?;
                if let Some(name) = decode_name(&composite) {
                    removed.push((name, record));
                }
            }
        }
        txn.commit().map_err(CacheError::index)?;
        Ok(removed)
    }

    /// Every entry (for listing and eviction), with every access time so far.
    pub fn all(&self) -> Result<Vec<(EntryName, Record)>, CacheError> {
        self.flush_touches()?;
        let txn = self.db.begin_read().map_err(CacheError::index)?;
        let entries = txn.open_table(ENTRIES).map_err(CacheError::index)?;
        let mut all = Vec::new();
        for row in entries.iter().map_err(CacheError::index)? {
            let (name, value) = row.map_err(CacheError::index)?;
            if let (Some(name), Some(record)) =
                (decode_name(name.value()), decode_record(value.value()))
            {
                all.push((name, record));
            }
        }
        Ok(all)
    }
}

/// A table of byte keys and values (`entries`, `spans`) in a write transaction.
type Table<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// Re-keys every entry from layout 1 (`repository, scope, key, version`) to this one.
fn convert_from_layout_1(
    entries: &mut Table<'_>,
    ids: &mut redb::Table<'_, u64, &'static [u8]>,
) -> Result<(), CacheError> {
    let mut rows = Vec::new();
    for row in entries.iter().map_err(CacheError::index)? {
        let (composite, value) = row.map_err(CacheError::index)?;
        rows.push((composite.value().to_vec(), value.value().to_vec()));
    }
    entries.retain(|_, _| false).map_err(CacheError::index)?;
    ids.retain(|_, _| false).map_err(CacheError::index)?;
    for (old, value) in rows {
        let mut parts = old.split(|byte| *byte == SEP);
        let (Some(repository), Some(scope), Some(key), Some(version), None, Some(record)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            decode_record(&value),
        ) else {
            // Unreadable rows are dropped; their blobs go with the next recovery.
            continue;
        };
        let composite = [repository, scope, version, key].join(&SEP);
        entries
            .insert(composite.as_slice(), value.as_slice())
            .map_err(CacheError::index)?;
        ids.insert(record.id, composite.as_slice())
            .map_err(CacheError::index)?;
    }
    Ok(())
}

/// Moves the access time of every row named in `pending` forward (rows gone meanwhile are
/// skipped).
fn write_touches(
    entries: &mut Table<'_>,
    pending: &HashMap<Vec<u8>, u64>,
) -> Result<(), CacheError> {
    for (composite, accessed_us) in pending {
        let current = entries
            .get(composite.as_slice())
            .map_err(CacheError::index)?
            .and_then(|value| decode_record(value.value()));
        if let Some(mut record) = current
            && record.accessed_us < *accessed_us
        {
            record.accessed_us = *accessed_us;
            entries
                .insert(composite.as_slice(), encode_record(record).as_slice())
                .map_err(CacheError::index)?;
        }
    }
    Ok(())
}

fn encode_name(name: &EntryName) -> Vec<u8> {
    let parts = [&name.repository, &name.scope, &name.version, &name.key];
    let mut out = Vec::with_capacity(parts.iter().map(|part| part.len() + 1).sum());
    for (idx, part) in parts.iter().enumerate() {
        if idx > 0 {
            out.push(SEP);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn decode_name(bytes: &[u8]) -> Option<EntryName> {
    let mut parts = bytes.split(|byte| *byte == SEP);
    let mut next = || {
        parts
            .next()
            .and_then(|part| String::from_utf8(part.to_vec()).ok())
    };
    let (repository, scope, version, key) = (next()?, next()?, next()?, next()?);
    Some(EntryName {
        repository,
        scope,
        key,
        version,
    })
}

fn encode_record(record: Record) -> [u8; 32] {
    let mut out = [0u8; 32];
    let fields = [
        record.id,
        record.size,
        record.created_us,
        record.accessed_us,
    ];
    for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
        chunk.copy_from_slice(&field.to_be_bytes());
    }
    out
}

pub(super) fn decode_record(bytes: &[u8]) -> Option<Record> {
    let field = |idx: usize| -> Option<u64> {
        let slice = bytes.get(idx * 8..idx * 8 + 8)?;
        Some(u64::from_be_bytes(slice.try_into().ok()?))
    };
    Some(Record {
        id: field(0)?,
        size: field(1)?,
        created_us: field(2)?,
        accessed_us: field(3)?,
    })
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
