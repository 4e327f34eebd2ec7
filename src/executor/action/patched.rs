//! The patched copy of a remote node action in the action cache (`runner.patch_actions`).
//!
//! The checkout `<cache>/<sha256(uses)>` is never edited: a job with `patch_actions: false` runs
//! it as published. A job with `true` scans the JavaScript files of the action's directory in the
//! checkout once per commit ([`super::patch`]); if one holds the toolkit in a known shape, the whole tree (without
//! `.git`) is copied to `<cache>/<sha256(uses)>.patched` and only the matched files there are
//! edited. The stamp `<cache>/<sha256(uses)>.patch-stamp` (outside both trees, so nothing extra
//! ships into the job) records the commit and the outcome, so the next job decides without
//! scanning. The copy is built in a temporary directory and renamed into place.

use std::io;
use std::path::{Path, PathBuf};

use super::patch::{self, FilePatch};

/// Bumped whenever the edits change, so copies made by an older runner are rebuilt.
const PATCH_FORMAT: &str = "patch-v1";
/// Files scanned per action at most (an action shipping `node_modules` has thousands).
const MAX_FILES: usize = 50_000;
/// Files larger than this are not scanned (no bundle is near it).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Which tree a job runs, and what its log should say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub root: PathBuf,
    /// Said once in the job's log when the action holds the toolkit in no known shape.
    pub note: Option<String>,
}

/// The tree to run for the checkout at `checkout` (`<cache>/<sha256(uses)>`) whose action lives
/// in `action_dir` (relative, empty for the root): only that directory is scanned.
pub async fn choose(uses: &str, checkout: &Path, action_dir: &str) -> Result<Chosen, String> {
    // Two jobs of this runner starting the same action build one copy.
    let lock = super::fetch::dir_lock(&sibling(checkout, "patched"));
    let _held = lock.lock().await;
    let uses = uses.to_string();
    let owned = checkout.to_path_buf();
    let action_dir = action_dir.to_string();
    tokio::task::spawn_blocking(move || choose_blocking(&uses, &owned, &action_dir))
        .await
        .map_err(|error| format!("patching {} stopped: {error}", checkout.display()))?
}

fn choose_blocking(uses: &str, checkout: &Path, action_dir: &str) -> Result<Chosen, String> {
    let patched_dir = sibling(checkout, "patched");
    let stamp_path = sibling(checkout, "patch-stamp");
    let head = head_commit(checkout);
    let untouched_note = format!(
        "runner.patch_actions: {uses} holds the actions toolkit in no shape this runner knows; it runs as published"
    );
    if let Some(head) = &head
        && let Ok(stamp) = std::fs::read_to_string(&stamp_path)
    {
        let mut fields = stamp.split_whitespace();
        if fields.next() == Some(PATCH_FORMAT) && fields.next() == Some(head.as_str()) {
            match fields.next() {
                Some("patched") if patched_dir.is_dir() => {
                    return Ok(Chosen {
                        root: patched_dir,
                        note: None,
                    });
                }
                Some("unrelated") => return Ok(unpatched(checkout, None)),
                Some("unrecognized") => return Ok(unpatched(checkout, Some(untouched_note))),
                _ => {}
            }
        }
    }
    let scan = scan(checkout, action_dir).map_err(|error| {
        format!(
            "cannot scan {} for runner.patch_actions: {error}",
            checkout.display()
        )
    })?;
    let outcome = if !scan.edits.is_empty() {
        build_copy(checkout, &patched_dir, &scan.edits).map_err(|error| {
            format!(
                "cannot build the patched copy {}: {error}",
                patched_dir.display()
            )
        })?;
        "patched"
    } else if scan.unrecognized {
        "unrecognized"
    } else {
        "unrelated"
    };
    if let Some(head) = &head {
        // Without a stamp the next job scans again: slower, never wrong.
        let _ = write_stamp(&stamp_path, &format!("{PATCH_FORMAT} {head} {outcome}\n"));
    }
    Ok(match outcome {
        "patched" => Chosen {
            root: patched_dir,
            note: None,
        },
        "unrecognized" => unpatched(checkout, Some(untouched_note)),
        _ => unpatched(checkout, None),
    })
}

fn unpatched(checkout: &Path, note: Option<String>) -> Chosen {
    Chosen {
        root: checkout.to_path_buf(),
        note,
    }
}

/// `<cache>/<name>.<suffix>` next to the checkout `<cache>/<name>`.
fn sibling(checkout: &Path, suffix: &str) -> PathBuf {
    let mut name = checkout.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    checkout.with_file_name(name)
}

