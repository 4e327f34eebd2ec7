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

    /// The spans as stored, compared with what a rebuild from the entries would store.
    fn assert_spans_agree(index: &Index) {
        let txn = index.db.begin_read().unwrap();
        let entries = txn.open_table(ENTRIES).unwrap();
        let spans_table = txn.open_table(SPANS).unwrap();
        let stored: Vec<_> = spans_table
            .iter()
            .unwrap()
            .map(|row| {
                let (anchor, value) = row.unwrap();
                (anchor.value().to_vec(), spans::decode(value.value()))
            })
            .collect();
        assert_eq!(stored, spans::expected(&entries, index.every));
    }

    /// A tiny deterministic generator (xorshift), so a failing sequence can be replayed.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, sides: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % sides
        }
    }

    #[test]
    fn prefix_lookups_agree_with_a_full_scan_through_inserts_replacements_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        // Spans of 3 on average, so anchors are inserted and removed all the time.
        let index = Index::open_spanned(&dir.path().join("index.redb"), 3).unwrap();
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
        let mut live: Vec<(EntryName, Record)> = Vec::new();
        let scopes = ["refs/heads/main", "refs/heads/dev"];
        let versions = ["v1", "v2"];
        for step in 1..=600u64 {
            match dice.roll(10) {
                0..=5 => {
                    let key = format!("k-{}{}", dice.roll(4), dice.roll(20));
                    let entry = name(
                        scopes[dice.roll(2) as usize],
                        &key,
                        versions[dice.roll(2) as usize],
                    );
                    // Creation times repeat, so ties are broken by id.
                    let created = dice.roll(50);
                    index.insert(&entry, record(step, created)).unwrap();
                    live.retain(|(name, _)| *name != entry);
                    live.push((entry, record(step, created)));
                }
                6..=8 if !live.is_empty() => {
                    let gone = live.swap_remove(dice.roll(live.len() as u64) as usize);
                    let removed = index.remove_ids(&[gone.1.id, 100_000]).unwrap();
                    assert_eq!(removed, vec![gone]);
                }
                _ => {
                    if let Some((entry, record)) = live.first_mut() {
                        index.touch(entry, 1_000 + step).unwrap();
                        record.accessed_us = 1_000 + step;
                    }
                }
            }
            assert_spans_agree(&index);
            for prefix in ["k", "k-", "k-1", "k-21", "k-35", "x"] {
                for scope in scopes {
                    for version in versions {
                        let want = live
                            .iter()
                            .filter(|(n, _)| {
                                n.scope == scope
                                    && n.version == version
                                    && n.key.starts_with(prefix)
                            })
                            .max_by_key(|(_, r)| (r.created_us, r.id))
                            .map(|(n, r)| (n.key.clone(), r.id));
                        let got = index
                            .find("owner/repo", scope, prefix, true, version)
                            .unwrap()
                            .map(|(n, r)| (n.key, r.id));
                        assert_eq!(got, want, "step {step}: {prefix} in {scope} {version}");
                    }
                }
            }
        }
        assert!(live.len() > 20, "the sequence kept entries to look up");
    }

    #[test]
    fn spans_are_rebuilt_when_the_index_was_written_with_another_span_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let index = Index::open_spanned(&path, 2).unwrap();
        let rows: Vec<_> = (0..200)
            .map(|i| {
                (
                    name("refs/heads/main", &format!("k{i}"), "v"),
                    record(i + 1, i),
                )
            })
            .collect();
        index.insert_batch(&rows).unwrap();
        assert_spans_agree(&index);
        drop(index);
        let index = Index::open_spanned(&path, 7).unwrap();
        assert_spans_agree(&index);
        let found = index
            .find("owner/repo", "refs/heads/main", "k1", true, "v")
            .unwrap();
        assert_eq!(found.map(|(n, _)| n.key), Some("k199".to_owned()));
    }

    #[test]
    fn an_index_of_the_first_layout_is_converted_when_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        {
            // Written as the first release did: key before version, no `meta`, no `spans`.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut entries = txn.open_table(ENTRIES).unwrap();
                let mut ids = txn.open_table(IDS).unwrap();
                for (id, key) in [(1, "npm-a"), (2, "npm-b")] {
                    let old = format!("owner/repo\0refs/heads/main\0{key}\0v1");
                    let value = encode_record(record(id, id * 10));
                    entries.insert(old.as_bytes(), value.as_slice()).unwrap();
                    ids.insert(id, old.as_bytes()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let index = Index::open(&path).unwrap();
        assert_spans_agree(&index);
        let found = index
            .find("owner/repo", "refs/heads/main", "npm-", true, "v1")
            .unwrap();
        assert_eq!(
            found,
            Some((name("refs/heads/main", "npm-b", "v1"), record(2, 20)))
        );
        assert_eq!(
            index.get_by_id(1).unwrap().map(|(n, _)| n),
            Some(name("refs/heads/main", "npm-a", "v1"))
        );
        assert_eq!(index.all().unwrap().len(), 2);
        drop(index);
        // Converted once: the second open reads the new layout as it is.
        let index = Index::open(&path).unwrap();
        assert_eq!(index.all().unwrap().len(), 2);
    }

    #[test]
    fn an_index_of_a_newer_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        drop(Index::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("layout", LAYOUT + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Index::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer act_runner"), "{err}");
        assert!(err.contains("index.redb"), "{err}");
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
