//! The runner API: one trait ([`RunnerApi`]), two transports (Connect unary over HTTP/1.1, the
//! default; gRPC through tonic, opt-in with `runner.protocol: grpc`), and one error enum shaped
//! for the caller's decisions.
//! The only room that builds a URL or a protobuf message. Imports nothing of `daemon` or `executor`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), act_runner::client::ClientError> {
//! use std::time::Duration;
//! use act_runner::client::{Client, ClientSettings, Credentials, Protocol, RunnerApi};
//! use act_runner::client::proto::runner::FetchTaskRequest;
//!
//! let client = Client::new(ClientSettings {
//!     instance: "https://gitea.example.com/".into(),
//!     protocol: Protocol::Connect,
//!     insecure: false,
//!     timeout: Duration::from_secs(60),
//!     credentials: Some(Credentials { uuid: "…".into(), token: "…".into() }),
//! })?
//! .with_fetch_timeout(Duration::from_secs(5));
//! let reply = client.fetch_task(FetchTaskRequest { tasks_version: 0 }).await?;
//! # let _ = reply; Ok(()) }
//! ```

mod connect;
mod grpc;
pub mod proto;
mod settings;
mod status;
pub mod step_summary;
mod update_log;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use proto::ping::{PingRequest, PingResponse};
use proto::runner::{
    DeclareRequest, DeclareResponse, FetchTaskRequest, FetchTaskResponse, RegisterRequest,
    RegisterResponse, UpdateLogResponse, UpdateTaskRequest, UpdateTaskResponse,
};

pub use settings::{ClientSettings, Credentials, Protocol};
pub use update_log::{EncodedUpdateLog, RowBuffer, UpdateLogBuilder, append_rows, frame};

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
    ) -> impl Future<Output = Result<Declared, ClientError>> + Send;
    fn fetch_task(
        &self,
        request: FetchTaskRequest,
    ) -> impl Future<Output = Result<FetchTaskResponse, ClientError>> + Send;
    fn update_task(
        &self,
        request: UpdateTaskRequest,
    ) -> impl Future<Output = Result<UpdateTaskResponse, ClientError>> + Send;
    /// Rows go pre-encoded ([`EncodedUpdateLog`]); `EncodedUpdateLog::from(UpdateLogRequest)`
    /// makes one from the generated message.
    fn update_log(
        &self,
        request: EncodedUpdateLog,
    ) -> impl Future<Output = Result<UpdateLogResponse, ClientError>> + Send;
}

/// Declare's answer: the message, and what the server announced in the
/// `X-Gitea-Actions-Capabilities` response header (trimmed; empty when absent, as before Gitea
/// 1.26). Jobs see the capabilities as `GITEA_ACTIONS_CAPABILITIES`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared {
    pub response: DeclareResponse,
    pub capabilities: String,
}

/// The response header of Declare that lists the server's capabilities (e.g. `job-summary`).
pub const CAPABILITIES_HEADER: &str = "x-gitea-actions-capabilities";

/// A decoded answer and the one response header the runner reads.
struct Reply<Resp> {
    message: Resp,
    capabilities: String,
}

/// The header's value as upstream stores it: trimmed, empty when absent or not text.
fn capabilities_text(value: Option<&str>) -> String {
    value.map(str::trim).unwrap_or_default().to_owned()
}

/// The most a FetchTask reply may take, decompressed.
pub const MAX_FETCH_TASK_REPLY_BYTES: usize = 64 * 1024 * 1024;
/// The most any other reply (or any error body) may take, decompressed.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// The RPC a [`ClientError`] came from; also the `method` label of `act_runner_client_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Ping,
    Register,
    Declare,
    FetchTask,
    UpdateTask,
    UpdateLog,
}

impl Method {
    /// Every RPC, in the order of the service definitions.
    pub const ALL: [Method; 6] = [
        Method::Ping,
        Method::Register,
        Method::Declare,
        Method::FetchTask,
        Method::UpdateTask,
        Method::UpdateLog,
    ];

