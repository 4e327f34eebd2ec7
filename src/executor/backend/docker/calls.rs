//! Docker calls with a bound and errors worded for the job log: what every part of the backend
//! wraps its bollard calls in; and [`Creations`], the creates that run to their end even when
//! their caller is dropped.

use std::fmt;
use std::future::Future;

use tokio_util::task::TaskTracker;

use super::API_TIMEOUT;
use crate::executor::backend::BackendError;

/// The creates of one job (network, containers), each run as a task of its own.
///
/// A cancelled `prepare` is dropped mid-call, but dockerd finishes a create it has received: had
/// the create been dropped with it, the network or container could appear after the cleanup had
/// looked for it, and stay for ever. So cleanup first waits for [`Creations::settled`].
#[derive(Debug, Default)]
pub struct Creations(TaskTracker);

impl Creations {
    /// Runs `create` to its end, even if the caller stops waiting for it.
    pub async fn run<T: Send + 'static>(
        &self,
        create: impl Future<Output = Result<T, BackendError>> + Send + 'static,
    ) -> Result<T, BackendError> {
        match self.0.spawn(create).await {
            Ok(created) => created,
            Err(join_error) => Err(BackendError::Docker(format!(
                "a Docker create ended abnormally: {join_error}"
            ))),
        }
    }

    /// Waits until every create started so far has ended, at most [`API_TIMEOUT`]: a dockerd
    /// that answers nothing for that long will not answer the removals either.
    pub async fn settled(&self) {
        self.0.close();
        if tokio::time::timeout(API_TIMEOUT, self.0.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                n_running = self.0.len(),
                "Docker creates still running at the job's cleanup"
            );
        }
        self.0.reopen();
    }
}

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
