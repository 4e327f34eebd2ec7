//! The local working tree `act_runner exec` runs a workflow on. As upstream's `exec` does, it is
//! copied into the job's workspace before the first step, and an `actions/checkout` of the
//! repository itself copies it again (into the step's `path`) instead of fetching anything, so
//! such a workflow and its `uses: ./local-action` steps need no network. What git ignores stays
//! out (`--use-gitignore`, default on); `--no-skip-checkout` runs `actions/checkout` as any
//! other action. The daemon never sets a tree: a Gitea task checks out what Gitea says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use super::backend::Backend;
use super::job::JobState;

/// More entries than this and the copy is refused (a tree of that size wants `.gitignore`).
const MAX_ENTRIES: usize = 500_000;
/// More bytes than this and the copy is refused; docker holds the archive in memory.
const MAX_BYTES: u64 = 1 << 30;
/// `git ls-files` gets this long.
const GIT_LIMIT: Duration = Duration::from_secs(60);

/// How `exec` hands its working tree to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTree {
    /// The working tree (`exec -C`).
    pub root: PathBuf,
    /// Leave out what git ignores (`.gitignore` files, `.git/info/exclude`, the user's
    /// excludes). Outside a git work tree nothing is left out.
    pub use_gitignore: bool,
    /// Copy the tree for an `actions/checkout` of this repository instead of running the action.
    pub skip_checkout: bool,
}

/// Copies the job's tree, if it has one, into the workspace (before the first step).
pub async fn copy_to_workspace<B: Backend>(state: &JobState, backend: &B) -> Result<(), String> {
    match &state.local_tree {
        Some(tree) => {
            let workspace = backend.paths().workspace.to_string_lossy().into_owned();
            copy_into(tree, backend, &workspace).await
        }
        None => Ok(()),
    }
}

/// Copies the tree under `dest`, a directory of the job environment (the workspace, or a
/// checkout's `path` inside it).
pub async fn copy_into<B: Backend>(
    tree: &LocalTree,
    backend: &B,
    dest: &str,
) -> Result<(), String> {
    let listed = match tree.use_gitignore {
        true => git_listed(&tree.root).await,
        false => None,
    };
    let root = tree.root.clone();
    let entries = tokio::task::spawn_blocking(move || collect_entries(&root, listed))
        .await
        .map_err(|error| format!("listing {}: {error}", tree.root.display()))??;
    backend
        .import_files(&tree.root, entries, dest)
        .await
        .map_err(|error| format!("cannot copy {} into {dest}: {error}", tree.root.display()))
}

/// Whether `uses` (already interpolated) with these `with:` values checks out the repository being
/// run (`repository` at `git_ref`), which the copied tree already is: `actions/checkout` without a
/// `repository` or `ref` other than the run's own (upstream's rule).
pub fn is_own_checkout(
    uses: &str,
    with: &IndexMap<String, String>,
    repository: &str,
    git_ref: &str,
) -> bool {
    let Some((action, version)) = uses.split_once('@') else {
        return false;
    };
    let matches_own = |key: &str, own: &str| with.get(key).is_none_or(|value| value == own);
    action == "actions/checkout"
        && !version.is_empty()
        && matches_own("repository", repository)
        && matches_own("ref", git_ref)
}

/// The paths git lists under `root` (tracked and untracked, without the ignored), or `None` when
/// `root` is not in a git work tree or git cannot tell.
async fn git_listed(root: &Path) -> Option<Vec<PathBuf>> {
    let mut command = tokio::process::Command::new("git");
    command
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(GIT_LIMIT, command.output())
        .await
        .ok()?
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let mut listed: Vec<PathBuf> = output
        .stdout
        .split(|byte| *byte == 0)
        .filter(|path| !path.is_empty())
        .map(|path| PathBuf::from(String::from_utf8_lossy(path).trim_end_matches('/')))
        .collect();
    // `.git` itself: later steps run git in the workspace as they would after a checkout.
    listed.push(PathBuf::from(".git"));
    Some(listed)
}

