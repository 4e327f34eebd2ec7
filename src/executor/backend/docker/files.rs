//! Files in and out of the job container as tar archives (Docker's archive API).

use bollard::Docker;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::io::Read;

use super::{API_TIMEOUT, bounded, describe, is_not_found};
use crate::executor::backend::BackendError;

/// Largest file `read` returns; command files (`GITHUB_ENV`, ...) are far smaller.
pub const MAX_READ_BYTES: usize = 256 * 1024 * 1024;

/// Writes `contents` at the absolute `path`; Docker creates missing parent directories.
pub async fn write(
    docker: &Docker,
    container: &str,
    path: &str,
    contents: &[u8],
    mode: u32,
) -> Result<(), BackendError> {
    let archive = single_file_tar(path, contents, mode)?;
    let options = UploadToContainerOptionsBuilder::default().path("/").build();
    bounded(
        format!("write {path} into the job container"),
        docker.upload_to_container(container, Some(options), bollard::body_full(archive.into())),
    )
    .await
}

/// Unpacks `archive` into the container under the absolute directory `parent`.
pub async fn upload_archive(
    docker: &Docker,
    container: &str,
    parent: &str,
    archive: Vec<u8>,
) -> Result<(), BackendError> {
    let options = UploadToContainerOptionsBuilder::default()
        .path(parent)
        .build();
    bounded(
        format!("copy into {parent} of container {container}"),
        docker.upload_to_container(container, Some(options), bollard::body_full(archive.into())),
    )
    .await
}

/// Copies the host directory `host_dir` into the container as the absolute `path` (symlinks kept
/// as links, not followed).
pub async fn upload_dir(
    docker: &Docker,
    container: &str,
    host_dir: &std::path::Path,
    path: &str,
) -> Result<(), BackendError> {
    let archive = pack_dir(host_dir, path.trim_matches('/')).await?;
    upload_archive(docker, container, "/", archive).await
}

/// A tar archive of `host_dir` with its entries under `prefix` (`.`: at the root).
pub async fn pack_dir(host_dir: &std::path::Path, prefix: &str) -> Result<Vec<u8>, BackendError> {
    let prefix = prefix.to_string();
    let source = host_dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder.append_dir_all(&prefix, &source)?;
        builder.into_inner()
    })
    .await
    .map_err(|error| BackendError::Docker(format!("packing {}: {error}", host_dir.display())))?
    .map_err(|source| BackendError::Io {
        context: format!("cannot pack {}", host_dir.display()),
        source,
    })
}

/// The tar archive of `path` (a file or a directory, entries named from its last component), at
/// most [`MAX_READ_BYTES`]; `None` when it does not exist.
pub async fn download(
    docker: &Docker,
    container: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, BackendError> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(container, Some(options));
    let collect = async {
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    archive.extend_from_slice(&bytes);
                    if archive.len() > MAX_READ_BYTES + 64 * 1024 {
                        return Err(BackendError::Docker(format!(
                            "{path} is larger than {MAX_READ_BYTES} bytes"
                        )));
                    }
                }
                Err(err) if is_not_found(&err) => return Ok(None),
                Err(err) => {
                    return Err(BackendError::Docker(format!(
                        "read {path} from the job container: {}",
                        describe(&err)
                    )));
                }
            }
        }
        Ok(Some(archive))
    };
    match tokio::time::timeout(API_TIMEOUT, collect).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::Docker(format!("read {path}: no answer"))),
    }
}

/// Reads the file at the absolute `path`; `None` when it does not exist.
pub async fn read(
    docker: &Docker,
    container: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, BackendError> {
    let archive = download(docker, container, path).await?;
    match archive {
        None => Ok(None),
        Some(archive) => first_file(&archive, path).map(Some),
    }
}

fn single_file_tar(path: &str, contents: &[u8], mode: u32) -> Result<Vec<u8>, BackendError> {
    let io_error = |source| BackendError::Io {
        context: format!("cannot build a tar of {path}"),
        source,
    };
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    header.set_mtime(mtime);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header, path.trim_start_matches('/'), contents)
        .map_err(io_error)?;
    builder.into_inner().map_err(io_error)
}

fn first_file(archive: &[u8], path: &str) -> Result<Vec<u8>, BackendError> {
    let io_error = |source| BackendError::Io {
        context: format!("cannot unpack {path} from the job container"),
        source,
    };
    let mut entries = tar::Archive::new(archive);
    if let Some(entry) = entries.entries().map_err(io_error)?.next() {
        let mut entry = entry.map_err(io_error)?;
        if entry.header().entry_type().is_dir() {
            return Err(BackendError::Docker(format!("{path} is a directory")));
        }
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).map_err(io_error)?;
        return Ok(contents);
    }
    Err(BackendError::Docker(format!(
        "{path}: empty archive from Docker"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_round_trip_keeps_contents_and_mode() {
        let archive = single_file_tar("/a/b/c.txt", b"hello\n", 0o750).unwrap();
        let mut entries = tar::Archive::new(archive.as_slice());
        let entry = entries.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("a/b/c.txt"));
        assert_eq!(entry.header().mode().unwrap(), 0o750);
        assert_eq!(first_file(&archive, "/a/b/c.txt").unwrap(), b"hello\n");
    }
}
