//! `hashFiles` on the docker backend: the workspace comes out of the job container as a tar
//! archive (Docker's archive API, so the image needs no tools), read as it streams; each regular
//! file the patterns select is hashed on the way. Same selection, order and result as the host
//! backend's directory walk (`executor::hash_files`).
//!
//! Expressions are evaluated synchronously, so the hasher blocks its worker thread
//! (`block_in_place`) while the archive streams: it needs tokio's multi-threaded runtime, which
//! the daemon and `exec` run on, and it says so elsewhere rather than panicking.

use std::io::Read;
use std::path::{Component, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;

use super::describe;
use crate::executor::backend::WorkspaceHasher;
use crate::executor::hash_files::{HashPatterns, combine};

/// Upper bound on one `hashFiles` call (streaming and hashing the whole workspace).
const HASH_FILES_LIMIT: Duration = Duration::from_secs(300);

/// A `hashFiles` for the workspace of `container`.
pub fn workspace_hasher(docker: Docker, container: String, workspace: String) -> WorkspaceHasher {
    Box::new(move |patterns: &[String]| {
        let patterns = HashPatterns::new(&workspace, patterns)?;
        let handle = match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => handle,
            _ => {
                return Err(String::from(
                    "hashFiles: the docker backend needs a multi-threaded tokio runtime",
                ));
            }
        };
        tokio::task::block_in_place(|| {
            hash_workspace(&handle, &docker, &container, &workspace, &patterns)
        })
    })
}

fn hash_workspace(
    handle: &Handle,
    docker: &Docker,
    container: &str,
    workspace: &str,
    patterns: &HashPatterns,
) -> Result<String, String> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(workspace)
        .build();
    let stream = docker
        .download_from_container(container, Some(options))
        .map(|chunk| chunk.map_err(|err| describe(&err)));
    let reader = StreamRead {
        handle,
        stream: Box::pin(stream),
        chunk: Bytes::new(),
        deadline: Instant::now() + HASH_FILES_LIMIT,
    };
    let error = |err: std::io::Error| format!("hashFiles: reading the workspace archive: {err}");
    let mut archive = tar::Archive::new(reader);
    let mut files = Vec::new();
    for entry in archive.entries().map_err(error)? {
        let mut entry = entry.map_err(error)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        // Entries are named `<workspace directory name>/<path>`.
        let path = entry.path().map_err(error)?;
        let relative: PathBuf = path
            .components()
            .skip(1)
            .filter(|component| matches!(component, Component::Normal(_)))
            .collect();
        if !patterns.matches(&relative) {
            continue;
        }
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n_read = entry.read(&mut buffer).map_err(error)?;
            if n_read == 0 {
                break;
            }
            hasher.update(&buffer[..n_read]);
        }
        files.push((relative, hasher.finalize().into()));
    }
    Ok(combine(files))
}

/// A blocking `Read` over Docker's archive stream, each chunk awaited on the runtime under one
/// overall deadline.
struct StreamRead<'a, S> {
    handle: &'a Handle,
    stream: std::pin::Pin<Box<S>>,
    chunk: Bytes,
    deadline: Instant,
}

impl<S: Stream<Item = Result<Bytes, String>>> Read for StreamRead<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            let next = self
                .handle
                .block_on(tokio::time::timeout_at(self.deadline, self.stream.next()));
            match next {
                Ok(Some(Ok(chunk))) => self.chunk = chunk,
                Ok(Some(Err(message))) => return Err(std::io::Error::other(message)),
                Ok(None) => return Ok(0),
                Err(_) => {
                    return Err(std::io::Error::other(format!(
                        "not done within {}s",
                        HASH_FILES_LIMIT.as_secs()
                    )));
                }
            }
        }
        let n_copied = buf.len().min(self.chunk.len());
        buf[..n_copied].copy_from_slice(&self.chunk[..n_copied]);
        self.chunk.advance(n_copied);
        Ok(n_copied)
    }
}
