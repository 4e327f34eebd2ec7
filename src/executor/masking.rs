//! Masking: every secret and every `add-mask` value is replaced by `***` in a log line before it
//! leaves the engine. A value is expanded as upstream does (runner-behaviour §7.2): each trimmed line of
//! it, the command-escaped form of lines holding `%`/CR/LF, and encoded forms of the whole value
//! (base64 at three alignments, JSON string escapes, URL escapes).
//!
//! Every byte inside any match is hidden, whatever order the values came in: at each position the
//! longest masked string starting there is found, and overlapping or nested matches become one
//! `***` (so neither `abc` masked before `abcdefgh`, nor `bcdefgh` after `abc`, shows a tail).
//!
//! Adding a value is cheap: the patterns live in levels like a binary counter, each level with its
//! own automaton, and a new level is merged into the one before while that one is no larger, so
//! over a job each pattern is compiled into an automaton a logarithmic number of times (a search
//! runs once per level). A job may mask at most [`MAX_MASKED_VALUES`] values.

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, Anchored, Input, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::line_batch::LineBatch;

const REPLACEMENT: &str = "***";

/// The most values (secrets and `add-mask` values) one job masks; past it `add` refuses, so a
/// step printing masks in a loop cannot grow the matcher without end.
pub const MAX_MASKED_VALUES: usize = 10_000;

/// The job log's warning once [`Masker::add`] refused a value (never naming it).
pub fn cap_warning() -> String {
    format!(
        "::warning::This job already masks {MAX_MASKED_VALUES} values, the most it may: later values are not masked"
    )
}

/// The set of masked strings of one job.
#[derive(Default)]
pub struct Masker {
    /// Every pattern added, to skip duplicates.
    known: HashSet<String>,
    /// Newest last; sizes shrink towards the end (see the module doc).
    levels: Vec<Level>,
    n_values: usize,
    /// Values refused for the cap.
    n_refused: usize,
    /// Patterns compiled into automata so far, counting each rebuild (what adding costs).
    n_compiled: usize,
}

/// Some patterns and their automaton (leftmost-longest, so a search from a position finds the
/// longest match starting at the first position that has one).
struct Level {
    patterns: Vec<String>,
    automaton: AhoCorasick,
}

impl Level {
    fn build(patterns: Vec<String>) -> Option<Level> {
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()?;
        Some(Level {
            patterns,
            automaton,
        })
    }
}

// Deliberately hides the patterns: they are secrets.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("n_patterns", &self.known.len())
            .finish()
    }
}

impl Masker {
    pub fn new() -> Masker {
        Masker::default()
    }

    /// Adds one secret value with every form upstream masks. `false` when the job already masks
    /// [`MAX_MASKED_VALUES`] values: this one is not masked.
    pub fn add(&mut self, value: &str) -> bool {
        if self.n_values >= MAX_MASKED_VALUES {
            self.n_refused += 1;
            return false;
        }
        self.n_values += 1;
        let mut added = Vec::new();
        for line in value.split('\n') {
            let line = line.trim();
            if line.chars().count() <= 1 {
                continue;
            }
            self.push(line.to_string(), &mut added);
            if line.contains(['%', '\r', '\n']) {
                self.push(command_escape(line), &mut added);
            }
        }
        let whole = value.trim();
        if whole.chars().count() > 1 {
            let bytes = whole.as_bytes();
            let mut forms = vec![STANDARD.encode(bytes)];
            for shift in 1..=2 {
                let mut shifted = vec![0u8; shift];
                shifted.extend_from_slice(bytes);
                let encoded = STANDARD.encode(&shifted);
                if encoded.len() >= 16 {
                    forms.push(encoded[4..encoded.len() - 4].to_string());
                }
            }
            let json = json_escape(whole);
            forms.push(html_escape_json(&json));
            forms.push(json);
            forms.push(query_escape(whole));
            forms.push(path_escape(whole));
            for form in forms {
                if form != whole && form.chars().count() > 1 {
                    self.push(form, &mut added);
                }
            }
        }
        if !added.is_empty() {
            self.add_level(added);
        }
        true
    }

