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

/// Reads the file at the absolute `path`; `None` when it does not exist.
pub async fn read(
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
    let archive = match tokio::time::timeout(API_TIMEOUT, collect).await {
        Ok(result) => result?,
        Err(_) => return Err(BackendError::Docker(format!("read {path}: no answer"))),
    };
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
