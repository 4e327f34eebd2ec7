//! Error mapping shared by both transports: Connect codes from HTTP statuses (connect-go's
//! `httpToCode`), gRPC codes to Connect names, Gitea's `rpc error: code = … desc = …` quirk,
//! and the final choice of [`ClientError`] variant.

use std::time::Duration;

use super::{ClientError, Method};

/// The Connect code connect-go's client assumes when an error body is not Connect JSON.
pub(super) fn code_from_http_status(status: u16) -> &'static str {
    match status {
        400 => "internal",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "unimplemented",
        429 | 502 | 503 | 504 => "unavailable",
        _ => "unknown",
    }
}

/// The Connect spelling of a gRPC code (`DeadlineExceeded` → `deadline_exceeded`).
pub(super) fn code_from_grpc(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "ok",
        tonic::Code::Cancelled => "canceled",
        tonic::Code::Unknown => "unknown",
        tonic::Code::InvalidArgument => "invalid_argument",
        tonic::Code::DeadlineExceeded => "deadline_exceeded",
        tonic::Code::NotFound => "not_found",
        tonic::Code::AlreadyExists => "already_exists",
        tonic::Code::PermissionDenied => "permission_denied",
        tonic::Code::ResourceExhausted => "resource_exhausted",
        tonic::Code::FailedPrecondition => "failed_precondition",
        tonic::Code::Aborted => "aborted",
        tonic::Code::OutOfRange => "out_of_range",
        tonic::Code::Unimplemented => "unimplemented",
        tonic::Code::Internal => "internal",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DataLoss => "data_loss",
        tonic::Code::Unauthenticated => "unauthenticated",
    }
}

/// Gitea returns grpc-go status errors through connect-go, which does not recognise them: the
/// wire says `unknown` and the message is `rpc error: code = Unauthenticated desc = …`.
/// Returns the embedded code in Connect spelling and the description, if the message has that form.
fn unwrap_gitea_quirk(message: &str) -> Option<(String, &str)> {
    const MARKER: &str = "rpc error: code = ";
    let start = message.find(MARKER)? + MARKER.len();
    let rest = &message[start..];
    let (go_code, desc) = rest.split_once(" desc = ")?;
    if go_code.is_empty() || !go_code.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some((snake_case(go_code), desc))
}

