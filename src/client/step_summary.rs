//! Job summaries for Gitea ≥ 1.27 (capability `job-summary`): one step's Markdown sent with
//! `PUT {ACTIONS_RUNTIME_URL}_apis/pipelines/workflows/{run_id}/jobs/{job_id}/steps/{step_index}/summary`
//! and the job's runtime token as Bearer, as Gitea's `uploadJobSummary` expects. `job_id` is the
//! `JobID` claim of that token (Gitea's job, not the task), read without verifying it.
//! Errors name the URL and the status, never the token.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A runtime token longer than this is not Gitea's (its claims are a few hundred bytes).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why one PUT did not store the summary.
#[derive(Debug, thiserror::Error)]
pub enum StepSummaryError {
    #[error("PUT {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("PUT {url}: {message}")]
    Transport { url: String, message: String },
    #[error("cannot build the HTTP client for step summaries: {0}")]
    Client(String),
}

/// Sends the step summaries of one job.
pub struct StepSummaryUploader {
    http: reqwest::Client,
    /// `{ACTIONS_RUNTIME_URL}_apis/pipelines/workflows/{run_id}/jobs/{job_id}/steps/`.
    steps_url: String,
    token: String,
}

impl fmt::Debug for StepSummaryUploader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepSummaryUploader")
            .field("steps_url", &self.steps_url)
            .finish_non_exhaustive()
    }
}

impl StepSummaryUploader {
    /// An uploader for the job whose runtime URL and token these are; `request_timeout` bounds
    /// each PUT.
    pub fn new(
        runtime_url: &str,
        runtime_token: &str,
        run_id: &str,
        job_id: i64,
        insecure: bool,
        request_timeout: Duration,
    ) -> Result<StepSummaryUploader, StepSummaryError> {
        let http = reqwest::Client::builder()
            .user_agent(format!("act_runner/{}", crate::VERSION))
            .timeout(request_timeout)
            .danger_accept_invalid_certs(insecure && runtime_url.starts_with("https://"))
            .build()
            .map_err(|error| StepSummaryError::Client(error.to_string()))?;
        let runtime_url = runtime_url.trim_end_matches('/');
        Ok(StepSummaryUploader {
            http,
            steps_url: format!(
                "{runtime_url}/_apis/pipelines/workflows/{run_id}/jobs/{job_id}/steps/"
            ),
            token: runtime_token.to_string(),
        })
    }

    /// Where step `step_idx`'s summary goes.
    pub fn url(&self, step_idx: usize) -> String {
        format!("{}{step_idx}/summary", self.steps_url)
    }

    /// One PUT of `markdown` as step `step_idx`'s summary.
    pub async fn put(&self, step_idx: usize, markdown: &str) -> Result<(), StepSummaryError> {
        let url = self.url(step_idx);
        let response = self
            .http
            .put(&url)
            .bearer_auth(&self.token)
            .header(
                reqwest::header::CONTENT_TYPE,
                "text/markdown; charset=utf-8",
            )
            .body(markdown.to_string())
            .send()
            .await
            .map_err(|error| StepSummaryError::Transport {
                url: url.clone(),
                message: error.without_url().to_string(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(StepSummaryError::Status {
            url,
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        })
    }
}

/// The `JobID` claim of a Gitea runtime token (a JWT), read without verifying the signature.
pub fn runtime_token_job_id(token: &str) -> Option<i64> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("JobID")?.as_i64().filter(|job_id| *job_id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn the_job_id_is_the_tokens_job_id_claim() {
        let claims = r#"{"TaskID":7,"RunID":3,"JobID":42,"scp":"Actions.Results:3:42"}"#;
        assert_eq!(runtime_token_job_id(&token(claims)), Some(42));
        assert_eq!(runtime_token_job_id(&token(r#"{"TaskID":7}"#)), None);
        assert_eq!(runtime_token_job_id("not-a-jwt"), None);
        assert_eq!(
            runtime_token_job_id(&token(&"x".repeat(MAX_TOKEN_BYTES))),
            None
        );
    }

    #[test]
    fn the_url_follows_the_runtime_url_with_or_without_its_slash() {
        for runtime_url in [
            "https://gitea.test/api/actions_pipeline/",
            "https://gitea.test/api/actions_pipeline",
        ] {
            let uploader = StepSummaryUploader::new(
                runtime_url,
                "secret-token",
                "12",
                42,
                false,
                Duration::from_secs(1),
            )
            .unwrap();
            assert_eq!(
                uploader.url(3),
                "https://gitea.test/api/actions_pipeline/_apis/pipelines/workflows/12/jobs/42/steps/3/summary"
            );
            assert!(!format!("{uploader:?}").contains("secret-token"));
        }
    }
}
