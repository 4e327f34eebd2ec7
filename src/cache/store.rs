//! The blob files under `cache.dir`: `blobs/<id>` for committed entries and `tmp/<id>.part` (plus
//! `tmp/<id>.<n>.block` for v2 blocks) for uploads. File names come only from numeric ids, never
//! from a key, so no key can reach the file system. Every call blocks; the engine runs them in
//! `spawn_blocking`.
//!
//! Recovery ([`Store::recover`]) runs when the server opens: every temp file goes (an upload does
//! not survive a restart), and blob files without an index row go too (a crash between the rename
//! and the index insert), so what remains is exactly what the index names.
//!
//! May use: `nix` (statvfs), std.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::CacheError;

/// The directory layout.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
}

impl Store {
    /// Creates `root`, `root/blobs` and `root/tmp` (mode 0700) if missing.
    pub fn create(root: &Path) -> Result<Store, CacheError> {
        let store = Store {
            root: root.to_owned(),
            blobs: root.join("blobs"),
            tmp: root.join("tmp"),
        };
        for dir in [&store.root, &store.blobs, &store.tmp] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|err| CacheError::io(dir, err))?;
        }
        Ok(store)
    }

    /// The index database's path.
    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.redb")
    }

    /// A committed entry's blob.
    pub fn blob_path(&self, id: u64) -> PathBuf {
        self.blobs.join(id.to_string())
    }

    /// An upload's temp file.
    pub fn part_path(&self, id: u64) -> PathBuf {
        self.tmp.join(format!("{id}.part"))
    }

    /// One staged v2 block of an upload.
    pub fn block_path(&self, id: u64, block_idx: usize) -> PathBuf {
        self.tmp.join(format!("{id}.{block_idx}.block"))
    }

    /// Creates an upload's temp file (mode 0600), failing if it exists.
    pub fn create_part(&self, id: u64) -> Result<File, CacheError> {
        create_new(&self.part_path(id))
    }

    /// Creates a v2 block's temp file, replacing an earlier attempt of the same block.
    pub fn create_block(&self, id: u64, block_idx: usize) -> Result<File, CacheError> {
        let path = self.block_path(id, block_idx);
        remove_if_present(&path)?;
        create_new(&path)
    }

    /// Moves a finished upload into place as `blobs/<id>` after syncing its bytes.
    pub fn commit_part(&self, id: u64, file: &File) -> Result<(), CacheError> {
        let part = self.part_path(id);
        file.sync_all().map_err(|err| CacheError::io(&part, err))?;
        fs::rename(&part, self.blob_path(id)).map_err(|err| CacheError::io(&part, err))?;
        // The rename is durable once the directory is synced.
        File::open(&self.blobs)
            .and_then(|dir| dir.sync_all())
            .map_err(|err| CacheError::io(&self.blobs, err))
    }

    /// Removes an upload's temp file and its blocks.
    pub fn discard_upload(&self, id: u64, n_blocks: usize) {
        let _ = fs::remove_file(self.part_path(id));
        for block_idx in 0..n_blocks {
            let _ = fs::remove_file(self.block_path(id, block_idx));
        }
    }

    /// Removes a committed blob (after its index row is gone).
    pub fn remove_blob(&self, id: u64) -> Result<(), CacheError> {
        remove_if_present(&self.blob_path(id))
    }

    /// The size of a committed blob, or None when it is missing.
    pub fn blob_size(&self, id: u64) -> Option<u64> {
        fs::metadata(self.blob_path(id)).ok().map(|meta| meta.len())
    }

    /// Empties `tmp/` and removes blob files whose id is not in `known`. Returns the highest
    /// numeric id seen among the files, so new ids never reuse one.
    pub fn recover(&self, known: &HashSet<u64>) -> Result<u64, CacheError> {
        let mut max_id = 0;
        for entry in fs::read_dir(&self.tmp).map_err(|err| CacheError::io(&self.tmp, err))? {
            let entry = entry.map_err(|err| CacheError::io(&self.tmp, err))?;
            let path = entry.path();
            if let Some(id) = leading_id(&path) {
                max_id = max_id.max(id);
            }
            remove_if_present(&path)?;
        }
        for entry in fs::read_dir(&self.blobs).map_err(|err| CacheError::io(&self.blobs, err))? {
            let entry = entry.map_err(|err| CacheError::io(&self.blobs, err))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|name| name.parse::<u64>().ok()) else {
                continue;
            };
            max_id = max_id.max(id);
            if !known.contains(&id) {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(max_id)
    }

    /// Bytes available to this user on the cache's file system.
    pub fn free_bytes(&self) -> Result<u64, CacheError> {
        let stats = nix::sys::statvfs::statvfs(&self.root)
            .map_err(|errno| CacheError::io(&self.root, errno.into()))?;
        Ok(stats
            .blocks_available()
            .saturating_mul(stats.fragment_size()))
    }
}

fn create_new(path: &Path) -> Result<File, CacheError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| CacheError::io(path, err))
}

fn remove_if_present(path: &Path) -> Result<(), CacheError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(CacheError::io(path, err)),
        _ => Ok(()),
    }
}

/// The id a temp file name starts with (`12.part`, `12.3.block`).
fn leading_id(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_empties_tmp_and_drops_blobs_the_index_does_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        store.create_part(9).unwrap();
        store.create_block(12, 0).unwrap();
        fs::write(store.blob_path(3), b"kept").unwrap();
        fs::write(store.blob_path(4), b"orphan").unwrap();
        fs::write(dir.path().join("blobs/README"), b"not ours").unwrap();

        let max_id = store.recover(&HashSet::from([3])).unwrap();

        assert_eq!(max_id, 12);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(store.blob_size(3), Some(4));
        assert_eq!(store.blob_size(4), None);
        assert!(dir.path().join("blobs/README").exists());
    }
}
