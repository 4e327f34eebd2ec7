//! `runner.patch_actions`: the two known, exact edits that let a node action's bundled toolkit
//! work against a Gitea instance, on the text of one JavaScript file.
//!
//! - The GHES gate. The toolkit's `isGhes()` takes every host other than github.com, `*.ghe.com`
//!   and `*.localhost` for GitHub Enterprise Server, where `@actions/artifact` v2 refuses to run
//!   (`GHESNotSupportedError`) and `@actions/cache` stays on its v1 API. The edit empties the
//!   `'.LOCALHOST'` suffix of its last hostname test: `endsWith('')` holds for every host, so the
//!   job's server (this instance: the runner sets `GITHUB_SERVER_URL`) is not taken for GHES.
//! - The cache client's service URL. Its v2 branch reads `ACTIONS_RESULTS_URL`, which stays on
//!   the Gitea instance (artifacts go there); the edit makes it read `ACTIONS_CACHE_URL` first, as
//!   its v1 branch already does, so the v2 cache client talks to the runner's cache server.
//!
//! Each is matched in the shapes bundlers emit: tsc's output (also what ncc/webpack concatenate,
//! names kept or prefixed) and esbuild's minified one (names mangled, `let a=...,b=...`,
//! ternaries for the `switch`), in any quoting. Identifiers are checked to be the same ones where
//! the code reuses them. Anything else is left byte for byte, and so is a file whose cache client
//! could be switched to v2 without its URL getter also being recognised (it would then send the
//! cache to Gitea's results URL).

use std::ops::Range;
use std::sync::LazyLock;

use regex::bytes::{Captures, Regex};

/// What the edit did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilePatch {
    /// Nothing of the toolkit's GHES gate or results URL in it.
    Unrelated,
    /// It holds the toolkit, but in no shape known here: left as it is.
    Unrecognized,
    /// The edited text, with how many gates and URL getters changed.
    Patched {
        text: Vec<u8>,
        gates: usize,
        url_getters: usize,
    },
}

/// Applies both edits to `text` where their exact shapes are found.
pub fn patch_file(text: &[u8]) -> FilePatch {
    let gates = find_gates(text);
    let url_getters = find_url_getters(text);
    let contains = |needle: &[u8]| memchr::memmem::find(text, needle).is_some();
    let has_cache_v2 = contains(b"ACTIONS_CACHE_SERVICE_V2");
    // The toolkit's gate compares with this literal; its clients read these names.
    let mentions_toolkit = contains(b"GITHUB.COM")
        && (has_cache_v2 || contains(b"ACTIONS_RESULTS_URL") || contains(b"GHESNotSupportedError"));
    if gates.is_empty() || (has_cache_v2 && url_getters.is_empty()) {
        return if mentions_toolkit || !gates.is_empty() {
            FilePatch::Unrecognized
        } else {
            FilePatch::Unrelated
        };
    }
    let mut edits: Vec<(Range<usize>, &[u8])> = Vec::new();
    for (literal, quote) in &gates {
        edits.push((literal.clone(), quote));
    }
    for at in &url_getters {
        edits.push((*at..*at, CACHE_URL_FIRST));
    }
    edits.sort_by_key(|(range, _)| range.start);
    let mut patched = Vec::with_capacity(text.len() + edits.len() * CACHE_URL_FIRST.len());
    let mut copied = 0;
    for (range, replacement) in &edits {
        patched.extend_from_slice(&text[copied..range.start]);
        patched.extend_from_slice(replacement);
        copied = range.end;
    }
    patched.extend_from_slice(&text[copied..]);
    FilePatch::Patched {
        text: patched,
        gates: gates.len(),
        url_getters: url_getters.len(),
    }
}

/// Put in front of the v2 branch's read of `ACTIONS_RESULTS_URL`.
const CACHE_URL_FIRST: &[u8] = b"process.env.ACTIONS_CACHE_URL||";

