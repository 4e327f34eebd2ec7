//! Tests of the index and its spans.

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
                            n.scope == scope && n.version == version && n.key.starts_with(prefix)
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