/// Files and symlinks to copy, relative to `root`: the `listed` paths (a directory among them, a
/// submodule, whole; a path gone from the disk skipped) or, without a list, everything.
fn collect_entries(root: &Path, listed: Option<Vec<PathBuf>>) -> Result<Vec<PathBuf>, String> {
    let mut entries = Entries::default();
    match listed {
        Some(listed) => {
            for relative in listed {
                entries.add_walked(root, &relative)?;
            }
        }
        None => entries.add_walked(root, Path::new(""))?,
    }
    Ok(entries.paths)
}

#[derive(Default)]
struct Entries {
    paths: Vec<PathBuf>,
    n_bytes: u64,
}

impl Entries {
    /// Adds `relative` (a file, a symlink, or a directory and everything under it).
    fn add_walked(&mut self, root: &Path, relative: &Path) -> Result<(), String> {
        let start = root.join(relative);
        if start.symlink_metadata().is_err() {
            return Ok(());
        }
        for entry in walkdir::WalkDir::new(&start).follow_links(false) {
            let entry =
                entry.map_err(|error| format!("cannot list {}: {error}", start.display()))?;
            if entry.file_type().is_dir() {
                continue;
            }
            let Ok(path) = entry.path().strip_prefix(root) else {
                continue;
            };
            if entry.file_type().is_file() {
                self.n_bytes += entry.metadata().map(|meta| meta.len()).unwrap_or(0);
            }
            self.paths.push(path.to_path_buf());
            if self.paths.len() > MAX_ENTRIES || self.n_bytes > MAX_BYTES {
                return Err(format!(
                    "{} holds more than {MAX_ENTRIES} files or {} MiB to copy into the workspace; \
                     leave the rest out with .gitignore",
                    root.display(),
                    MAX_BYTES >> 20
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn only_a_checkout_of_the_own_repository_and_ref_is_skipped() {
        let own = |uses, pairs: &[(&str, &str)]| {
            is_own_checkout(uses, &with(pairs), "o/r", "refs/heads/main")
        };
        assert!(own("actions/checkout@v4", &[]));
        assert!(own(
            "actions/checkout@v4",
            &[("repository", "o/r"), ("path", "x")]
        ));
        assert!(own("actions/checkout@v4", &[("ref", "refs/heads/main")]));
        assert!(!own("actions/checkout@v4", &[("repository", "o/other")]));
        assert!(!own("actions/checkout@v4", &[("ref", "v1")]));
        assert!(!own("actions/setup-node@v4", &[]));
        assert!(!own("actions/checkout", &[]));
    }

    #[test]
    fn without_a_list_everything_is_taken_and_links_stay_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/file"), "x").unwrap();
        std::fs::write(dir.path().join("top"), "y").unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("link")).unwrap();
        let mut entries = collect_entries(dir.path(), None).unwrap();
        entries.sort();
        assert_eq!(
            entries,
            [
                PathBuf::from("a/b/file"),
                PathBuf::from("link"),
                PathBuf::from("top")
            ]
        );
    }

    #[tokio::test]
    async fn git_leaves_out_what_it_ignores_and_keeps_dot_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let git = |args: &[&str]| {
            let status = std::process::Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .unwrap()
                .status;
            assert!(status.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(root.join(".gitignore"), "target/\n*.log\n").unwrap();
        std::fs::create_dir_all(root.join("target")).unwrap();
        std::fs::write(root.join("target/big"), "ignored").unwrap();
        std::fs::write(root.join("run.log"), "ignored").unwrap();
        std::fs::write(root.join("tracked"), "t").unwrap();
        git(&["add", "tracked"]);
        std::fs::write(root.join("untracked"), "u").unwrap();
        std::fs::remove_file(root.join("tracked")).unwrap();
        std::fs::write(root.join("tracked-too"), "t").unwrap();
        let listed = git_listed(root).await.expect("a git work tree");
        let entries = collect_entries(root, Some(listed)).unwrap();
        assert!(entries.contains(&PathBuf::from(".gitignore")));
        assert!(entries.contains(&PathBuf::from("untracked")));
        assert!(entries.contains(&PathBuf::from("tracked-too")));
        assert!(entries.iter().any(|path| path.starts_with(".git/")));
        assert!(!entries.contains(&PathBuf::from("tracked")), "deleted");
        assert!(!entries.iter().any(|path| path.starts_with("target")));
        assert!(!entries.contains(&PathBuf::from("run.log")));
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(git_listed(outside.path()).await, None);
    }
}