const IDENT: &str = r"[A-Za-z_$][A-Za-z0-9_$]*";
/// Between two declarations: `; const|let|var` (tsc) or `,` (esbuild's one `let`).
const NEXT_DECLARATION: &str = r"\s*(?:;\s*(?:const|let|var)\s+|,\s*)";
const DECLARATION: &str = r"(?:const|let|var)\s+";

/// A string literal in any of JavaScript's three quotes.
fn literal(text: &str) -> String {
    let text = regex::escape(text);
    format!(r#"(?:'{text}'|"{text}"|`{text}`)"#)
}

/// `process.env.NAME` or `process.env['NAME']`.
fn env_read(name: &str) -> String {
    format!(
        r"process\s*\.\s*env\s*(?:\.\s*{name}|\[\s*{}\s*\])",
        literal(name)
    )
}

const EMPTY_LITERAL: &str = r#"(?:''|""|``)"#;

/// The toolkit's `isGhes()` from the server URL's host to its `return`.
static GATE: LazyLock<Regex> = LazyLock::new(|| {
    let server_url = format!(
        r"new\s+URL\s*\(\s*{}\s*\|\|\s*{}\s*\)",
        env_read("GITHUB_SERVER_URL"),
        literal("https://github.com")
    );
    let upper_host = r"\s*\.\s*hostname(?:\s*\.\s*trimEnd\s*\(\s*\))?\s*\.\s*toUpperCase\s*\(\s*\)";
    let pattern = format!(
        concat!(
            "(?-u){decl}(?:(?P<url>{id})\\s*=\\s*{server_url}\\s*;\\s*{decl}(?P<host>{id})\\s*=\\s*(?P<url_again>{id}){upper}",
            "|(?P<host_inline>{id})\\s*=\\s*{server_url}{upper})",
            "{next}(?P<a>{id})\\s*=\\s*(?P<host_a>{id})\\s*===\\s*{github}",
            "{next}(?P<b>{id})\\s*=\\s*(?P<host_b>{id})\\s*\\.\\s*endsWith\\s*\\(\\s*{ghe}\\s*\\)",
            "{next}(?P<c>{id})\\s*=\\s*(?P<host_c>{id})\\s*\\.\\s*endsWith\\s*\\(\\s*(?P<local>{local})\\s*\\)",
            "\\s*;?\\s*return\\s*!\\s*(?P<not_a>{id})\\s*&&\\s*!\\s*(?P<not_b>{id})\\s*&&\\s*!\\s*(?P<not_c>{id})",
        ),
        decl = DECLARATION,
        id = IDENT,
        server_url = server_url,
        upper = upper_host,
        next = NEXT_DECLARATION,
        github = literal("GITHUB.COM"),
        ghe = literal(".GHE.COM"),
        local = literal(".LOCALHOST"),
    );
    Regex::new(&pattern).expect("the gate pattern is valid")
});

/// The cache client's `getCacheServiceURL()` as a `switch` (tsc, webpack).
static URL_SWITCH: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        concat!(
            "(?-u)case\\s*{v1}\\s*:\\s*return\\s*\\(?\\s*{cache}\\s*\\|\\|\\s*{results}\\s*\\|\\|\\s*{empty}\\s*\\)?\\s*;?",
            "\\s*case\\s*{v2}\\s*:\\s*return\\s*(?P<v2_read>{results})\\s*\\|\\|\\s*{empty}",
        ),
        v1 = literal("v1"),
        v2 = literal("v2"),
        cache = env_read("ACTIONS_CACHE_URL"),
        results = env_read("ACTIONS_RESULTS_URL"),
        empty = EMPTY_LITERAL,
    );
    Regex::new(&pattern).expect("the URL switch pattern is valid")
});

