//! Masking: every secret and every `add-mask` value is replaced by `***` in a log line before it
//! leaves the engine. A value is expanded as upstream does (runner-behaviour §7.2): each trimmed line of
//! it, the command-escaped form of lines holding `%`/CR/LF, and encoded forms of the whole value
//! (base64 at three alignments, JSON string escapes, URL escapes). Replacement follows Go's
//! `strings.NewReplacer`: leftmost match, and at one position the pattern registered first wins.

use aho_corasick::{AhoCorasick, Input, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::line_batch::LineBatch;

const REPLACEMENT: &str = "***";

/// The set of masked strings of one job.
#[derive(Default)]
pub struct Masker {
    patterns: Vec<String>,
    automaton: Option<AhoCorasick>,
}

// Deliberately hides the patterns: they are secrets.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("n_patterns", &self.patterns.len())
            .finish()
    }
}

impl Masker {
    pub fn new() -> Masker {
        Masker::default()
    }

    /// Adds one secret value with every form upstream masks.
    pub fn add(&mut self, value: &str) {
        let before = self.patterns.len();
        for line in value.split('\n') {
            let line = line.trim();
            if line.chars().count() <= 1 {
                continue;
            }
            self.push(line.to_string());
            if line.contains(['%', '\r', '\n']) {
                self.push(command_escape(line));
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
                    self.push(form);
                }
            }
        }
        if self.patterns.len() != before {
            self.automaton = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(&self.patterns)
                .ok();
        }
    }

    fn push(&mut self, pattern: String) {
        if !self.patterns.contains(&pattern) {
            self.patterns.push(pattern);
        }
    }

    /// Returns the line with every masked string replaced by `***`.
    pub fn mask(&self, line: &str) -> String {
        match &self.automaton {
            Some(automaton) => {
                let mut masked = String::with_capacity(line.len());
                mask_into(automaton, line, &mut masked);
                masked
            }
            None => line.to_string(),
        }
    }

    /// Masks every line of a batch, exactly as [`Masker::mask`] masks each on its own. One search
    /// over the whole batch finds the lines that hold a masked string; only those are rewritten,
    /// and a batch without any comes back as it was, without a copy.
    pub fn mask_lines(&self, lines: LineBatch) -> LineBatch {
        let Some(automaton) = &self.automaton else {
            return lines;
        };
        let text = lines.text();
        let mut next_match = automaton.find(text);
        if next_match.is_none() {
            return lines;
        }
        let mut masked = LineBatch::new();
        for (start, end) in lines.spans() {
            let line = &text[start..end];
            // The leftmost match at or after this line's start: none starting inside the line
            // means no masked string lies wholly in it.
            match next_match {
                Some(found) if found.start() < end => {
                    masked.push_with(|out| mask_into(automaton, line, out));
                    next_match = automaton.find(Input::new(text).range(end.min(text.len())..));
                }
                _ => masked.push(line),
            }
        }
        masked
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Appends `line` to `out` with every match replaced (Go's `strings.Replacer` semantics).
fn mask_into(automaton: &AhoCorasick, line: &str, out: &mut String) {
    automaton.replace_all_with(line, out, |_, _, out| {
        out.push_str(REPLACEMENT);
        true
    });
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
    fn first_registered_pattern_wins_at_one_position() {
        let masker = masker(&["abc", "abcdef"]);
        assert_eq!(masker.mask("abcdef"), "***def");
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
