//! `hashFiles(patterns)`: the pattern matching and combining every backend shares, and the walk of a
//! host directory (the docker backend reads an archive of the workspace instead). The files under
//! the workspace matching the patterns (`!` negates; later patterns win), in path order, each hashed
//! with SHA-256, and the SHA-256 of those hashes in hex; `''` when nothing matches (as actions/runner).

use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use sha2::{Digest, Sha256};

/// Upper bound on files visited, so a huge workspace cannot stall an expression forever.
const MAX_FILES_VISITED: usize = 200_000;

/// `hashFiles` patterns, compiled: `!` negates, later patterns win, paths are relative to the
/// workspace (a pattern may also name the workspace's absolute path or start with `./`).
pub struct HashPatterns {
    matchers: Vec<(bool, GlobMatcher)>,
}

impl HashPatterns {
    pub fn new(workspace: &str, patterns: &[String]) -> Result<HashPatterns, String> {
        let mut matchers = Vec::new();
        for pattern in patterns {
            let (negated, pattern) = match pattern.trim().strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, pattern.trim()),
            };
            let relative = pattern
                .strip_prefix(workspace)
                .map(|rest| rest.trim_start_matches('/'))
                .unwrap_or(pattern);
            let relative = relative.strip_prefix("./").unwrap_or(relative);
            let glob = Glob::new(relative)
                .map_err(|error| format!("hashFiles: pattern `{pattern}`: {error}"))?;
            matchers.push((negated, glob.compile_matcher()));
        }
        Ok(HashPatterns { matchers })
    }

    /// Whether the file at `relative` (to the workspace) is selected.
    pub fn matches(&self, relative: &Path) -> bool {
        let mut selected = false;
        for (negated, matcher) in &self.matchers {
            if matcher.is_match(relative) {
                selected = !negated;
            }
        }
        selected
    }
}

/// The result from the SHA-256 of each selected file: `files` sorted by path (component by
/// component, as a sorted directory walk visits them); `''` when there are none.
pub fn combine(mut files: Vec<(PathBuf, [u8; 32])>) -> String {
    if files.is_empty() {
        return String::new();
    }
    files.sort();
    let mut combined = Sha256::new();
    for (_, digest) in files {
        combined.update(digest);
    }
    hex::encode(combined.finalize())
}

/// `hashFiles` over a workspace that is a host directory.
pub fn hash_files(workspace: &Path, patterns: &[String]) -> Result<String, String> {
    let patterns = HashPatterns::new(&workspace.to_string_lossy(), patterns)?;
    let mut files = Vec::new();
    for (n_visited, entry) in walkdir::WalkDir::new(workspace)
        .sort_by_file_name()
        .into_iter()
        .enumerate()
    {
        if n_visited > MAX_FILES_VISITED {
            return Err(format!(
                "hashFiles: more than {MAX_FILES_VISITED} files in the workspace"
            ));
        }
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(workspace) else {
            continue;
        };
        if patterns.matches(relative) {
            let contents = std::fs::read(entry.path())
                .map_err(|error| format!("hashFiles: {}: {error}", entry.path().display()))?;
            files.push((relative.to_path_buf(), Sha256::digest(&contents).into()));
        }
    }
    Ok(combine(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_files_are_hashed_and_negation_excludes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/x.lock"), "one").unwrap();
        std::fs::write(dir.path().join("y.lock"), "two").unwrap();
        let all = hash_files(dir.path(), &["**/*.lock".into()]).unwrap();
        assert_eq!(all.len(), 64);
        let only_x = hash_files(dir.path(), &["**/*.lock".into(), "!y.lock".into()]).unwrap();
        assert_ne!(all, only_x);
        let mut expected = Sha256::new();
        expected.update(Sha256::digest(b"one"));
        assert_eq!(only_x, hex::encode(expected.finalize()));
        assert_eq!(hash_files(dir.path(), &["*.none".into()]).unwrap(), "");
    }
}
