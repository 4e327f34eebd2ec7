//! The index of committed entries, in a redb database (`index.redb` under `cache.dir`).
//!
//! Two tables: `entries` maps `repository \0 scope \0 key \0 version` to the entry's record (id,
//! size, creation and last-access time), ordered so that a key prefix inside one repository and
//! scope is one range scan; `ids` maps an entry id back to that composite key. Every call blocks
//! (redb is synchronous): the engine calls them from `spawn_blocking`. Only committed entries are
//! ever stored, so an index row always names a complete blob.
//!
//! A restore's access time is kept in memory (`pending`) and written with the next write
//! transaction, or before anything reads access times (`all`): a restore is then a read
//! transaction only, never a write that waits for the writer lock behind a commit's fsync.
//!
//! May use: `redb`, `super::error`, `crate::sync`, std.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::error::CacheError;

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const IDS: TableDefinition<u64, &[u8]> = TableDefinition::new("ids");

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
    /// Access times not yet written, by composite key (the latest wins). A std mutex: held for a
    /// map operation only, never over a write or across an await.
    pending: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Index {
    /// Opens (or creates) the database at `path` and makes sure both tables exist.
    pub fn open(path: &Path) -> Result<Index, CacheError> {
        let db = Database::create(path).map_err(CacheError::index)?;
        let txn = db.begin_write().map_err(CacheError::index)?;
        txn.open_table(ENTRIES).map_err(CacheError::index)?;
        txn.open_table(IDS).map_err(CacheError::index)?;
        txn.commit().map_err(CacheError::index)?;
        Ok(Index {
            db,
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
            write_touches(&mut entries, &touches)?;
            replaced = entries
                .insert(composite.as_slice(), encode_record(record).as_slice())
                .map_err(CacheError::index)?
                .and_then(|old| decode_record(old.value()));
            if let Some(old) = replaced {
                ids.remove(old.id).map_err(CacheError::index)?;
            }
            ids.insert(record.id, composite.as_slice())
                .map_err(CacheError::index)?;
        }
        txn.commit().map_err(CacheError::index)?;
        Ok(replaced)
    }

    /// Inserts many committed entries in one durable transaction (the benchmark's index fill).
    pub fn insert_batch(&self, rows: &[(EntryName, Record)]) -> Result<(), CacheError> {
        let txn = self.db.begin_write().map_err(CacheError::index)?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(CacheError::index)?;
            let mut ids = txn.open_table(IDS).map_err(CacheError::index)?;
            for (name, record) in rows {
                let composite = encode_name(name);
                entries
                    .insert(composite.as_slice(), encode_record(*record).as_slice())
                    .map_err(CacheError::index)?;
                ids.insert(record.id, composite.as_slice())
                    .map_err(CacheError::index)?;
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
        let mut start = Vec::with_capacity(repository.len() + scope.len() + key.len() + 3);
        start.extend_from_slice(repository.as_bytes());
        start.push(SEP);
        start.extend_from_slice(scope.as_bytes());
        start.push(SEP);
        start.extend_from_slice(key.as_bytes());
        let mut end = start.clone();
        end.push(END);
        // Rows are compared as bytes; only the newest is decoded (a restore key may match
        // thousands of rows, and decoding each would allocate four strings).
        let mut best: Option<(Vec<u8>, Record)> = None;
        for row in entries
            .range(start.as_slice()..end.as_slice())
            .map_err(CacheError::index)?
        {
            let (name, value) = row.map_err(CacheError::index)?;
            let composite = name.value();
            if !has_version(composite, version) {
                continue;
            }
            let Some(record) = decode_record(value.value()) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|(_, b)| record.created_us > b.created_us)
            {
                best = Some((composite.to_vec(), record));
            }
        }
        Ok(best.and_then(|(composite, record)| decode_name(&composite).map(|name| (name, record))))
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
                if let (Some(name), Some(record)) = (decode_name(&composite), record) {
                    removed.push((name, record));
                }
            }
        }
        txn.commit().map_err(CacheError::index)?;
        Ok(removed)
    }

    /// Every entry (for listing and eviction), in key order, with every access time so far.
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