/// The checked-out commit: a detached `.git/HEAD` holds it.
fn head_commit(checkout: &Path) -> Option<String> {
    let head = std::fs::read_to_string(checkout.join(".git/HEAD")).ok()?;
    let head = head.trim();
    let is_sha =
        (head.len() == 40 || head.len() == 64) && head.bytes().all(|b| b.is_ascii_hexdigit());
    is_sha.then(|| head.to_string())
}

/// What a scan of a checkout found.
struct Scan {
    /// Relative path → patched text.
    edits: Vec<(PathBuf, Vec<u8>)>,
    /// Some file holds the toolkit in no known shape.
    unrecognized: bool,
}

fn is_script(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|extension| extension.to_str()),
        Some("js" | "cjs" | "mjs")
    )
}

fn scan(checkout: &Path, action_dir: &str) -> io::Result<Scan> {
    let mut scan = Scan {
        edits: Vec::new(),
        unrecognized: false,
    };
    let root = if action_dir.is_empty() {
        checkout.to_path_buf()
    } else {
        checkout.join(action_dir)
    };
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| entry.file_name() != ".git");
    for (n_files, entry) in walk.enumerate() {
        if n_files >= MAX_FILES {
            break;
        }
        let entry = entry.map_err(io::Error::other)?;
        if !entry.file_type().is_file() || !is_script(entry.path()) {
            continue;
        }
        if entry.metadata().map_err(io::Error::other)?.len() > MAX_FILE_BYTES {
            continue;
        }
        let text = std::fs::read(entry.path())?;
        match patch::patch_file(&text) {
            FilePatch::Unrelated => {}
            FilePatch::Unrecognized => scan.unrecognized = true,
            FilePatch::Patched { text, .. } => {
                let relative = entry
                    .path()
                    .strip_prefix(checkout)
                    .map_err(io::Error::other)?;
                scan.edits.push((relative.to_path_buf(), text));
            }
        }
    }
    Ok(scan)
}

/// Copies `checkout` (without `.git`) to a temporary sibling, writes the edits there, and
/// renames it over `target`.
fn build_copy(checkout: &Path, target: &Path, edits: &[(PathBuf, Vec<u8>)]) -> io::Result<()> {
    let temp = sibling(target, &format!("tmp-{:08x}", rand::random::<u32>()));
    let built = copy_tree(checkout, &temp).and_then(|()| {
        for (relative, text) in edits {
            std::fs::write(temp.join(relative), text)?;
        }
        Ok(())
    });
    if let Err(error) = built {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(error);
    }
    if target.exists() {
        let old = sibling(target, &format!("old-{:08x}", rand::random::<u32>()));
        std::fs::rename(target, &old)?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&temp, target)
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let walk = walkdir::WalkDir::new(from)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| entry.file_name() != ".git");
    for entry in walk {
        let entry = entry.map_err(io::Error::other)?;
        let relative = entry.path().strip_prefix(from).map_err(io::Error::other)?;
        let destination = to.join(relative);
        let file_type = entry.file_type();
        if file_type.is_dir() {
            std::fs::create_dir_all(&destination)?;
        } else if file_type.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &destination)?;
        } else {
            std::fs::copy(entry.path(), &destination)?;
        }
    }
    Ok(())
}

