//! `runner.env_file`: dotenv syntax as joho/godotenv reads it (`KEY=value`, `export KEY=value`,
//! `KEY: value`, `#` comments, single quotes verbatim, double quotes with `\n`-style escapes).
//! Pure; imports nothing outside `std`.

use indexmap::IndexMap;

/// A line that is not `KEY=value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct DotenvError {
    pub line: usize,
    pub reason: String,
}

/// Parses dotenv text into variables in file order (a later line wins).
pub fn parse_dotenv(text: &str) -> Result<IndexMap<String, String>, DotenvError> {
    let mut vars = IndexMap::new();
    for (line_idx, raw_line) in text.lines().enumerate() {
        let line_number = line_idx + 1;
        let error = |reason: &str| DotenvError {
            line: line_number,
            reason: reason.to_owned(),
        };
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let split_at = line
            .find(['=', ':'])
            .ok_or_else(|| error("expected KEY=value"))?;
        let key = line[..split_at].trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(error("invalid variable name"));
        }
        let value = line[split_at + 1..].trim();
        let value = if let Some(quoted) = value.strip_prefix('\'') {
            let end = quoted
                .find('\'')
                .ok_or_else(|| error("unterminated single quote"))?;
            quoted[..end].to_owned()
        } else if let Some(quoted) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('t') => out.push('\t'),
                        Some(other) => out.push(other),
                        None => break,
                    },
                    other => out.push(other),
                }
            }
            if !closed {
                return Err(error("unterminated double quote"));
            }
            out
        } else {
            // An unquoted value ends at ` #` (an inline comment).
            value
                .split(" #")
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_owned()
        };
        vars.insert(key.to_owned(), value);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_forms() {
        let vars = parse_dotenv(
            "# c\nA=1\nexport B = two words # note\nC: 'x # y'\nD=\"l1\\nl2\"\n\nE=\n",
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("A", "1"),
                ("B", "two words"),
                ("C", "x # y"),
                ("D", "l1\nl2"),
                ("E", "")
            ]
        );
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(parse_dotenv("A=1\nnonsense\n").unwrap_err().line, 2);
        assert_eq!(parse_dotenv("A=\"open\n").unwrap_err().line, 1);
    }
}
