//! [`CacheError`]: what the cache engine reports, sorted by what the caller (an HTTP handler, the
//! CLI, the daemon) does next. Each variant maps to one HTTP status in `http::status_of`.

use std::io;
use std::path::PathBuf;

/// Why a cache operation failed. Messages name the key, id or limit involved, never a token.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No live grant for the credential, or none was sent (HTTP 401).
    #[error("no live cache credential: send the task's ACTIONS_RUNTIME_TOKEN as a Bearer token")]
    Unauthorized,
    /// A signed blob URL whose signature does not verify or whose expiry has passed (HTTP 403).
    #[error("the signed URL is invalid or has expired")]
    BadSignature,
    /// The request is malformed: a bad key, range, size or body (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The entry would not fit a limit (HTTP 400 at reserve; the toolkit shows the message).
    #[error("{0}")]
    TooLarge(String),
    /// No such cache id or upload (HTTP 404).
    #[error("no cache entry or upload with id {0}")]
    UnknownId(u64),
    /// The key and version exist or are being written by another job (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The cache directory cannot be used.
    #[error("cache directory {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The index database failed.
    #[error("cache index: {0}")]
    Index(String),
    /// The HTTP listener failed.
    #[error("cache server: {0}")]
    Serve(#[source] io::Error),
    /// A shared `cache-server` refused or did not answer a grant call (`RemoteGrants`).
    #[error("cache server at {url}: {message}")]
    Remote { url: String, message: String },
}

impl CacheError {
    /// Wraps an I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> CacheError {
        CacheError::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps any index (redb) error.
    pub(crate) fn index(err: impl std::fmt::Display) -> CacheError {
        CacheError::Index(err.to_string())
    }
}
