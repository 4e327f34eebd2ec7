//! Workflow commands on a step's output (`::name props::value` and the `##[name props]value` form):
//! parsed per line before the line is masked and leaves the engine. Masks, outputs and state are
//! returned as effects for the step runner to apply; the line to log (if any) is returned rewritten
//! as upstream's reporter does (runner-behaviour §7.4).

use std::sync::LazyLock;

use regex::Regex;

use super::line_batch::LineBatch;

/// What a command asks of the step runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    AddMask(String),
    SetOutput { name: String, value: String },
    SaveState { name: String, value: String },
    SetEnv { name: String, value: String },
    AddPath(String),
}

/// The result of one line: what to log (unmasked yet) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Processed {
    pub log: Vec<String>,
    pub effects: Vec<Effect>,
}

/// Per-step command state.
#[derive(Debug)]
pub struct CommandProcessor {
    stop_token: Option<String>,
    step_debug: bool,
    allow_unsecure_commands: bool,
}

struct Command {
    name: String,
    properties: Vec<(String, String)>,
    value: String,
}

static COLON_FORM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^::([^ :]+)( [^:]*)?::(.*)$").expect("the command pattern is a valid regex")
});
static HASH_FORM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^##\[([^ \]]+)( [^\]]*)?\](.*)$").expect("the command pattern is a valid regex")
});

/// Whether `line` is certainly no command, so [`CommandProcessor::process`] would log it unchanged
/// and do nothing else, whatever its state: the fast path for ordinary output.
pub fn is_plain(line: &str) -> bool {
    !(line.starts_with("::") || line.starts_with("##[") || line.ends_with(['\r', '\n']))
}

/// Whether every line of `batch` is plain ([`is_plain`]). Decided for the whole batch at once
/// when its text holds no `::`, no `##[` and no `\r`, and no line holds a `\n` (then no line can
/// start or end like a command); else line by line.
pub fn all_plain(batch: &LineBatch) -> bool {
    let text = batch.text().as_bytes();
    let no_command_marks = memchr::memmem::find(text, b"::").is_none()
        && memchr::memmem::find(text, b"##[").is_none()
        && memchr::memchr(b'\r', text).is_none();
    // `n` lines are joined by `n - 1` separators: a `\n` more is inside a line.
    let no_inner_newline =
        memchr::memchr_iter(b'\n', text).count() == batch.len().saturating_sub(1);
    (no_command_marks && no_inner_newline) || batch.iter().all(is_plain)
}

impl CommandProcessor {
    /// `step_debug`: `ACTIONS_STEP_DEBUG` is on (debug lines are shown).
    /// `allow_unsecure_commands`: `ACTIONS_ALLOW_UNSECURE_COMMANDS=true` (set-env, add-path work).
    pub fn new(step_debug: bool, allow_unsecure_commands: bool) -> CommandProcessor {
        CommandProcessor {
            stop_token: None,
            step_debug,
            allow_unsecure_commands,
        }
    }