    /// The RPC's name as in the proto service (`FetchTask`); stable, usable as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Ping => "Ping",
            Method::Register => "Register",
            Method::Declare => "Declare",
            Method::FetchTask => "FetchTask",
            Method::UpdateTask => "UpdateTask",
            Method::UpdateLog => "UpdateLog",
        }
    }

    /// The procedure path relative to `{instance}/api/actions`, e.g.
    /// `/runner.v1.RunnerService/FetchTask`.
    pub fn path(self) -> &'static str {
        match self {
            Method::Ping => "/ping.v1.PingService/Ping",
            Method::Register => "/runner.v1.RunnerService/Register",
            Method::Declare => "/runner.v1.RunnerService/Declare",
            Method::FetchTask => "/runner.v1.RunnerService/FetchTask",
            Method::UpdateTask => "/runner.v1.RunnerService/UpdateTask",
            Method::UpdateLog => "/runner.v1.RunnerService/UpdateLog",
        }
    }

    /// The inverse of [`Method::path`].
    pub fn from_path(path: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|method| method.path() == path)
    }

    /// The most bytes a reply to the RPC may take once decompressed: a task carries a workflow
    /// and its context, every other reply is small. A larger reply is refused, not read.
    pub fn max_reply_bytes(self) -> usize {
        match self {
            Method::FetchTask => MAX_FETCH_TASK_REPLY_BYTES,
            _ => MAX_REPLY_BYTES,
        }
    }

    /// Whether the RPC carries the runner's `x-runner-uuid` / `x-runner-token` headers.
    pub fn is_authenticated(self) -> bool {
        !matches!(self, Method::Ping | Method::Register)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong with an RPC, shaped for the caller's decision (never string-matched).
/// Every variant names the RPC and the server URL it was sent to; none carries a token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The runner is unknown, its token is wrong, or (ephemeral) it has been consumed; both of
    /// Gitea's shapes (HTTP 500 `rpc error: code = Unauthenticated …`, and a real
    /// `unauthenticated`). Stop polling: exit 77, or exit 0 for an ephemeral runner.
    #[error("{method} {url}: unauthenticated: {message}")]
    Unauthenticated {
        method: Method,
        url: String,
        message: String,
    },
    /// The server or a proxy said "try later" (503, or a non-JSON 429/502/504). Back off and retry.
    #[error("{method} {url}: unavailable: {message}")]
    Unavailable {
        method: Method,
        url: String,
        message: String,
    },
    /// The call did not finish within its timeout (for FetchTask: "no task").
    #[error("{method} {url}: deadline exceeded after {timeout:?}")]
    DeadlineExceeded {
        method: Method,
        url: String,
        timeout: Duration,
    },
    /// Connection refused, reset or dropped, DNS or TLS failure: the request may not have arrived.
    #[error("{method} {url}: transport error: {message}")]
    Transport {
        method: Method,
        url: String,
        message: String,
    },
    /// The server does not know the RPC (Gitea < 1.21 for Declare) or the URL is not a Gitea
    /// (plain 404). Fatal: upgrade the server or fix the instance URL.
    #[error("{method} {url}: unimplemented: {message}")]
    Unimplemented {
        method: Method,
        url: String,
        message: String,
    },
    /// UpdateLog: the server finalized the task's log (reaped or cancelled). Stop sending logs
    /// for this task; do not retry.
    #[error("{method} {url}: log already archived: {message}")]
    LogArchived {
        method: Method,
        url: String,
        message: String,
    },
    /// UpdateTask / UpdateLog: the task does not exist on the server or is assigned to another
    /// runner (Gitea's `invalid runner for task`, `… not exist`). Nothing about this task will
    /// ever be accepted: abandon it locally, do not retry.
    #[error("{method} {url}: the task is not this runner's: {message}")]
    TaskNotOwned {
        method: Method,
        url: String,
        message: String,
    },
    /// Any other error the server answered with (`code` as Connect names it after unwrapping
    /// Gitea's `rpc error: code = … desc = …` quirk, e.g. `internal`, `unknown`).
    #[error("{method} {url}: {code}: {message}")]
    Server {
        method: Method,
        url: String,
        code: String,
        message: String,
    },
    /// The answer was not a valid message.
    #[error("{method} {url}: cannot decode the response: {message}")]
    Decode {
        method: Method,
        url: String,
        message: String,
    },
    /// The settings cannot make a client (bad instance URL, a credential that is not a valid
    /// header value, TLS setup). Fatal: fix the configuration.
    #[error("invalid client settings for {url}: {message}")]
    InvalidSettings { url: String, message: String },
}

impl ClientError {
    /// The RPC the error came from, if it came from one.
    pub fn method(&self) -> Option<Method> {
        match self {
            ClientError::Unauthenticated { method, .. }
            | ClientError::Unavailable { method, .. }
            | ClientError::DeadlineExceeded { method, .. }
            | ClientError::Transport { method, .. }
            | ClientError::Unimplemented { method, .. }
            | ClientError::LogArchived { method, .. }
            | ClientError::TaskNotOwned { method, .. }
            | ClientError::Server { method, .. }
            | ClientError::Decode { method, .. } => Some(*method),
            ClientError::InvalidSettings { .. } => None,
        }
    }

