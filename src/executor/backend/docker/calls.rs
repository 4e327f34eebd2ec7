//! Docker calls with a bound and errors worded for the job log: what every part of the backend
//! wraps its bollard calls in.

use std::fmt;
use std::future::Future;

use super::API_TIMEOUT;
use crate::executor::backend::BackendError;

/// Runs one Docker call under [`API_TIMEOUT`], naming what was attempted in the error.
pub async fn bounded<T>(
    what: impl fmt::Display,
    call: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(BackendError::Docker(format!("{what}: {}", describe(&err)))),
        Err(_) => Err(BackendError::Docker(format!(
            "{what}: no answer within {}s",
            API_TIMEOUT.as_secs()
        ))),
    }
}

/// The daemon's own message for server errors, bollard's Display otherwise.
pub fn describe(err: &bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            message.trim().to_string()
        }
        other => other.to_string(),
    }
}

pub fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