    pub fn process(&mut self, raw: &str) -> Processed {
        let line = raw.trim_end_matches(['\r', '\n']);
        let Some(command) = parse(line) else {
            return keep(line);
        };
        if let Some(token) = &self.stop_token {
            if command.name == *token {
                self.stop_token = None;
                return Processed::default();
            }
            return keep(line);
        }
        match command.name.as_str() {
            "add-mask" => effect(Effect::AddMask(unescape_data(&command.value))),
            "debug" => {
                if self.step_debug {
                    keep(line)
                } else {
                    Processed::default()
                }
            }
            "notice" | "warning" | "error" => keep(&annotation(&command)),
            "stop-commands" => {
                let token = unescape_data(&command.value);
                if !token.is_empty() {
                    self.stop_token = Some(token);
                }
                Processed::default()
            }
            "set-output" | "save-state" => {
                let name = property(&command, "name").unwrap_or_default();
                let value = unescape_data(&command.value);
                let (effect, file) = if command.name == "set-output" {
                    (Effect::SetOutput { name, value }, "GITHUB_OUTPUT")
                } else {
                    (Effect::SaveState { name, value }, "GITHUB_STATE")
                };
                Processed {
                    log: vec![format!(
                        "::warning::The `{}` command is deprecated and will be disabled soon. Please upgrade to using Environment Files ({file}).",
                        command.name
                    )],
                    effects: vec![effect],
                }
            }
            "set-env" | "add-path" => {
                if !self.allow_unsecure_commands {
                    return keep(&format!(
                        "::error::The `{}` command is disabled. Please upgrade to using Environment Files or opt into unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment variable to `true`.",
                        command.name
                    ));
                }
                let value = unescape_data(&command.value);
                let effect = if command.name == "set-env" {
                    Effect::SetEnv {
                        name: property(&command, "name").unwrap_or_default(),
                        value,
                    }
                } else {
                    Effect::AddPath(value)
                };
                Processed {
                    log: Vec::new(),
                    effects: vec![effect],
                }
            }
            // group, endgroup, echo, add-matcher and anything unknown pass through verbatim.
            _ => keep(line),
        }
    }
}

fn keep(line: &str) -> Processed {
    Processed {
        log: vec![line.to_string()],
        effects: Vec::new(),
    }
}

fn effect(effect: Effect) -> Processed {
    Processed {
        log: Vec::new(),
        effects: vec![effect],
    }
}

fn parse(line: &str) -> Option<Command> {
    if let Some(captures) = COLON_FORM.captures(line) {
        return Some(Command {
            name: captures[1].to_string(),
            properties: properties(captures.get(2).map_or("", |m| m.as_str()), ','),
            value: captures[3].to_string(),
        });
    }
    let captures = HASH_FORM.captures(line)?;
    Some(Command {
        name: captures[1].to_string(),
        properties: properties(captures.get(2).map_or("", |m| m.as_str()), ';'),
        value: captures[3].to_string(),
    })
}

fn properties(text: &str, separator: char) -> Vec<(String, String)> {
    text.trim()
        .split(separator)
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.trim().to_ascii_lowercase(), unescape_property(value)))
        })
        .collect()
}

fn property(command: &Command, name: &str) -> Option<String> {
    command
        .properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
}

/// `file[:line[:col]]: title: value`, as upstream's reporter rewrites annotations.
fn annotation(command: &Command) -> String {
    let mut prefix = String::new();
    if let Some(file) = property(command, "file") {
        prefix.push_str(&file);
        if let Some(line) = property(command, "line") {
            prefix.push(':');
            prefix.push_str(&line);
            if let Some(column) = property(command, "col").or_else(|| property(command, "column")) {
                prefix.push(':');
                prefix.push_str(&column);
            }
        }
        prefix.push_str(": ");
    }
    if let Some(title) = property(command, "title") {
        prefix.push_str(&title);
        prefix.push_str(": ");
    }
    format!("::{}::{prefix}{}", command.name, command.value)
}