    /// Whether retrying the same call later can succeed (unavailable, deadline, transport,
    /// and server errors other than the fatal ones).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Unavailable { .. }
                | ClientError::DeadlineExceeded { .. }
                | ClientError::Transport { .. }
                | ClientError::Server { .. }
        )
    }
}

/// A runner API client over the transport its [`ClientSettings`] chose.
///
/// Cheap to clone (connection pools are shared). Every call is bounded by
/// `ClientSettings::timeout`, FetchTask by [`Client::with_fetch_timeout`] when set.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
    call: CallSettings,
}

/// Per-call settings shared by both transports.
#[derive(Debug, Clone)]
struct CallSettings {
    timeout: Duration,
    fetch_timeout: Option<Duration>,
    credentials: Option<Credentials>,
}

impl CallSettings {
    fn timeout_for(&self, method: Method) -> Duration {
        match (method, self.fetch_timeout) {
            (Method::FetchTask, Some(fetch_timeout)) => fetch_timeout,
            _ => self.timeout,
        }
    }

    /// The credentials to send with `method`, if it is authenticated and we have some.
    fn credentials_for(&self, method: Method) -> Option<&Credentials> {
        self.credentials
            .as_ref()
            .filter(|_| method.is_authenticated())
    }
}

#[derive(Debug, Clone)]
enum Transport {
    Connect(connect::ConnectTransport),
    Grpc(Box<grpc::GrpcTransport>),
}

impl Client {
    /// Builds a client; no connection is made until the first call.
    pub fn new(settings: ClientSettings) -> Result<Client, ClientError> {
        let transport = match settings.protocol {
            Protocol::Connect => Transport::Connect(connect::ConnectTransport::new(&settings)?),
            Protocol::Grpc => Transport::Grpc(Box::new(grpc::GrpcTransport::new(&settings)?)),
        };
        Ok(Client {
            transport,
            call: CallSettings {
                timeout: settings.timeout,
                fetch_timeout: None,
                credentials: settings.credentials,
            },
        })
    }

    /// The same client, authenticating as the runner (after Register).
    pub fn with_credentials(mut self, credentials: Credentials) -> Client {
        self.call.credentials = Some(credentials);
        self
    }

    /// The same client, bounding FetchTask by `fetch_timeout` (upstream `runner.fetch_timeout`,
    /// default 5 s) instead of the general timeout. A FetchTask deadline means "no task".
    pub fn with_fetch_timeout(mut self, fetch_timeout: Duration) -> Client {
        self.call.fetch_timeout = Some(fetch_timeout);
        self
    }

    /// The base URL every procedure path is appended to: `{instance}/api/actions`.
    pub fn base_url(&self) -> &str {
        match &self.transport {
            Transport::Connect(connect) => connect.base_url(),
            Transport::Grpc(grpc) => grpc.base_url(),
        }
    }

    async fn call<Req, Resp>(&self, method: Method, request: Req) -> Result<Resp, ClientError>
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        Ok(self.call_reply(method, request).await?.message)
    }

    async fn call_reply<Req, Resp>(
        &self,
        method: Method,
        request: Req,
    ) -> Result<Reply<Resp>, ClientError>
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        match &self.transport {
            Transport::Connect(connect) => connect.call(method, &request, &self.call).await,
            Transport::Grpc(grpc) => grpc.call(method, request, &self.call).await,
        }
    }
}

impl RunnerApi for Client {
    async fn ping(&self, request: PingRequest) -> Result<PingResponse, ClientError> {
        self.call(Method::Ping, request).await
    }

    async fn register(&self, request: RegisterRequest) -> Result<RegisterResponse, ClientError> {
        self.call(Method::Register, request).await
    }

    async fn declare(&self, request: DeclareRequest) -> Result<Declared, ClientError> {
        let reply = self.call_reply(Method::Declare, request).await?;
        Ok(Declared {
            response: reply.message,
            capabilities: reply.capabilities,
        })
    }

    async fn fetch_task(
        &self,
        request: FetchTaskRequest,
    ) -> Result<FetchTaskResponse, ClientError> {
        self.call(Method::FetchTask, request).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskRequest,
    ) -> Result<UpdateTaskResponse, ClientError> {
        self.call(Method::UpdateTask, request).await
    }

    async fn update_log(
        &self,
        request: EncodedUpdateLog,
    ) -> Result<UpdateLogResponse, ClientError> {
        let method = Method::UpdateLog;
        let reply = match &self.transport {
            // The request is its encoding already: the body goes out without a copy.
            Transport::Connect(connect) => {
                connect
                    .send(method, request.into_body(), &self.call)
                    .await?
            }
            Transport::Grpc(grpc) => grpc.call(method, request, &self.call).await?,
        };
        Ok(reply.message)
    }
}
