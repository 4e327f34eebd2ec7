//! v2 blocks: the Azure-blob style upload the toolkit's `BlockBlobClient.uploadFile` does for a
//! large archive. Each `comp=block` PUT is staged in its own temp file (numbered, never named
//! by the client's block id); the `comp=blocklist` PUT copies them, in the listed order, into
//! the upload's part file, which is then committed like a v1 upload.
//!
//! May use: `super` (uploads, store), tokio, std.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Instant;

use super::CacheServer;
use super::error::CacheError;
use super::upload::{Upload, stream_to_file};

/// Blocks one upload may stage.
pub const MAX_BLOCKS: usize = 50_000;

impl CacheServer {
    /// Stages one v2 block (`comp=block&blockid=...`) of upload `upload`.
    pub(crate) async fn stage_block<S, E>(
        &self,
        upload: &Upload,
        block_id: &str,
        length: u64,
        body: S,
    ) -> Result<(), CacheError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if block_id.is_empty() || block_id.len() > 128 {
            return Err(CacheError::Invalid(
                "a block id must be 1 to 128 bytes".into(),
            ));
        }
        let block_idx = {
            let mut state = upload.state();
            if state.committing {
                return Err(CacheError::Conflict(format!(
                    "cache upload {} is already committed",
                    upload.id
                )));
            }
            let staged: u64 = state.blocks.values().filter_map(|(_, len)| *len).sum();
            if staged.saturating_add(length) > upload.max_bytes {
                return Err(CacheError::TooLarge(format!(
                    "the blocks would exceed the {} bytes this upload may hold",
                    upload.max_bytes
                )));
            }
            if state.n_block_files >= MAX_BLOCKS {
                return Err(CacheError::Invalid(format!(
                    "an upload may stage at most {MAX_BLOCKS} blocks"
                )));
            }
            state.last_activity = Some(Instant::now());
            // A block sent again goes to a new file; the id then names the newest one.
            let block_idx = state.n_block_files;
            state.n_block_files += 1;
            state.blocks.insert(block_id.to_owned(), (block_idx, None));
            block_idx
        };
        let store = self.store.clone();
        let id = upload.id;
        let file = self
            .blocking(move || store.create_block(id, block_idx))
            .await?;
        let written = stream_to_file(Arc::new(file), 0, length, body).await;
        let mut state = upload.state();
        state.last_activity = Some(Instant::now());
        if let Some(entry) = state.blocks.get_mut(block_id)
            && entry.0 == block_idx
        {
            entry.1 = written.is_ok().then_some(length);
        }
        written
    }

    /// Assembles staged blocks, in `block_ids` order, as the upload's bytes
    /// (`comp=blocklist`).
    pub(crate) async fn assemble_blocks(
        &self,
        upload: &Upload,
        block_ids: &[String],
    ) -> Result<u64, CacheError> {
        let mut parts = Vec::with_capacity(block_ids.len());
        let total = {
            let mut state = upload.state();
            let mut total: u64 = 0;
            for block_id in block_ids {
                let Some(&(block_idx, Some(len))) = state.blocks.get(block_id) else {
                    return Err(CacheError::Invalid(
                        "the block list names a block that was not (fully) staged".into(),
                    ));
                };
                parts.push(self.store.block_path(upload.id, block_idx));
                total = total.saturating_add(len);
            }
            if total == 0 || total > upload.max_bytes {
                return Err(CacheError::Invalid(format!(
                    "the block list holds {total} bytes; 1 to {} are allowed",
                    upload.max_bytes
                )));
            }
            state.ranges.claim(0, total).map_err(|_| {
                CacheError::Conflict("the upload's bytes were already written".into())
            })?;
            total
        };
        let file = upload.file.clone();
        let copied = self
            .blocking(move || {
                let mut offset = 0;
                for part in parts {
                    let mut source = File::open(&part).map_err(|err| CacheError::io(&part, err))?;
                    let mut target = FileAt {
                        file: &file,
                        offset,
                    };
                    offset += std::io::copy(&mut source, &mut target)
                        .map_err(|err| CacheError::io(&part, err))?;
                }
                Ok(offset)
            })
            .await;
        let mut state = upload.state();
        match copied {
            Ok(n_copied) if n_copied == total => {
                state.ranges.finish(0);
                Ok(total)
            }
            Ok(n_copied) => {
                state.ranges.abandon(0);
                Err(CacheError::Invalid(format!(
                    "the staged blocks hold {n_copied} bytes, not {total}"
                )))
            }
            Err(err) => {
                state.ranges.abandon(0);
                Err(err)
            }
        }
    }
}

/// A `Write` that writes at an advancing offset with `pwrite`, so several can share a file.
struct FileAt<'file> {
    file: &'file File,
    offset: u64,
}

impl std::io::Write for FileAt<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n_written = self.file.write_at(buf, self.offset)?;
        self.offset += n_written as u64;
        Ok(n_written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
