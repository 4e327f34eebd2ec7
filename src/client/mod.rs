//! The runner API: one trait ([`RunnerApi`]), two transports (Connect unary over HTTP/1.1, the
//! default; gRPC through tonic, opt-in with `runner.protocol: grpc`).
//! The only room that builds a URL or a protobuf message. Imports nothing of `daemon` or `executor`.

pub mod proto;

use std::future::Future;

use proto::ping::{PingRequest, PingResponse};
use proto::runner::{
    DeclareRequest, DeclareResponse, FetchTaskRequest, FetchTaskResponse, RegisterRequest,
    RegisterResponse, UpdateLogRequest, UpdateLogResponse, UpdateTaskRequest, UpdateTaskResponse,
};

/// The six RPCs a runner makes. Every call is bounded by a timeout.
pub trait RunnerApi: Send + Sync {
    fn ping(
        &self,
        request: PingRequest,
    ) -> impl Future<Output = Result<PingResponse, ClientError>> + Send;
    fn register(
        &self,
        request: RegisterRequest,
    ) -> impl Future<Output = Result<RegisterResponse, ClientError>> + Send;
    fn declare(
        &self,
        request: DeclareRequest,
    ) -> impl Future<Output = Result<DeclareResponse, ClientError>> + Send;
    fn fetch_task(
        &self,
        request: FetchTaskRequest,
    ) -> impl Future<Output = Result<FetchTaskResponse, ClientError>> + Send;
    fn update_task(
        &self,
        request: UpdateTaskRequest,
    ) -> impl Future<Output = Result<UpdateTaskResponse, ClientError>> + Send;
    fn update_log(
        &self,
        request: UpdateLogRequest,
    ) -> impl Future<Output = Result<UpdateLogResponse, ClientError>> + Send;
}

/// The RPC a [`ClientError`] came from; also the `method` label of `act_runner_client_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Ping,
    Register,
    Declare,
    FetchTask,
    UpdateTask,
    UpdateLog,
}

/// What went wrong with an RPC, shaped for the caller's decision (never string-matched).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The runner is unknown or its token is wrong (both of Gitea's shapes). Stop with exit 77.
    #[error("{method:?}: unauthenticated: {message}")]
    Unauthenticated { method: Method, message: String },
    /// The server or a proxy said "try later". Back off and retry.
    #[error("{method:?}: unavailable: {message}")]
    Unavailable { method: Method, message: String },
    /// The call did not finish within its timeout.
    #[error("{method:?}: deadline exceeded")]
    DeadlineExceeded { method: Method },
    /// Connection refused, reset, TLS failure, ...
    #[error("{method:?}: transport error: {message}")]
    Transport { method: Method, message: String },
    /// Any other error the server answered with (`code` as Connect names it, e.g. `unknown`).
    #[error("{method:?}: {code}: {message}")]
    Server {
        method: Method,
        code: String,
        message: String,
    },
    /// The answer was not a valid message.
    #[error("{method:?}: cannot decode the response: {message}")]
    Decode { method: Method, message: String },
}
