//! Tidiness as a test: module docs, room boundaries, and file length.
//!
//! Fails when a `.rs` file under `src/` does not open with a `//!` doc comment, when a room
//! imports what ARCHITECTURE.md says it must not, or when a file under `src/` or `tests/` passes
//! 600 lines without being listed below with a reason.

use std::path::{Path, PathBuf};

/// Rooms and what they must never mention.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "src/executor/",
        &[
            "crate::client",
            "crate::daemon",
            "crate::systemd",
            "crate::metrics",
        ],
    ),
    ("src/client/", &["crate::daemon", "crate::executor"]),
    ("src/daemon/", &["crate::metrics", "crate::systemd"]),
    (
        "src/systemd/",
        &["crate::client", "crate::executor", "crate::metrics"],
    ),
    ("src/metrics/", &["crate::systemd", "crate::config"]),
    (
        "src/cache/",
        &[
            "crate::daemon",
            "crate::executor",
            "crate::client",
            "crate::metrics",
            "crate::systemd",
        ],
    ),
    (
        "src/config/",
        &[
            "crate::client",
            "crate::daemon",
            "crate::executor",
            "crate::systemd",
            "crate::metrics",
            "crate::cli",
        ],
    ),
];

const MAX_LINES: usize = 600;

/// Files allowed past `MAX_LINES`, each with the reason.
const LONG_FILES: &[(&str, &str)] = &[
    (
        "src/daemon/reporter/tests.rs",
        "one reporter delivery scenario per test over a shared harness; to split by concern (daemon room)",
    ),
    (
        "src/executor/backend/docker/options.rs",
        "the `container.options` flag table with one test per flag beside it; to split (docker room)",
    ),
];

/// False for a `target/` directory: tests/fuzz builds there, and the crate's build script writes
/// generated sources into it.
fn not_build_output(entry: &walkdir::DirEntry) -> bool {
    !(entry.file_type().is_dir() && entry.file_name() == "target")
}

/// The `.rs` files under `dir` (`src` or `tests`), relative to the crate root.
fn rust_files_in(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(root.join(dir))
        .into_iter()
        .filter_entry(not_build_output)
        .map(|entry| entry.unwrap())
        .filter(|entry| {
            entry.file_type().is_file() && entry.path().extension().is_some_and(|ext| ext == "rs")
        })
        .map(|entry| entry.path().strip_prefix(root).unwrap().to_owned())
        .collect();
    files.sort();
    files
}

fn rust_files() -> Vec<PathBuf> {
    rust_files_in("src")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn every_source_file_opens_with_a_module_doc_comment() {
    let files = rust_files();
    assert!(files.len() > 10, "checked only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|path| !read(path).starts_with("//!"))
        .map(|path| path.display().to_string())
        .collect();
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "these files do not start with a `//!` doc comment"
    );
}

#[test]
fn rooms_do_not_import_what_they_must_not() {
    let files = rust_files();
    let mut n_checked = 0;
    let mut violations = Vec::new();
    for path in &files {
        let shown = path.display().to_string();
        for (room, forbidden) in FORBIDDEN {
            if !shown.starts_with(room) {
                continue;
            }
            n_checked += 1;
            for (line_idx, line) in read(path).lines().enumerate() {
                for needle in *forbidden {
                    if line.contains(needle) {
                        violations.push(format!("{shown}:{}: mentions `{needle}`", line_idx + 1));
                    }
                }
            }
        }
    }
    assert!(n_checked > 0, "no file of a checked room was found");
    assert_eq!(violations, Vec::<String>::new());
}

#[test]
fn files_stay_under_the_length_limit_unless_listed() {
    let mut files = rust_files();
    let n_source_files = files.len();
    files.extend(rust_files_in("tests"));
    assert!(n_source_files > 10 && files.len() > n_source_files + 10);
    let mut too_long = Vec::new();
    for path in &files {
        let shown = path.display().to_string();
        let n_lines = read(path).lines().count();
        let listed = LONG_FILES.iter().any(|(name, _)| *name == shown);
        if n_lines > MAX_LINES && !listed {
            too_long.push(format!("{shown}: {n_lines} lines"));
        }
        // A listed file that shrank must leave the list, or the list stops meaning anything.
        if n_lines <= MAX_LINES && listed {
            too_long.push(format!(
                "{shown}: {n_lines} lines, listed in LONG_FILES but no longer long"
            ));
        }
    }
    assert_eq!(
        too_long,
        Vec::<String>::new(),
        "split these files, or list them in LONG_FILES with a reason"
    );
}

#[test]
fn no_ignored_or_should_panic_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n_checked = 0;
    let mut offenders = Vec::new();
    for dir in ["src", "tests"] {
        for entry in walkdir::WalkDir::new(root.join(dir))
            .into_iter()
            .filter_entry(not_build_output)
            .map(|entry| entry.unwrap())
        {
            let path = entry.path();
            if !entry.file_type().is_file()
                || path.extension().is_none_or(|ext| ext != "rs")
                || path.ends_with("tidy.rs")
            {
                continue;
            }
            n_checked += 1;
            let text = std::fs::read_to_string(path).unwrap();
            for attribute in ["#[ignore", "#[should_panic"] {
                if text.contains(attribute) {
                    offenders.push(format!("{}: {attribute}]", path.display()));
                }
            }
        }
    }
    assert!(n_checked > 0);
    assert_eq!(offenders, Vec::<String>::new());
}
