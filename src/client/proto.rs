//! The generated protobuf messages, tonic clients and server traits of `runner.v1` and `ping.v1`.
//! Proto types stop at `daemon::task`; the executor never sees them.

/// Package `runner.v1`: the runner service.
pub mod runner {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("runner.v1");
}

/// Package `ping.v1`: the unauthenticated liveness check.
pub mod ping {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("ping.v1");
}