/// The same getter as esbuild minifies it: `e==="v1"?...:e==="v2"?...`.
static URL_TERNARY: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        concat!(
            "(?-u)(?P<version>{id})\\s*===\\s*{v1}\\s*\\?\\s*{cache}\\s*\\|\\|\\s*{results}\\s*\\|\\|\\s*{empty}\\s*:",
            "\\s*(?P<version_again>{id})\\s*===\\s*{v2}\\s*\\?\\s*(?P<v2_read>{results})\\s*\\|\\|\\s*{empty}",
        ),
        id = IDENT,
        v1 = literal("v1"),
        v2 = literal("v2"),
        cache = env_read("ACTIONS_CACHE_URL"),
        results = env_read("ACTIONS_RESULTS_URL"),
        empty = EMPTY_LITERAL,
    );
    Regex::new(&pattern).expect("the URL ternary pattern is valid")
});

/// The `.LOCALHOST` literals of every exact gate, with the empty literal of the same quote.
fn find_gates(text: &[u8]) -> Vec<(Range<usize>, &'static [u8])> {
    if memchr::memmem::find(text, b".LOCALHOST").is_none() {
        return Vec::new();
    }
    GATE.captures_iter(text)
        .filter(gate_names_agree)
        .filter_map(|captures| {
            let local = captures.name("local")?;
            let quote: &'static [u8] = match local.as_bytes().first()? {
                b'\'' => b"''",
                b'"' => b"\"\"",
                _ => b"``",
            };
            Some((local.range(), quote))
        })
        .collect()
}

/// The host and the three tests are the same variables throughout, as the toolkit writes them.
fn gate_names_agree(captures: &Captures<'_>) -> bool {
    let name = |group: &str| captures.name(group).map(|found| found.as_bytes());
    let host = match (name("url"), name("url_again"), name("host")) {
        (Some(url), Some(url_again), Some(host)) if url == url_again => Some(host),
        (None, None, None) => name("host_inline"),
        _ => None,
    };
    let Some(host) = host else {
        return false;
    };
    let tests = [name("a"), name("b"), name("c")];
    [name("host_a"), name("host_b"), name("host_c")]
        .iter()
        .all(|used| *used == Some(host))
        && tests == [name("not_a"), name("not_b"), name("not_c")]
        && tests[0] != tests[1]
        && tests[1] != tests[2]
        && tests[0] != tests[2]
}

