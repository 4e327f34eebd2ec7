//! Reading the small files the runner trusts at start and on reload (`config.yaml`, `.runner`,
//! `runner.env_file`, secret files, systemd credentials): bounded in size, and refused unless they
//! are regular files, so a path pointing at `/dev/zero` cannot grow the daemon without end and
//! one pointing at a FIFO cannot hang it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The most such a file may hold: each is text of a few kilobytes.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// The file's bytes. Opened without blocking (a FIFO with no writer would block the open), then
/// refused unless it is a regular file; refused past [`MAX_BYTES`]. Errors keep the `NotFound`
/// kind of a missing file.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device, socket or directory)",
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len().min(MAX_BYTES) as usize);
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {MAX_BYTES} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "runner:\n  capacity: 2\n").unwrap();
        assert_eq!(read_to_string(&path).unwrap(), "runner:\n  capacity: 2\n");
        let missing = read(&dir.path().join("absent")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_file_past_the_bound_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'a'; MAX_BYTES as usize + 1]).unwrap();
        let error = read(&path).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
        std::fs::write(&path, vec![b'a'; MAX_BYTES as usize]).unwrap();
        assert_eq!(read(&path).unwrap().len() as u64, MAX_BYTES);
    }

    #[test]
    fn a_device_a_fifo_and_a_directory_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for path in [Path::new("/dev/zero"), &fifo, dir.path()] {
            let error = read(path).unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidInput,
                "{}",
                path.display()
            );
        }
    }
}