fn snake_case(camel: &str) -> String {
    let mut snake = String::with_capacity(camel.len() + 4);
    for (idx, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && idx > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

/// Picks the variant for an error the server (or a proxy) answered with.
pub(super) fn classify(
    method: Method,
    url: &str,
    timeout: Duration,
    wire_code: &str,
    message: String,
) -> ClientError {
    let (code, desc) = match unwrap_gitea_quirk(&message) {
        Some((code, desc)) => (code, desc.to_owned()),
        None => (wire_code.to_owned(), message.clone()),
    };
    let url = url.to_owned();
    match code.as_str() {
        "unauthenticated" => ClientError::Unauthenticated {
            method,
            url,
            message,
        },
        // An ephemeral runner after its task: the runner row is gone.
        _ if desc.contains("runner has been removed") => ClientError::Unauthenticated {
            method,
            url,
            message,
        },
        "unavailable" | "resource_exhausted" => ClientError::Unavailable {
            method,
            url,
            message,
        },
        "deadline_exceeded" => ClientError::DeadlineExceeded {
            method,
            url,
            timeout,
        },
        "unimplemented" => ClientError::Unimplemented {
            method,
            url,
            message,
        },
        _ if desc.contains("log file has been archived") => ClientError::LogArchived {
            method,
            url,
            message,
        },
        _ if is_task_not_owned(method, &desc) => ClientError::TaskNotOwned {
            method,
            url,
            message,
        },
        _ => ClientError::Server {
            method,
            url,
            code,
            message,
        },
    }
}

/// Gitea's wording when a task is unknown or another runner's (protocol spec §6): UpdateTask
/// answers `update task: invalid runner for task` or `update task: … not exist`, UpdateLog
/// `invalid runner for task` or `get task: task with id N: … not exist`. A `get task:` that wraps
/// a database error is not in this set: that one is worth a retry.
fn is_task_not_owned(method: Method, desc: &str) -> bool {
    matches!(method, Method::UpdateTask | Method::UpdateLog)
        && (desc.contains("invalid runner for task") || desc.contains("not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(wire_code: &str, message: &str, expect: &str) {
        let error = classify(
            Method::FetchTask,
            "http://gitea/api/actions/runner.v1.RunnerService/FetchTask",
            Duration::from_secs(5),
            wire_code,
            message.to_owned(),
        );
        let got = match &error {
            ClientError::Server { code, .. } => format!("Server({code})"),
            other => format!("{other:?}")
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned(),
        };
        assert_eq!(got, expect, "{error}");
    }

    #[test]
    fn gitea_legacy_unauthenticated_inside_unknown_is_unauthenticated() {
        check(
            "unknown",
            "rpc error: code = Unauthenticated desc = unregistered runner",
            "Unauthenticated",
        );
    }

    #[test]
    fn real_unauthenticated_code_is_unauthenticated() {
        check("unauthenticated", "unregistered runner", "Unauthenticated");
    }

    #[test]
    fn removed_ephemeral_runner_is_unauthenticated() {
        check(
            "unknown",
            "rpc error: code = Internal desc = pick task: runner has been removed",
            "Unauthenticated",
        );
    }

    #[test]
    fn archived_log_has_its_own_variant() {
        check(
            "unknown",
            "rpc error: code = AlreadyExists desc = log file has been archived",
            "LogArchived",
        );
    }

    #[test]
    fn internal_inside_unknown_is_a_server_error_with_the_inner_code() {
        check(
            "unknown",
            "rpc error: code = Internal desc = update task: load job",
            "Server(internal)",
        );
        check(
            "unknown",
            "runner registration token not found",
            "Server(unknown)",
        );
    }

    #[track_caller]
    fn check_task_rpc(method: Method, wire_code: &str, message: &str, expect: &str) {
        let error = classify(
            method,
            "http://gitea/api/actions",
            Duration::from_secs(5),
            wire_code,
            message.to_owned(),
        );
        let got = format!("{error:?}");
        assert!(got.starts_with(expect), "{method} {message:?}: {got}");
    }

    #[test]
    fn a_task_not_this_runners_has_its_own_variant_for_task_rpcs_only() {
        for method in [Method::UpdateTask, Method::UpdateLog] {
            for message in [
                "rpc error: code = Internal desc = update task: invalid runner for task",
                "rpc error: code = Internal desc = invalid runner for task",
                "rpc error: code = Internal desc = update task: resource does not exist",
                "rpc error: code = Internal desc = get task: task with id 7: resource does not exist",
            ] {
                check_task_rpc(method, "unknown", message, "TaskNotOwned");
            }
            // gRPC: the real code, the bare description.
            check_task_rpc(
                method,
                "internal",
                "invalid runner for task",
                "TaskNotOwned",
            );
            // A database error behind `get task:` is worth a retry.
            check_task_rpc(
                method,
                "unknown",
                "rpc error: code = Internal desc = get task: dial tcp: connection refused",
                "Server",
            );
        }
        check_task_rpc(
            Method::FetchTask,
            "unknown",
            "rpc error: code = Internal desc = get runner: not exist",
            "Server",
        );
    }

    #[test]
    fn http_fallback_follows_connect_go() {
        assert_eq!(code_from_http_status(502), "unavailable");
        assert_eq!(code_from_http_status(429), "unavailable");
        assert_eq!(code_from_http_status(504), "unavailable");
        assert_eq!(code_from_http_status(404), "unimplemented");
        assert_eq!(code_from_http_status(401), "unauthenticated");
        assert_eq!(code_from_http_status(500), "unknown");
        check("unavailable", "HTTP 502", "Unavailable");
        check("unimplemented", "HTTP 404", "Unimplemented");
    }

    #[test]
    fn deadline_and_unavailable_codes_map_to_their_variants() {
        check("deadline_exceeded", "too slow", "DeadlineExceeded");
        check("unavailable", "try later", "Unavailable");
        check("resource_exhausted", "slow down", "Unavailable");
        check(
            "unknown",
            "rpc error: code = Unavailable desc = db down",
            "Unavailable",
        );
    }
}