/// Unescapes a command's value (`%25`, `%0D`, `%0A`); `%25` last so `%250A` stays `%0A`.
pub fn unescape_data(value: &str) -> String {
    value
        .replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

fn unescape_property(value: &str) -> String {
    value
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(lines: &[&str], expected_log: &[&str], expected_effects: &[Effect]) {
        let mut processor = CommandProcessor::new(false, false);
        let mut log = Vec::new();
        let mut effects = Vec::new();
        for line in lines {
            let processed = processor.process(line);
            log.extend(processed.log);
            effects.extend(processed.effects);
        }
        assert_eq!(log, expected_log);
        assert_eq!(effects, expected_effects);
    }

    #[test]
    fn plain_lines_pass() {
        check(&["hello", "a::b"], &["hello", "a::b"], &[]);
    }

    #[test]
    fn lines_called_plain_are_logged_unchanged_in_every_state() {
        let lines = [
            "hello",
            "a::b",
            " ::warning::x",
            "#[x]",
            ":",
            "##",
            "::warning::w",
            "##[error]e",
            "::stop-commands::tok",
            "x\r",
            "::add-mask::",
        ];
        for stopped in [false, true] {
            let mut processor = CommandProcessor::new(false, false);
            if stopped {
                processor.process("::stop-commands::tok");
            }
            for line in lines {
                if is_plain(line) {
                    assert_eq!(processor.process(line), keep(line), "{line:?}");
                }
            }
        }
        assert!(!is_plain("::warning::w") && !is_plain("##[error]e") && !is_plain("x\r"));
    }

    #[test]
    fn a_batch_is_all_plain_exactly_when_each_of_its_lines_is() {
        let pieces = ["a", ":", "::", "#", "##[", "\r", "\n", "", "é"];
        // Every batch of up to three lines, each made of up to two pieces.
        let mut lines = vec![String::new()];
        for first in pieces {
            for second in pieces {
                lines.push(format!("{first}{second}"));
            }
        }
        for a in &lines {
            for b in &lines {
                let (a, b) = (a.as_str(), b.as_str());
                for batch in [vec![], vec![a], vec![a, b], vec![b, "plain", a]] {
                    let batch: LineBatch = batch.into_iter().collect();
                    assert_eq!(all_plain(&batch), batch.iter().all(is_plain), "{batch:?}");
                }
            }
        }
    }

    #[test]
    fn add_mask_is_dropped_and_registered_in_both_forms() {
        check(
            &["::add-mask::s3%25cret", "##[add-mask]other"],
            &[],
            &[
                Effect::AddMask("s3%cret".into()),
                Effect::AddMask("other".into()),
            ],
        );
    }

    #[test]
    fn annotations_are_rewritten_like_upstream() {
        check(
            &[
                "::error file=file.name,line=42,endLine=48,title=Cool Title::Gosh",
                "::error file=main.cpp,line=12::no member named 'foo' in 'std::vector<int>'",
                "::warning::plain",
                "::notice file=a,line=1,col=2::n",
            ],
            &[
                "::error::file.name:42: Cool Title: Gosh",
                "::error::main.cpp:12: no member named 'foo' in 'std::vector<int>'",
                "::warning::plain",
                "::notice::a:1:2: n",
            ],
            &[],
        );
    }

    #[test]
    fn debug_is_hidden_without_step_debug() {
        check(&["::debug::x"], &[], &[]);
        let mut processor = CommandProcessor::new(true, false);
        assert_eq!(processor.process("::debug::x").log, ["::debug::x"]);
    }

    #[test]
    fn stop_commands_pause_until_the_token() {
        check(
            &[
                "::stop-commands::pause-1",
                "::add-mask::notmasked",
                "::pause-1::",
                "::add-mask::masked",
            ],
            &["::add-mask::notmasked"],
            &[Effect::AddMask("masked".into())],
        );
    }

    #[test]
    fn set_output_is_accepted_with_a_warning() {
        let mut processor = CommandProcessor::new(false, false);
        let processed = processor.process("::set-output name=x::a%0Ab");
        assert_eq!(
            processed.effects,
            [Effect::SetOutput {
                name: "x".into(),
                value: "a\nb".into()
            }]
        );
        assert!(processed.log[0].starts_with("::warning::The `set-output` command is deprecated"));
    }

    #[test]
    fn set_env_is_refused_unless_allowed() {
        let mut processor = CommandProcessor::new(false, false);
        let processed = processor.process("::set-env name=A::b");
        assert!(processed.effects.is_empty());
        assert!(processed.log[0].starts_with("::error::The `set-env` command is disabled"));
        let mut processor = CommandProcessor::new(false, true);
        assert_eq!(
            processor.process("::set-env name=A::b").effects,
            [Effect::SetEnv {
                name: "A".into(),
                value: "b".into()
            }]
        );
    }

    #[test]
    fn group_passes_through() {
        check(
            &["::group::title", "::endgroup::"],
            &["::group::title", "::endgroup::"],
            &[],
        );
    }
}