/// Where the v2 branch of each exact URL getter reads `ACTIONS_RESULTS_URL`.
fn find_url_getters(text: &[u8]) -> Vec<usize> {
    if memchr::memmem::find(text, b"ACTIONS_CACHE_URL").is_none() {
        return Vec::new();
    }
    let switches = URL_SWITCH
        .captures_iter(text)
        .filter_map(|captures| Some(captures.name("v2_read")?.start()));
    let ternaries = URL_TERNARY
        .captures_iter(text)
        .filter(|captures| {
            captures.name("version").map(|found| found.as_bytes())
                == captures.name("version_again").map(|found| found.as_bytes())
        })
        .filter_map(|captures| Some(captures.name("v2_read")?.start()));
    let mut starts: Vec<usize> = switches.chain(ternaries).collect();
    starts.sort_unstable();
    starts.dedup();
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSC_GATE: &str = "function isGhes() {\n    const ghUrl = new URL(process.env['GITHUB_SERVER_URL'] || 'https://github.com');\n    const hostname = ghUrl.hostname.trimEnd().toUpperCase();\n    const isGitHubHost = hostname === 'GITHUB.COM';\n    const isGheHost = hostname.endsWith('.GHE.COM');\n    const isLocalHost = hostname.endsWith('.LOCALHOST');\n    return !isGitHubHost && !isGheHost && !isLocalHost;\n}\nconst u = process.env['ACTIONS_RESULTS_URL'];\n";

    fn patched_text(text: &str) -> String {
        match patch_file(text.as_bytes()) {
            FilePatch::Patched { text, .. } => String::from_utf8(text).unwrap(),
            other => panic!("not patched: {other:?}"),
        }
    }

    #[test]
    fn the_gate_loses_only_its_localhost_suffix() {
        let patched = patched_text(TSC_GATE);
        assert_eq!(
            patched,
            TSC_GATE.replace("endsWith('.LOCALHOST')", "endsWith('')")
        );
    }

    #[test]
    fn a_gate_whose_names_disagree_is_not_touched() {
        let crossed = TSC_GATE.replace("!isGheHost &&", "!isGitHubHost &&");
        assert_eq!(patch_file(crossed.as_bytes()), FilePatch::Unrecognized);
        let other_host = TSC_GATE.replace(
            "isLocalHost = hostname.endsWith",
            "isLocalHost = other.endsWith",
        );
        assert_eq!(patch_file(other_host.as_bytes()), FilePatch::Unrecognized);
    }

    #[test]
    fn a_gate_fed_by_an_argument_is_not_the_toolkits() {
        // actions/checkout's own isGhes(url) picks its API URL; it must stay as it is.
        let checkout = TSC_GATE.replace("new URL(process.env", "new URL(url || process.env");
        assert_eq!(patch_file(checkout.as_bytes()), FilePatch::Unrecognized);
    }

    fn fixture(path: &str) -> Vec<u8> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/toolkit");
        std::fs::read(root.join(path)).unwrap()
    }

    /// (file, gates, URL getters) for each shape the fixtures reproduce.
    const SHAPES: [(&str, usize, usize); 4] = [
        (
            "tsc/node_modules/@actions/artifact/lib/internal/shared/config.js",
            1,
            0,
        ),
        (
            "tsc/node_modules/@actions/cache/lib/internal/config.js",
            1,
            1,
        ),
        ("webpack/dist/index.js", 2, 1),
        ("esbuild/dist/index.js", 2, 1),
    ];

    #[test]
    fn each_shape_of_the_fixtures_is_patched_and_nothing_else_changes() {
        for (path, want_gates, want_url_getters) in SHAPES {
            let original = fixture(path);
            let FilePatch::Patched {
                text,
                gates,
                url_getters,
            } = patch_file(&original)
            else {
                panic!("{path} is not patched");
            };
            assert_eq!(
                (gates, url_getters),
                (want_gates, want_url_getters),
                "{path}"
            );
            let (original, text) = (
                String::from_utf8(original).unwrap(),
                String::from_utf8(text).unwrap(),
            );
            // Only the two edits happened: without every `ACTIONS_CACHE_URL||` and with the
            // suffix back, both texts are the same, and the lengths differ by the edits alone.
            let strip = |text: &str| {
                text.replace(CACHE_URL_FIRST_TEXT, "")
                    .replace("endsWith('')", "endsWith('.LOCALHOST')")
                    .replace("endsWith(\"\")", "endsWith(\".LOCALHOST\")")
            };
            assert_eq!(strip(&text), strip(&original), "{path}");
            assert_eq!(
                text.len() + gates * ".LOCALHOST".len(),
                original.len() + url_getters * CACHE_URL_FIRST_TEXT.len(),
                "{path}"
            );
            assert!(!text.contains(".LOCALHOST"), "{path}");
            assert_eq!(
                text.matches("ACTIONS_CACHE_URL||").count()
                    - original.matches("ACTIONS_CACHE_URL||").count(),
                url_getters,
                "{path}"
            );
            if original.contains("'.localhost'") {
                assert!(
                    text.contains("url.hostname.endsWith('.localhost')"),
                    "{path}: undici's test"
                );
            }
        }
    }

    #[test]
    fn the_untouched_fixture_is_left_byte_for_byte() {
        let original = fixture("untouched/dist/index.js");
        assert_eq!(patch_file(&original), FilePatch::Unrecognized);
        assert_eq!(
            patch_file(&fixture("client/artifact-v4.js")),
            FilePatch::Unrelated
        );
        assert_eq!(patch_file(&fixture("client/main.js")), FilePatch::Unrelated);
    }

    const CACHE_URL_FIRST_TEXT: &str = "process.env.ACTIONS_CACHE_URL||";

    #[test]
    fn text_without_the_toolkit_is_unrelated() {
        assert_eq!(
            patch_file(b"console.log('GITHUB.COM')"),
            FilePatch::Unrelated
        );
    }
}