/// Moves the access time of every row named in `pending` forward (rows gone meanwhile are
/// skipped).
fn write_touches(
    entries: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
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

/// Whether a composite key's last part is exactly `version` (no part contains [`SEP`]).
fn has_version(composite: &[u8], version: &str) -> bool {
    let version = version.as_bytes();
    composite.len() > version.len()
        && composite.ends_with(version)
        && composite[composite.len() - version.len() - 1] == SEP
}

fn encode_name(name: &EntryName) -> Vec<u8> {
    let parts = [&name.repository, &name.scope, &name.key, &name.version];
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
    Some(EntryName {
        repository: next()?,
        scope: next()?,
        key: next()?,
        version: next()?,
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

fn decode_record(bytes: &[u8]) -> Option<Record> {
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
mod tests {
    use super::*;

    fn name(scope: &str, key: &str, version: &str) -> EntryName {
        EntryName {
            repository: "owner/repo".into(),
            scope: scope.into(),
            key: key.into(),
            version: version.into(),
        }
    }

    fn record(id: u64, created_us: u64) -> Record {
        Record {
            id,
            size: 10,
            created_us,
            accessed_us: created_us,
        }
    }

    #[test]
    fn prefix_lookup_returns_the_newest_entry_of_the_right_version_and_scope() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        index
            .insert(&name("refs/heads/main", "npm-a", "v1"), record(1, 100))
            .unwrap();
        index
            .insert(&name("refs/heads/main", "npm-b", "v1"), record(2, 200))
            .unwrap();
        index
            .insert(&name("refs/heads/main", "npm-c", "v2"), record(3, 300))
            .unwrap();
        index
            .insert(&name("refs/heads/dev", "npm-d", "v1"), record(4, 400))
            .unwrap();
        index
            .insert(&name("refs/heads/main", "npmx", "v1"), record(5, 500))
            .unwrap();

        let found = index
            .find("owner/repo", "refs/heads/main", "npm-", true, "v1")
            .unwrap();
        assert_eq!(found.map(|(_, r)| r.id), Some(2));
        // A version that only ends like the stored one is another version.
        let suffix = index
            .find("owner/repo", "refs/heads/main", "npm-", true, "1")
            .unwrap();
        assert_eq!(suffix, None);
        let exact = index
            .find("owner/repo", "refs/heads/main", "npm-", false, "v1")
            .unwrap();
        assert_eq!(exact, None);
        let other_repo = index
            .find("owner/rep", "refs/heads/main", "npm", true, "v1")
            .unwrap();
        assert_eq!(other_repo, None);
        assert_eq!(index.max_id().unwrap(), 5);
    }

    #[test]
    fn replacing_an_entry_drops_the_old_id_and_removal_returns_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        let entry = name("refs/heads/main", "k", "v");
        index.insert(&entry, record(1, 1)).unwrap();
        let replaced = index.insert(&entry, record(2, 2)).unwrap();
        assert_eq!(replaced.map(|r| r.id), Some(1));
        assert_eq!(index.get_by_id(1).unwrap(), None);
        index.touch(&entry, 50).unwrap();
        assert_eq!(
            index.get_by_id(2).unwrap().map(|(_, r)| r.accessed_us),
            Some(2),
            "a touch waits in memory"
        );
        assert_eq!(index.all().unwrap()[0].1.accessed_us, 50);
        index.touch(&entry, 60).unwrap();
        let other = name("refs/heads/main", "other", "v");
        index.insert(&other, record(3, 3)).unwrap();
        assert_eq!(
            index.get_by_id(2).unwrap().map(|(_, r)| r.accessed_us),
            Some(60),
            "the next write carries it"
        );
        index.remove_ids(&[3]).unwrap();
        let removed = index.remove_ids(&[2, 9]).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(index.all().unwrap().is_empty());
    }
}
