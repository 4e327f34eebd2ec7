//! Copying a list of entries of one host directory into another, as the host backend imports
//! `exec`'s working tree into its workspace: files with their mode, symlinks as links.

use std::path::{Path, PathBuf};

use super::BackendError;

/// Copies the entries `relative` of `source` under `dest`, creating directories on the way. An
/// entry already there is replaced.
pub fn copy_entries(source: &Path, relative: &[PathBuf], dest: &Path) -> Result<(), BackendError> {
    let failed = |context: String| move |source| BackendError::Io { context, source };
    for entry in relative {
        let (from, to) = (source.join(entry), dest.join(entry));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(failed(format!("cannot create {}", parent.display())))?;
        }
        let metadata = from
            .symlink_metadata()
            .map_err(failed(format!("cannot read {}", from.display())))?;
        let copied = if metadata.file_type().is_symlink() {
            let _ = std::fs::remove_file(&to);
            std::fs::read_link(&from).and_then(|target| std::os::unix::fs::symlink(target, &to))
        } else {
            std::fs::copy(&from, &to).map(drop)
        };
        copied.map_err(failed(format!(
            "cannot copy {} to {}",
            from.display(),
            to.display()
        )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_keep_their_mode_and_links_stay_links() {
        use std::os::unix::fs::PermissionsExt;
        let source = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(source.path().join("a/b")).unwrap();
        std::fs::write(source.path().join("a/b/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            source.path().join("a/b/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("b/tool", source.path().join("a/link")).unwrap();
        let entries = [PathBuf::from("a/b/tool"), PathBuf::from("a/link")];
        copy_entries(source.path(), &entries, dest.path()).unwrap();
        // A second copy over the first replaces what is there.
        copy_entries(source.path(), &entries, dest.path()).unwrap();
        let mode = std::fs::metadata(dest.path().join("a/b/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(dest.path().join("a/link")).unwrap(),
            PathBuf::from("b/tool")
        );
    }
}
