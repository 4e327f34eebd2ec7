//! What a [`Client`](super::Client) is built from: instance URL, transport, TLS leniency,
//! timeout and the runner's credentials (whose token never prints).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Everything needed to build a [`Client`](super::Client).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The Gitea instance URL as configured, sub-path included (`https://host/gitea/`);
    /// trailing `/` are trimmed.
    pub instance: String,
    /// Which transport speaks to it.
    pub protocol: Protocol,
    /// Accept invalid TLS certificates (`runner.insecure`); only matters for `https://`.
    pub insecure: bool,
    /// Bound of every call (upstream's HTTP client timeout, 60 s by default).
    pub timeout: Duration,
    /// The runner's identity; `None` before Register.
    pub credentials: Option<Credentials>,
}

/// The wire transport (`runner.protocol` in config.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Connect unary over HTTP/1.1 (HTTP/2 via ALPN on https): what stock Gitea and every
    /// reverse proxy accept. The default.
    #[default]
    Connect,
    /// gRPC through tonic: Gitea terminating TLS itself, Gitea ≥ 1.26 over h2c, or a proxy that
    /// forwards gRPC end to end.
    Grpc,
}

impl Protocol {
    /// The config spelling, `connect` or `grpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Connect => "connect",
            Protocol::Grpc => "grpc",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Protocol`] from text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown protocol `{0}`, expected `connect` or `grpc`")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(text: &str) -> Result<Protocol, UnknownProtocol> {
        match text {
            "connect" => Ok(Protocol::Connect),
            "grpc" => Ok(Protocol::Grpc),
            other => Err(UnknownProtocol(other.to_owned())),
        }
    }
}

/// The runner's identity as minted by Register: sent as `x-runner-uuid` / `x-runner-token`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uuid: String,
    /// The runner token (40 hex characters). Never printed.
    pub token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("uuid", &self.uuid)
            .field("token", &"***")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_hides_the_token() {
        let credentials = Credentials {
            uuid: "u-1".into(),
            token: "0123456789abcdef".into(),
        };
        let settings = ClientSettings {
            instance: "http://x".into(),
            protocol: Protocol::Connect,
            insecure: false,
            timeout: Duration::from_secs(1),
            credentials: Some(credentials.clone()),
        };
        for printed in [format!("{credentials:?}"), format!("{settings:?}")] {
            assert!(printed.contains("u-1"), "{printed}");
            assert!(!printed.contains("0123456789abcdef"), "{printed}");
        }
    }

    #[test]
    fn protocol_parses_its_config_spelling() {
        assert_eq!("connect".parse::<Protocol>().unwrap(), Protocol::Connect);
        assert_eq!("grpc".parse::<Protocol>().unwrap(), Protocol::Grpc);
        assert!("http".parse::<Protocol>().is_err());
        assert_eq!(Protocol::default(), Protocol::Connect);
    }
}
