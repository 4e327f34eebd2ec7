//! systemd credentials (`LoadCredential=`, `LoadCredentialEncrypted=`): secrets read from files
//! under `$CREDENTIALS_DIRECTORY`, which only the service can read.
//!
//! May use: std, thiserror. Never another room: callers decide which credential feeds which key.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Credential names this runner looks for.
pub mod names {
    /// The runner token (`.runner`'s `token`), instead of storing it in the state directory.
    pub const RUNNER_TOKEN: &str = "runner-token";
    /// A registration token for `act_runner register`.
    pub const REGISTRATION_TOKEN: &str = "registration-token";
    /// The external cache server's secret (`cache.external_secret`).
    pub const CACHE_SECRET: &str = "cache-secret";
}

/// Why a credential could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The name would leave the credentials directory.
    #[error("`{name}` is not a valid credential name")]
    InvalidName { name: String },
    /// The file exists but cannot be read, or is not UTF-8.
    #[error("cannot read credential `{name}` from {}", .path.display())]
    Read {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The credentials directory passed by systemd, if any.
#[derive(Debug, Clone, Default)]
pub struct CredentialsDir {
    directory: Option<PathBuf>,
}

/// A secret read from a credential file; its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// The secret itself, for the one place that sends it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(***)")
    }
}

impl CredentialsDir {
    /// From `$CREDENTIALS_DIRECTORY` (unset or empty: no credentials).
    pub fn from_env() -> Self {
        let directory = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Self { directory }
    }

    /// The credentials in `directory` (tests, or a caller that knows better).
    pub fn in_directory(directory: impl Into<PathBuf>) -> Self {
        Self {
            directory: Some(directory.into()),
        }
    }

    /// The directory, when systemd passed one.
    pub fn directory(&self) -> Option<&Path> {
        self.directory.as_deref()
    }

    /// The credential `name` with surrounding whitespace (a trailing newline) trimmed, or
    /// `Ok(None)` when there is no directory or no such credential.
    pub fn read(&self, name: &str) -> Result<Option<Credential>, CredentialError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(CredentialError::InvalidName {
                name: name.to_owned(),
            });
        }
        let Some(directory) = &self.directory else {
            return Ok(None);
        };
        let path = directory.join(name);
        match crate::config::small_file::read_to_string(&path) {
            Ok(text) => Ok(Some(Credential(text.trim().to_owned()))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CredentialError::Read {
                name: name.to_owned(),
                path,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_trims_and_hides_a_credential() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(names::RUNNER_TOKEN), "s3cret\n").unwrap();
        let credentials = CredentialsDir::in_directory(dir.path());
        let token = credentials.read(names::RUNNER_TOKEN).unwrap().unwrap();
        assert_eq!(token.expose_secret(), "s3cret");
        assert_eq!(format!("{token:?}"), "Credential(***)");
        assert!(credentials.read(names::CACHE_SECRET).unwrap().is_none());
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let credentials = CredentialsDir::in_directory("/nonexistent");
        for name in ["", "..", "../etc/shadow", "a/b"] {
            assert!(
                matches!(
                    credentials.read(name),
                    Err(CredentialError::InvalidName { .. })
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn no_directory_means_no_credentials() {
        assert!(
            CredentialsDir::default()
                .read(names::RUNNER_TOKEN)
                .unwrap()
                .is_none()
        );
    }
}
