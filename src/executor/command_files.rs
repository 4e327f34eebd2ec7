//! Environment files (`GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_STATE`, `GITHUB_PATH`): the parsers for
//! what a step wrote. `NAME=value` or the multi-line `NAME<<DELIMITER` ... `DELIMITER` form; whichever
//! of `=` and `<<` comes first on the line decides. A leading UTF-8 BOM is skipped.

/// Variables a step may not set for the steps after it (through `GITHUB_ENV` or `set-env`), as
/// GitHub's runner refuses them: `NODE_OPTIONS` would run code inside every later Node action.
pub const REFUSED_ENV: &[&str] = &["NODE_OPTIONS"];

/// Whether `name` is one of [`REFUSED_ENV`] (in any case, as environment names on Windows).
pub fn is_refused_env(name: &str) -> bool {
    REFUSED_ENV
        .iter()
        .any(|refused| refused.eq_ignore_ascii_case(name))
}

/// Why an environment file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandFileError {
    #[error("line {line}: missing `=` or `<<` in `{text}`")]
    Malformed { line: usize, text: String },
    #[error("line {line}: empty name")]
    EmptyName { line: usize },
    #[error("line {line}: the delimiter `{delimiter}` is never closed")]
    Unterminated { line: usize, delimiter: String },
}

/// Parses a `NAME=value` / `NAME<<DELIM` file into pairs, in written order.
pub fn parse_key_values(contents: &str) -> Result<Vec<(String, String)>, CommandFileError> {
    let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
    let lines: Vec<&str> = contents
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    let mut pairs = Vec::new();
    let mut idx = 0;
    while idx < lines.len() {
        let line = lines[idx];
        let line_no = idx + 1;
        idx += 1;
        if line.is_empty() {
            continue;
        }
        let equals = line.find('=');
        let heredoc = line.find("<<");
        let use_heredoc = match (equals, heredoc) {
            (Some(equals), Some(heredoc)) => heredoc < equals,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => {
                return Err(CommandFileError::Malformed {
                    line: line_no,
                    text: line.to_string(),
                });
            }
        };
        if use_heredoc {
            let (name, delimiter) = line.split_once("<<").unwrap_or((line, ""));
            if name.is_empty() {
                return Err(CommandFileError::EmptyName { line: line_no });
            }
            let mut value_lines = Vec::new();
            let mut closed = false;
            while idx < lines.len() {
                let candidate = lines[idx];
                idx += 1;
                if candidate == delimiter {
                    closed = true;
                    break;
                }
                value_lines.push(candidate);
            }
            if !closed {
                return Err(CommandFileError::Unterminated {
                    line: line_no,
                    delimiter: delimiter.to_string(),
                });
            }
            pairs.push((name.to_string(), value_lines.join("\n")));
        } else {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            if name.is_empty() {
                return Err(CommandFileError::EmptyName { line: line_no });
            }
            pairs.push((name.to_string(), value.to_string()));
        }
    }
    Ok(pairs)
}

/// Parses a `GITHUB_PATH` file: one directory per non-empty line, in written order.
pub fn parse_paths(contents: &str) -> Vec<String> {
    let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
    contents
        .lines()
        .map(|line| line.trim_end_matches('\r').trim())
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(values: &[(&str, &str)]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn simple_and_multi_line_values() {
        let parsed = parse_key_values("\u{feff}A=1\nB<<EOF\nx=y\n\nz\nEOF\nC=a<<b\n").unwrap();
        assert_eq!(
            parsed,
            pairs(&[("A", "1"), ("B", "x=y\n\nz"), ("C", "a<<b")])
        );
    }

    #[test]
    fn heredoc_before_equals_wins() {
        let parsed = parse_key_values("K<<E=F\nv\nE=F\n").unwrap();
        assert_eq!(parsed, pairs(&[("K", "v")]));
    }

    #[test]
    fn crlf_is_accepted() {
        assert_eq!(
            parse_key_values("A=1\r\nB=2\r\n").unwrap(),
            pairs(&[("A", "1"), ("B", "2")])
        );
    }

    #[test]
    fn unterminated_delimiter_is_an_error() {
        assert_eq!(
            parse_key_values("A<<EOF\nx\n"),
            Err(CommandFileError::Unterminated {
                line: 1,
                delimiter: "EOF".into()
            })
        );
    }

    #[test]
    fn line_without_separator_is_an_error() {
        assert!(matches!(
            parse_key_values("oops\n"),
            Err(CommandFileError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn paths_skip_blank_lines() {
        assert_eq!(parse_paths("/a\n\n/b\n"), ["/a", "/b"]);
    }
}
