//! Image presence: a local image is used as it is unless a pull is forced; a missing one is pulled
//! (with credentials) under a bound, and a failed pull says plainly that the image is missing.

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;

use super::options::ContainerOptions;
use super::{RegistryCredentials, describe, is_not_found, send_log};
use crate::executor::backend::BackendError;

/// When to pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Only when the image is not present (the default).
    Missing,
    /// Always (`container.force_pull`, `--pull always`), except digest-pinned images.
    Always,
    /// Never (`--pull never`): a missing image is an error.
    Never,
}

impl PullPolicy {
    /// The runner's `force_pull`, overridden by the last `--pull` in the options.
    pub fn from_options<'a>(
        force_pull: bool,
        options: impl IntoIterator<Item = &'a ContainerOptions>,
    ) -> PullPolicy {
        let mut policy = if force_pull {
            PullPolicy::Always
        } else {
            PullPolicy::Missing
        };
        for options in options {
            match options.pull.as_deref() {
                Some("always") => policy = PullPolicy::Always,
                Some("never") => policy = PullPolicy::Never,
                Some("missing") => policy = PullPolicy::Missing,
                _ => {}
            }
        }
        policy
    }
}

/// Makes sure `image` is present locally and returns its `Env` (the base of every exec's environment).
/// A pull is for `platform` when given (`--platform`); a present image is taken as it is, and the
/// create says when it does not match.
pub async fn ensure_image(
    docker: &Docker,
    image: &str,
    credentials: Option<&RegistryCredentials>,
    platform: Option<&str>,
    policy: PullPolicy,
    pull_timeout: Duration,
    log: &mpsc::Sender<String>,
) -> Result<Vec<String>, BackendError> {
    let local = inspect_env(docker, image).await?;
    let pinned = image.contains("@sha256:");
    let wanted = match policy {
        PullPolicy::Missing => local.is_none(),
        PullPolicy::Always => !(local.is_some() && pinned),
        PullPolicy::Never => false,
    };
    if !wanted {
        return local.ok_or_else(|| {
            BackendError::Docker(format!(
                "image `{image}` is not present locally and pulling is disabled"
            ))
        });
    }
    send_log(log, format!("pulling image {image}")).await;
    match pull(docker, image, credentials, platform, pull_timeout).await {
        Ok(()) => inspect_env(docker, image).await?.ok_or_else(|| {
            BackendError::Docker(format!(
                "image `{image}` is missing after a successful pull"
            ))
        }),
        Err(reason) => match local {
            Some(env) => {
                let warning =
                    format!("warning: pull of {image} failed, using the local copy: {reason}");
                send_log(log, warning).await;
                Ok(env)
            }
            None => Err(BackendError::Docker(format!(
                "image `{image}` is not present locally and could not be pulled: {reason}"
            ))),
        },
    }
}

/// The image's `Env`, or `None` when the image is not present.
async fn inspect_env(docker: &Docker, image: &str) -> Result<Option<Vec<String>>, BackendError> {
    match tokio::time::timeout(super::API_TIMEOUT, docker.inspect_image(image)).await {
        Ok(Ok(inspect)) => Ok(Some(
            inspect
                .config
                .and_then(|config| config.env)
                .unwrap_or_default(),
        )),
        Ok(Err(err)) if is_not_found(&err) => Ok(None),
        Ok(Err(err)) => Err(BackendError::Docker(format!(
            "inspect image {image}: {}",
            describe(&err)
        ))),
        Err(_) => Err(BackendError::Docker(format!(
            "inspect image {image}: no answer"
        ))),
    }
}

async fn pull(
    docker: &Docker,
    image: &str,
    credentials: Option<&RegistryCredentials>,
    platform: Option<&str>,
    pull_timeout: Duration,
) -> Result<(), String> {
    let mut options = CreateImageOptionsBuilder::default().from_image(image);
    if let Some(platform) = platform {
        options = options.platform(platform);
    }
    let options = options.build();
    let credentials = credentials.map(|credentials| DockerCredentials {
        username: Some(credentials.username.clone()),
        password: Some(credentials.password.clone()),
        ..Default::default()
    });
    let mut progress = docker.create_image(Some(options), None, credentials);
    let drain = async {
        while let Some(item) = progress.next().await {
            match item {
                Ok(info) => {
                    if let Some(error) = info.error_detail.and_then(|detail| detail.message) {
                        return Err(error);
                    }
                }
                Err(err) => return Err(describe(&err)),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(pull_timeout, drain).await {
        Ok(result) => result,
        Err(_) => Err(format!("no completion within {}s", pull_timeout.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::backend::docker::options::OptionsPolicy;

    fn options(text: &str) -> ContainerOptions {
        let policy = OptionsPolicy {
            privileged: false,
            trusted: false,
        };
        ContainerOptions::parse(text, policy).unwrap()
    }

    #[test]
    fn pull_option_overrides_force_pull() {
        assert_eq!(PullPolicy::from_options(false, []), PullPolicy::Missing);
        assert_eq!(PullPolicy::from_options(true, []), PullPolicy::Always);
        assert_eq!(
            PullPolicy::from_options(true, [&options("--pull never")]),
            PullPolicy::Never
        );
        assert_eq!(
            PullPolicy::from_options(false, [&options("--pull=always")]),
            PullPolicy::Always
        );
    }
}