fn write_stamp(path: &Path, text: &str) -> io::Result<()> {
    let temp = sibling(path, &format!("tmp-{:08x}", rand::random::<u32>()));
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATE: &str = "const ghUrl = new URL(process.env['GITHUB_SERVER_URL'] || 'https://github.com');\nconst hostname = ghUrl.hostname.toUpperCase();\nconst isGitHubHost = hostname === 'GITHUB.COM';\nconst isGheHost = hostname.endsWith('.GHE.COM');\nconst isLocalHost = hostname.endsWith('.LOCALHOST');\nreturn !isGitHubHost && !isGheHost && !isLocalHost;\n";

    fn checkout_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let cache = tempfile::tempdir().unwrap();
        let checkout = cache.path().join("abc");
        std::fs::create_dir_all(checkout.join(".git")).unwrap();
        std::fs::write(checkout.join(".git/HEAD"), format!("{}\n", "a".repeat(40))).unwrap();
        for (path, text) in files {
            let path = checkout.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        cache
    }

    #[test]
    fn a_toolkit_bundle_runs_from_a_patched_copy_and_the_checkout_stays_as_published() {
        let cache = checkout_with(&[("dist/index.js", GATE), ("action.yml", "runs: {}")]);
        let checkout = cache.path().join("abc");
        let chosen = choose_blocking("acme/upload@v4", &checkout, "").unwrap();
        assert_eq!(chosen.root, cache.path().join("abc.patched"));
        assert_eq!(chosen.note, None);
        let copied = std::fs::read_to_string(chosen.root.join("dist/index.js")).unwrap();
        assert!(copied.contains("endsWith('')"), "{copied}");
        assert_eq!(
            std::fs::read_to_string(checkout.join("dist/index.js")).unwrap(),
            GATE
        );
        assert!(chosen.root.join("action.yml").is_file());
        assert!(!chosen.root.join(".git").exists());
        // The stamp decides the next time, without a scan.
        std::fs::write(checkout.join("dist/index.js"), "changed").unwrap();
        let again = choose_blocking("acme/upload@v4", &checkout, "").unwrap();
        assert_eq!(again.root, chosen.root);
    }

    #[test]
    fn an_unknown_shape_runs_the_checkout_and_says_so() {
        let unknown = GATE.replace("new URL(process", "new URL(url || process")
            + "process.env['ACTIONS_RESULTS_URL']";
        let cache = checkout_with(&[("dist/index.js", &unknown)]);
        let checkout = cache.path().join("abc");
        let chosen = choose_blocking("acme/odd@v1", &checkout, "").unwrap();
        assert_eq!(chosen.root, checkout);
        assert!(chosen.note.unwrap().contains("acme/odd@v1"));
        assert!(!cache.path().join("abc.patched").exists());
    }

    /// The fixtures of `tests/data/toolkit` as a checkout in a scratch action cache.
    fn toolkit_checkout() -> (tempfile::TempDir, PathBuf) {
        let cache = tempfile::tempdir().unwrap();
        let checkout = cache.path().join("toolkit");
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/toolkit");
        copy_tree(&fixtures, &checkout).unwrap();
        std::fs::create_dir_all(checkout.join(".git")).unwrap();
        std::fs::write(checkout.join(".git/HEAD"), "b".repeat(40)).unwrap();
        (cache, checkout)
    }

    /// What `node` prints running `script` against a Gitea host with a cache server and the v2
    /// cache flag; `None` (or a failure under `CI`) without node.
    fn run_node(script: &Path) -> Option<String> {
        let output = std::process::Command::new("node")
            .arg(script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GITHUB_SERVER_URL", "http://gitea.test:3000/")
            .env("ACTIONS_RESULTS_URL", "http://gitea.test:3000")
            .env("ACTIONS_CACHE_URL", "http://cache.test:8088/")
            .env("ACTIONS_CACHE_SERVICE_V2", "true")
            .env("INPUT_MODE", "list")
            .output();
        match output {
            Ok(output) => Some(String::from_utf8_lossy(&output.stdout).into_owned()),
            Err(error) => {
                assert!(std::env::var_os("CI").is_none(), "node is needed: {error}");
                eprintln!("skipping: no node ({error})");
                None
            }
        }
    }

    #[test]
    fn each_shape_runs_as_github_com_patched_and_as_ghes_published() {
        let (_cache, checkout) = toolkit_checkout();
        for (action_dir, script) in [
            ("tsc", "tsc/index.js"),
            ("webpack", "webpack/dist/index.js"),
            ("esbuild", "esbuild/dist/index.js"),
        ] {
            let Some(published) = run_node(&checkout.join(script)) else {
                return;
            };
            assert!(
                published.contains("cache service: v1 http://cache.test:8088/"),
                "{published}"
            );
            assert!(
                published.contains("not currently supported on GHES"),
                "{published}"
            );

            let chosen = choose_blocking(action_dir, &checkout, action_dir).unwrap();
            assert_ne!(chosen.root, checkout);
            let patched = run_node(&chosen.root.join(script)).unwrap();
            assert!(
                patched.contains("cache service: v2 http://cache.test:8088/"),
                "{patched}"
            );
            assert!(!patched.contains("GHES"), "{patched}");
            // Past the gate, the v4 client asks for its token.
            assert!(patched.contains("ACTIONS_RUNTIME_TOKEN"), "{patched}");
            if script.starts_with("webpack") {
                assert!(
                    patched.contains("localhost trusted: true, 127.0.0.1 trusted: false"),
                    "{patched}"
                );
            }
            std::fs::remove_dir_all(&chosen.root).unwrap();
            std::fs::remove_file(sibling(&checkout, "patch-stamp")).unwrap();
        }
    }

    #[test]
    fn the_untouched_fixture_runs_as_published_and_the_log_says_so() {
        let (_cache, checkout) = toolkit_checkout();
        let chosen = choose_blocking("acme/toolkit/untouched@v1", &checkout, "untouched").unwrap();
        assert_eq!(chosen.root, checkout);
        assert!(chosen.note.unwrap().contains("acme/toolkit/untouched@v1"));
    }

    #[test]
    fn an_action_without_the_toolkit_is_silent() {
        let cache = checkout_with(&[("index.js", "console.log('hi')")]);
        let checkout = cache.path().join("abc");
        let chosen = choose_blocking("acme/hello@v1", &checkout, "").unwrap();
        assert_eq!(chosen, unpatched(&checkout, None));
    }
}
