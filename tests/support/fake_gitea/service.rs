//! The tonic-generated `RunnerService` and `PingService` implemented once, on the shared state:
//! the auth interceptor, and Gitea's error shapes (grpc-go statuses that connect-go reports as
//! `unknown` with `rpc error: code = … desc = …`, or a real `unauthenticated` in modern mode).
//! Served over Connect by `connect` and over gRPC by `serve`.

use std::sync::Arc;

use act_runner::client::EncodedUpdateLog;
use act_runner::client::proto::ping::ping_service_server::PingService;
use act_runner::client::proto::ping::{PingRequest, PingResponse};
use act_runner::client::proto::runner::runner_service_server::RunnerService;
use act_runner::client::proto::runner::{
    DeclareRequest, DeclareResponse, FetchTaskRequest, FetchTaskResponse, RegisterRequest,
    RegisterResponse, UpdateLogRequest, UpdateLogResponse, UpdateTaskRequest, UpdateTaskResponse,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::Shared;
use super::state::{AuthMode, GiteaError};

/// The fake's service; cheap to clone.
#[derive(Clone)]
pub struct FakeService {
    pub(super) shared: Arc<Shared>,
}

impl FakeService {
    fn to_status(&self, error: GiteaError) -> Status {
        let auth_mode = self.shared.lock_state().auth_mode;
        gitea_status(error, auth_mode)
    }

    /// UpdateLog with its rows left encoded (what the Connect side decodes; the gRPC side
    /// converts the generated message).
    pub async fn update_log_encoded(
        &self,
        request: Request<EncodedUpdateLog>,
    ) -> Result<Response<UpdateLogResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let response = self.authenticated(&metadata, true, |state, runner_id| {
            state.update_log(runner_id, request)
        })?;
        Ok(Response::new(response))
    }

    /// Runs the interceptor, then `handler` on the state, under one lock.
    fn authenticated<T, F>(
        &self,
        request_metadata: &tonic::metadata::MetadataMap,
        active: bool,
        handler: F,
    ) -> Result<T, Status>
    where
        F: FnOnce(&mut super::state::State, i64) -> Result<T, GiteaError>,
    {
        let uuid = request_metadata
            .get("x-runner-uuid")
            .and_then(|value| value.to_str().ok());
        let token = request_metadata
            .get("x-runner-token")
            .and_then(|value| value.to_str().ok());
        let mut state = self.shared.lock_state();
        let auth_mode = state.auth_mode;
        let outcome = state
            .authenticate(uuid, token, active, Instant::now())
            .and_then(|runner_id| handler(&mut state, runner_id));
        drop(state);
        outcome.map_err(|error| gitea_status(error, auth_mode))
    }
}

/// Gitea's wire shape of an error (protocol.md §2.2, §6).
pub fn gitea_status(error: GiteaError, auth_mode: AuthMode) -> Status {
    match error {
        GiteaError::Plain(message) => Status::unknown(message),
        GiteaError::Grpc { code, message } => {
            if code == tonic::Code::Unauthenticated && auth_mode == AuthMode::Modern {
                return Status::unauthenticated(message);
            }
            Status::unknown(format!(
                "rpc error: code = {} desc = {message}",
                go_code_name(code)
            ))
        }
    }
}

/// grpc-go's `codes.Code.String()`.
fn go_code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "Canceled",
        tonic::Code::Unknown => "Unknown",
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::DeadlineExceeded => "DeadlineExceeded",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::AlreadyExists => "AlreadyExists",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::ResourceExhausted => "ResourceExhausted",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Aborted => "Aborted",
        tonic::Code::OutOfRange => "OutOfRange",
        tonic::Code::Unimplemented => "Unimplemented",
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::DataLoss => "DataLoss",
        tonic::Code::Unauthenticated => "Unauthenticated",
    }
}

#[tonic::async_trait]
impl RunnerService for FakeService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let request = request.into_inner();
        let registered = self.shared.lock_state().register(
            &request.name,
            &request.token,
            &request.version,
            request.labels,
            request.ephemeral,
            request.capabilities,
        );
        match registered {
            Ok(runner) => Ok(Response::new(RegisterResponse {
                runner: Some(runner),
            })),
            Err(error) => Err(self.to_status(error)),
        }
    }

    async fn declare(
        &self,
        request: Request<DeclareRequest>,
    ) -> Result<Response<DeclareResponse>, Status> {
        if self.shared.lock_state().declare_unimplemented {
            return Err(Status::unimplemented(
                "runner.v1.RunnerService.Declare is not implemented",
            ));
        }
        let (metadata, _, request) = request.into_parts();
        let runner = self.authenticated(&metadata, false, |state, runner_id| {
            state.declare(
                runner_id,
                &request.version,
                request.labels,
                request.capabilities,
            )
        })?;
        let mut response = Response::new(DeclareResponse {
            runner: Some(runner),
        });
        let capabilities = self.shared.lock_state().declare_capabilities.clone();
        if let Some(value) = capabilities.and_then(|text| text.parse().ok()) {
            response
                .metadata_mut()
                .insert("x-gitea-actions-capabilities", value);
        }
        Ok(response)
    }

    async fn fetch_task(
        &self,
        request: Request<FetchTaskRequest>,
    ) -> Result<Response<FetchTaskResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let response = self.authenticated(&metadata, false, |state, runner_id| {
            state.fetch_task(runner_id, request.tasks_version, Instant::now())
        })?;
        Ok(Response::new(response))
    }

    async fn update_task(
        &self,
        request: Request<UpdateTaskRequest>,
    ) -> Result<Response<UpdateTaskResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let response = self.authenticated(&metadata, true, |state, runner_id| {
            state.update_task(runner_id, request, Instant::now())
        })?;
        Ok(Response::new(response))
    }

    async fn update_log(
        &self,
        request: Request<UpdateLogRequest>,
    ) -> Result<Response<UpdateLogResponse>, Status> {
        let (metadata, extensions, request) = request.into_parts();
        let request = Request::from_parts(metadata, extensions, EncodedUpdateLog::from(request));
        self.update_log_encoded(request).await
    }
}

#[tonic::async_trait]
impl PingService for FakeService {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let data = request.into_inner().data;
        Ok(Response::new(PingResponse {
            data: format!("Hello, {data}!"),
        }))
    }
}
