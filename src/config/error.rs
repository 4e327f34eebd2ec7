//! What can go wrong loading `config.yaml`, shaped for the reader: every problem names the file,
//! line, column and key, and says what would be valid. Warnings have the same shape.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the configuration cannot be used. The CLI turns every variant into exit code 78.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not valid YAML, or its top level is not a mapping.
    #[error("{}:{line}:{column}: {message}", .path.display())]
    Syntax {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    /// One or more keys have invalid values; all of them are listed, each message saying what is
    /// wrong and what would be valid.
    #[error("{}", InvalidList(.0))]
    Invalid(Vec<KeyMessage>),
}

/// What is said about one key: an invalid value (in [`ConfigError::Invalid`]) or a warning, for
/// something the runner accepts but the user should hear about (unknown keys, values that were
/// clamped, deprecated keys). One type for both, so both print the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMessage {
    pub path: PathBuf,
    pub line: u64,
    pub column: u64,
    /// The dotted key, e.g. `runner.capacity`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for KeyMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: `{}`: {}",
            self.path.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

struct InvalidList<'a>(&'a [KeyMessage]);

impl fmt::Display for InvalidList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [single] => write!(f, "invalid configuration: {single}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}