    /// [`Masker::add`] for each value; [`Masker::n_refused`] tells whether all fit.
    pub fn add_all<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) {
        for value in values {
            self.add(value);
        }
    }

    fn push(&mut self, pattern: String, added: &mut Vec<String>) {
        if self.known.insert(pattern.clone()) {
            added.push(pattern);
        }
    }

    /// Appends a level, merging while the one before is no larger.
    fn add_level(&mut self, mut patterns: Vec<String>) {
        while let Some(last) = self.levels.last()
            && last.patterns.len() <= patterns.len()
        {
            let mut merged = self
                .levels
                .pop()
                .map(|level| level.patterns)
                .unwrap_or_default();
            merged.append(&mut patterns);
            patterns = merged;
        }
        self.n_compiled += patterns.len();
        if let Some(level) = Level::build(patterns) {
            self.levels.push(level);
        }
    }

    /// Returns the line with every masked string replaced by `***`.
    pub fn mask(&self, line: &str) -> String {
        if self.levels.is_empty() {
            return line.to_string();
        }
        let mut masked = String::with_capacity(line.len());
        self.mask_into(line, &mut masked);
        masked
    }

    /// Masks every line of a batch, exactly as [`Masker::mask`] masks each on its own. One search
    /// per level over the whole batch finds the lines that hold a masked string; only those are
    /// rewritten, and a batch without any comes back as it was, without a copy.
    pub fn mask_lines(&self, lines: LineBatch) -> LineBatch {
        let text = lines.text();
        // Per level, the leftmost match at or after the current line's start. No pattern holds a
        // line break, so a match starting inside a line ends inside it.
        let mut next_matches: Vec<Option<usize>> = self
            .levels
            .iter()
            .map(|level| level.automaton.find(text).map(|found| found.start()))
            .collect();
        if next_matches.iter().all(Option::is_none) {
            return lines;
        }
        let mut masked = LineBatch::new();
        for (start, end) in lines.spans() {
            let line = &text[start..end];
            if next_matches.iter().flatten().any(|found| *found < end) {
                masked.push_with(|out| self.mask_into(line, out));
                let from = end.min(text.len());
                for (level, next) in self.levels.iter().zip(next_matches.iter_mut()) {
                    if next.is_some_and(|found| found < end) {
                        *next = level
                            .automaton
                            .find(Input::new(text).range(from..))
                            .map(|found| found.start());
                    }
                }
            } else {
                masked.push(line);
            }
        }
        masked
    }

    /// Whether `text` holds any masked string (a job output that does is not sent, as on GitHub).
    pub fn holds_masked(&self, text: &str) -> bool {
        self.levels
            .iter()
            .any(|level| level.automaton.is_match(text))
    }

    /// How many values [`Masker::add`] refused for the cap.
    pub fn n_refused(&self) -> usize {
        self.n_refused
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Appends `line` to `out` with the bytes of every match, overlapping ones merged, replaced
    /// by one `***` per merged stretch.
    fn mask_into(&self, line: &str, out: &mut String) {
        let mut covered = Vec::new();
        for level in &self.levels {
            longest_matches(&level.automaton, line, &mut covered);
        }
        covered.sort_unstable();
        let mut copied_to = 0;
        let mut stretch: Option<(usize, usize)> = None;
        for (start, end) in covered {
            match &mut stretch {
                Some((_, stretch_end)) if start < *stretch_end => {
                    *stretch_end = (*stretch_end).max(end);
                }
                _ => {
                    if let Some((stretch_start, stretch_end)) = stretch {
                        out.push_str(&line[copied_to..stretch_start]);
                        out.push_str(REPLACEMENT);
                        copied_to = stretch_end;
                    }
                    stretch = Some((start, end));
                }
            }
        }
        if let Some((stretch_start, stretch_end)) = stretch {
            out.push_str(&line[copied_to..stretch_start]);
            out.push_str(REPLACEMENT);
            copied_to = stretch_end;
        }
        out.push_str(&line[copied_to..]);
    }
}

/// Pushes onto `covered` the longest match starting at each position of `line` where one starts
/// and reaches past the matches before it (one nested in an earlier match adds nothing).
fn longest_matches(automaton: &AhoCorasick, line: &str, covered: &mut Vec<(usize, usize)>) {
    let mut from = 0;
    let mut reached = 0;
    while from < line.len() {
        let Some(found) = automaton.find(Input::new(line).range(from..).anchored(Anchored::No))
        else {
            break;
        };
        if found.end() > reached {
            covered.push((found.start(), found.end()));
            reached = found.end();
        }
        // The next start position: the one after this match's start, on a character boundary.
        from = found.start() + 1;
        while from < line.len() && !line.is_char_boundary(from) {
            from += 1;
        }
    }
}

