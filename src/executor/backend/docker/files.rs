//! Files in and out of the job container as tar archives (Docker's archive API).

use bollard::Docker;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::io::Read;

use super::{API_TIMEOUT, bounded, describe, is_not_found};
use crate::executor::backend::{
    BackendError, MAX_COMMAND_FILE_BYTES, NewFile, command_file_too_large,
};

/// Largest file `read` returns; command files (`GITHUB_ENV`, ...) are far smaller.
pub const MAX_READ_BYTES: usize = 256 * 1024 * 1024;

/// Writes every file in one archive, one API call; Docker creates missing parent directories.
pub async fn write_all(
    docker: &Docker,
    container: &str,
    files: &[NewFile],
) -> Result<(), BackendError> {
    let archive = files_tar(files)?;
    let options = UploadToContainerOptionsBuilder::default().path("/").build();
    let what = match files {
        [file] => file.path.clone(),
        _ => format!("{} files", files.len()),
    };
    bounded(
        format!("write {what} into the job container"),
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
    pack(host_dir, move |builder| {
        builder.append_dir_all(&prefix, &source)
    })
    .await
}

/// A tar archive of the entries `relative` of `root` (files, and symlinks as links), each under
/// `prefix`.
pub async fn pack_entries(
    root: &std::path::Path,
    relative: Vec<std::path::PathBuf>,
    prefix: &str,
) -> Result<Vec<u8>, BackendError> {
    let prefix = std::path::PathBuf::from(prefix);
    let source = root.to_path_buf();
    pack(root, move |builder| {
        relative.iter().try_for_each(|entry| {
            builder.append_path_with_name(source.join(entry), prefix.join(entry))
        })
    })
    .await
}

/// An archive `fill` builds (symlinks kept as links) off the runtime; `source` names it in errors.
async fn pack(
    source: &std::path::Path,
    fill: impl FnOnce(&mut tar::Builder<Vec<u8>>) -> std::io::Result<()> + Send + 'static,
) -> Result<Vec<u8>, BackendError> {
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        fill(&mut builder)?;
        builder.into_inner()
    })
    .await
    .map_err(|error| BackendError::Docker(format!("packing {}: {error}", source.display())))?
    .map_err(|error| BackendError::Io {
        context: format!("cannot pack {}", source.display()),
        source: error,
    })
}

/// Copies the directory `path` from the container `from` to the same place in `to`, streamed
/// from one archive call into the other: a workspace of any size passes without being held in
/// memory. A missing directory copies nothing.
pub async fn copy_dir(
    docker: &Docker,
    from: &str,
    to: &str,
    path: &str,
    limit: std::time::Duration,
) -> Result<(), BackendError> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut download = docker.download_from_container(from, Some(options));
    let copy = async {
        // The first answer tells whether the directory exists.
        let first = match download.next().await {
            None => return Ok(()),
            Some(Err(err)) if is_not_found(&err) => return Ok(()),
            Some(Err(err)) => {
                return Err(BackendError::Docker(format!(
                    "read {path} from container {from}: {}",
                    describe(&err)
                )));
            }
            Some(Ok(bytes)) => bytes,
        };
        let rest = download.map(|chunk| chunk.map_err(|err| std::io::Error::other(describe(&err))));
        let archive = futures_util::stream::once(async move { Ok(first) }).chain(rest);
        let parent = match path.rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((parent, _)) => parent,
        };
        let options = UploadToContainerOptionsBuilder::default()
            .path(parent)
            .build();
        docker
            .upload_to_container(to, Some(options), bollard::body_try_stream(archive))
            .await
            .map_err(|err| {
                BackendError::Docker(format!(
                    "copy {path} from container {from} into {to}: {}",
                    describe(&err)
                ))
            })
    };
    match tokio::time::timeout(limit, copy).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::Docker(format!(
            "copy {path} from container {from} into {to}: not done within {} s",
            limit.as_secs()
        ))),
    }
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

fn files_tar(files: &[NewFile]) -> Result<Vec<u8>, BackendError> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let mut builder = tar::Builder::new(Vec::new());
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.contents.len() as u64);
        header.set_mode(file.mode);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mtime(mtime);
        builder
            .append_data(
                &mut header,
                file.path.trim_start_matches('/'),
                file.contents.as_slice(),
            )
            .map_err(|source| BackendError::Io {
                context: format!("cannot build a tar of {}", file.path),
                source,
            })?;
    }
    builder.into_inner().map_err(|source| BackendError::Io {
        context: String::from("cannot finish a tar archive"),
        source,
    })
}

/// The regular files directly inside the directory `dir`, by name; empty when it does not exist.
pub async fn read_dir_files(
    docker: &Docker,
    container: &str,
    dir: &str,
) -> Result<BTreeMap<String, Vec<u8>>, BackendError> {
    let dir = dir.trim_end_matches('/');
    let Some(archive) = download(docker, container, dir).await? else {
        return Ok(BTreeMap::new());
    };
    dir_entries(&archive, dir)
}

/// The regular files one level below the archive's top directory (Docker names entries from the
/// directory's last component: `dir/`, `dir/name`).
fn dir_entries(archive: &[u8], dir: &str) -> Result<BTreeMap<String, Vec<u8>>, BackendError> {
    let io_error = |source| BackendError::Io {
        context: format!("cannot unpack {dir} from the job container"),
        source,
    };
    let mut files = BTreeMap::new();
    let mut entries = tar::Archive::new(archive);
    for entry in entries.entries().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().map_err(io_error)?.into_owned();
        let mut components = path.components().skip(1);
        let (Some(name), None) = (components.next(), components.next()) else {
            continue;
        };
        let name = name.as_os_str().to_string_lossy().into_owned();
        if entry.header().size().map_err(io_error)? > MAX_COMMAND_FILE_BYTES {
            return Err(command_file_too_large(&format!("{dir}/{name}")));
        }
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).map_err(io_error)?;
        files.insert(name, contents);
    }
    Ok(files)
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
        let file = NewFile {
            path: String::from("/a/b/c.txt"),
            contents: b"hello\n".to_vec(),
            mode: 0o750,
        };
        let archive = files_tar(&[file]).unwrap();
        let mut entries = tar::Archive::new(archive.as_slice());
        let entry = entries.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("a/b/c.txt"));
        assert_eq!(entry.header().mode().unwrap(), 0o750);
        assert_eq!(first_file(&archive, "/a/b/c.txt").unwrap(), b"hello\n");
    }

    #[test]
    fn a_directory_archive_gives_its_regular_files_by_name() {
        let files =
            ["/t/cmd/set_env", "/t/cmd/set_output", "/t/cmd/deeper/x"].map(|path| NewFile {
                path: path.to_string(),
                contents: path.as_bytes().to_vec(),
                mode: 0o644,
            });
        // Docker names the entries of `/t/cmd` from its last component.
        let mut builder = tar::Builder::new(Vec::new());
        for file in &files {
            let mut header = tar::Header::new_gnu();
            header.set_size(file.contents.len() as u64);
            header.set_mode(file.mode);
            header.set_entry_type(tar::EntryType::Regular);
            let name = file.path.trim_start_matches("/t/");
            builder
                .append_data(&mut header, name, file.contents.as_slice())
                .unwrap();
        }
        let archive = builder.into_inner().unwrap();
        let found = dir_entries(&archive, "/t/cmd").unwrap();
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            ["set_env", "set_output"],
            "nested files are not the directory's own"
        );
        assert_eq!(found["set_env"], b"/t/cmd/set_env");
    }
}