/// The workflow-command escape of a value (`%` first, so it is not applied twice).
pub fn command_escape(value: &str) -> String {
    value
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn json_escape(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
}

/// Go's `json.Marshal` also escapes `<`, `>` and `&` (and U+2028/9) for HTML safety.
fn html_escape_json(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn percent_encode(value: &str, keep: impl Fn(u8) -> bool, space_as_plus: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') || keep(byte) {
            out.push(char::from(byte));
        } else if byte == b' ' && space_as_plus {
            out.push('+');
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(value: &str) -> String {
    percent_encode(value, |_| false, true)
}

/// Go's `url.PathEscape`.
fn path_escape(value: &str) -> String {
    percent_encode(
        value,
        |byte| matches!(byte, b'$' | b'&' | b'+' | b',' | b':' | b';' | b'=' | b'@'),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(values: &[&str]) -> Masker {
        let mut masker = Masker::new();
        for value in values {
            masker.add(value);
        }
        masker
    }

    #[test]
    fn plain_value_is_masked_everywhere() {
        assert_eq!(
            masker(&["hunter2"]).mask("pw=hunter2, again hunter2"),
            "pw=***, again ***"
        );
    }

    #[test]
    fn one_character_values_are_not_masked() {
        assert_eq!(masker(&["x"]).mask("x marks"), "x marks");
    }

    #[test]
    fn multi_line_secret_is_masked_line_by_line() {
        let masker = masker(&["first-line\n  second-line  \n"]);
        assert_eq!(masker.mask("a first-line b"), "a *** b");
        assert_eq!(masker.mask("second-line"), "***");
    }

    #[test]
    fn base64_forms_are_masked() {
        let masker = masker(&["supersecretvalue"]);
        let encoded = STANDARD.encode("supersecretvalue");
        assert_eq!(masker.mask(&encoded), "***");
        // The value inside a longer base64 stream, at a shifted alignment.
        let embedded = STANDARD.encode("x:supersecretvalue:y");
        assert!(masker.mask(&embedded).contains("***"), "{embedded}");
    }

    #[test]
    fn json_and_url_forms_are_masked() {
        let masker = masker(&["a\"b<c d"]);
        assert_eq!(masker.mask(r#"{"v":"a\"b\u003cc d"}"#), r#"{"v":"***"}"#);
        assert_eq!(masker.mask("q=a%22b%3Cc+d"), "q=***");
        assert_eq!(masker.mask("/a%22b%3Cc%20d"), "/***");
    }

    #[test]
    fn escaped_form_of_percent_lines_is_masked() {
        let masker = masker(&["50%off"]);
        assert_eq!(masker.mask("::set-output::50%25off"), "::set-output::***");
    }

    #[test]
    fn the_longest_match_is_masked_whatever_the_order() {
        // Issue 22: a secret that is a prefix of another must not leave the other's tail.
        for values in [["abc", "abcdefgh"], ["abcdefgh", "abc"]] {
            let masker = masker(&values);
            assert_eq!(masker.mask("x abcdefgh y"), "x *** y");
            assert_eq!(masker.mask("abc abcdefgh"), "*** ***");
        }
        // Overlapping, not nested: both are hidden as one stretch.
        let masker = masker(&["abc", "bcdefgh"]);
        assert_eq!(masker.mask("abcdefgh!"), "***!");
        // Adjacent matches stay two, as upstream prints them.
        assert_eq!(masker.mask("abcabc"), "******");
    }

    #[test]
    fn thousands_of_masks_are_cheap_and_capped() {
        let mut masker = Masker::new();
        for n in 0..2_000 {
            assert!(masker.add(&format!("secret-value-{n:05}")));
            // Masking between adds, as a step interleaving output and add-mask lines does.
            if n % 10 == 0 {
                assert_eq!(masker.mask(&format!("v=secret-value-{n:05}")), "v=***");
            }
        }
        // Rebuilding on every add compiled each pattern once per later add (about n²/2 in all);
        // levels compile each one about log2(n) times.
        let n_patterns = masker.known.len();
        let bound = n_patterns * (n_patterns.ilog2() as usize + 2);
        assert!(
            masker.n_compiled <= bound,
            "{} > {bound}",
            masker.n_compiled
        );
        assert_eq!(
            masker.mask("a secret-value-00000 b secret-value-01999"),
            "a *** b ***"
        );
        assert!(masker.levels.len() <= 16, "{} levels", masker.levels.len());
        // The cap itself, without adding thousands more in a unit test.
        masker.n_values = MAX_MASKED_VALUES;
        assert!(!masker.add("one-too-many"));
        assert_eq!(masker.mask("one-too-many"), "one-too-many");
    }

    #[test]
    fn a_batch_is_masked_exactly_as_each_line_alone() {
        let masker = masker(&["hunter2", "ab"]);
        // "a" + "b" across a line break is no match; a match right at a line's start or end is.
        let lines = [
            "clean",
            "x a",
            "b y",
            "hunter2 ok",
            "",
            "ok hunter2",
            "zzab",
            "none",
            "ab",
        ];
        let batch: LineBatch = lines.iter().copied().collect();
        let expected: Vec<String> = lines.iter().map(|line| masker.mask(line)).collect();
        assert_eq!(
            masker.mask_lines(batch).iter().collect::<Vec<_>>(),
            expected
        );
        let clean: LineBatch = ["nothing", "to", "hide"].into_iter().collect();
        assert_eq!(masker.mask_lines(clean.clone()), clean);
        assert_eq!(Masker::new().mask_lines(clean.clone()), clean);
    }

    #[test]
    fn debug_does_not_print_patterns() {
        assert!(!format!("{:?}", masker(&["hunter2"])).contains("hunter2"));
    }
}
