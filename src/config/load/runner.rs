//! Reading the `log:` and `runner:` sections, with upstream's defaults and clamps.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{off_when_non_positive, positive_or};
use crate::config::dotenv::parse_dotenv;
use crate::config::labels::{Label, LabelError};
use crate::config::model::*;
use crate::config::reader::{Fields, Reader};
use crate::config::small_file;

pub(super) fn read_log(reader: &mut Reader<'_>, top: &mut Fields<'_>) -> LogConfig {
    let mut fields = reader.section(top, "log");
    let level = match reader.non_empty_string(&mut fields, "level") {
        None => LogLevel::Info,
        Some(text) => match text.value.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "fatal" => LogLevel::Fatal,
            "panic" => LogLevel::Panic,
            other => {
                reader.problem(
                    &text.path,
                    text.position,
                    format!("unknown level {other:?} (expected trace, debug, info, warn, error, fatal or panic)"),
                );
                LogLevel::Info
            }
        },
    };
    let journald = reader.bool(&mut fields, "journald").unwrap_or(false);
    let mut job_fields = reader.section(&mut fields, "job");
    let job = JobLogConfig {
        dir: reader
            .non_empty_string(&mut job_fields, "dir")
            .map(|dir| PathBuf::from(dir.value)),
        retention: off_when_non_positive(
            reader.duration(&mut job_fields, "retention"),
            Duration::from_secs(168 * 3600),
        ),
        max_size: match reader.size(&mut job_fields, "max_size") {
            None => Some(1 << 30),
            Some(size) => Some(size.value).filter(|bytes| *bytes > 0),
        },
    };
    reader.finish(job_fields);
    reader.finish(fields);
    LogConfig {
        level,
        job,
        journald,
    }
}

pub(super) fn read_runner(reader: &mut Reader<'_>, top: &mut Fields<'_>) -> RunnerConfig {
    let mut fields = reader.section(top, "runner");
    let file = match reader.non_empty_string(&mut fields, "file") {
        None => PathBuf::from(".runner"),
        // No system call takes such a path: refused here rather than failing at the first read.
        Some(file) if file.value.contains('\0') => {
            reader.problem(
                &file.path,
                file.position,
                "a path cannot contain a NUL byte",
            );
            PathBuf::from(".runner")
        }
        Some(file) => PathBuf::from(file.value),
    };
    let capacity = reader
        .int(&mut fields, "capacity", i64::MIN.into(), i64::MAX.into())
        .and_then(|capacity| usize::try_from(capacity.value).ok())
        .filter(|capacity| *capacity > 0)
        .unwrap_or(1);
    let mut envs = reader.string_map(&mut fields, "envs");
    let env_file_at = reader.non_empty_string(&mut fields, "env_file");
    if let Some(env_file) = &env_file_at {
        let path = Path::new(&env_file.value);
        // Upstream ignores a missing file (and a directory) silently; a parse error is fatal.
        if path.is_file() {
            match small_file::read_to_string(path) {
                Ok(text) => match parse_dotenv(&text) {
                    Ok(vars) => envs.extend(vars),
                    Err(error) => reader.problem(
                        &env_file.path,
                        env_file.position,
                        format!("cannot parse {}: {error}", path.display()),
                    ),
                },
                Err(error) => reader.problem(
                    &env_file.path,
                    env_file.position,
                    format!("cannot read {}: {error}", path.display()),
                ),
            }
        }
    }
    let timeout = positive_or(
        reader.duration(&mut fields, "timeout"),
        Duration::from_secs(3 * 3600),
    );
    let shutdown_timeout = positive_or(
        reader.duration(&mut fields, "shutdown_timeout"),
        Duration::ZERO,
    );
    let insecure = reader.bool(&mut fields, "insecure").unwrap_or(false);
    let fetch_timeout_at = reader.duration(&mut fields, "fetch_timeout");
    let mut fetch_timeout = positive_or(fetch_timeout_at.clone(), Duration::from_secs(5));
    if fetch_timeout > REQUEST_TIMEOUT {
        if let Some(at) = &fetch_timeout_at {
            reader.warn(
                &at.path,
                at.position,
                format!("{} is above the RPC timeout, capped at 60s", at.value),
            );
        }
        fetch_timeout = REQUEST_TIMEOUT;
    }
    let fetch_interval = positive_or(
        reader.duration(&mut fields, "fetch_interval"),
        Duration::from_secs(2),
    );
    let fetch_interval_max_at = reader.duration(&mut fields, "fetch_interval_max");
    let mut fetch_interval_max = positive_or(fetch_interval_max_at.clone(), Duration::from_secs(5));
    if fetch_interval_max < fetch_interval {
        if let Some(at) = &fetch_interval_max_at {
            reader.warn(
                &at.path,
                at.position,
                "lower than runner.fetch_interval, raised to it",
            );
        }
        fetch_interval_max = fetch_interval;
    }
    let workdir_cleanup_age = off_when_non_positive(
        reader.duration(&mut fields, "workdir_cleanup_age"),
        Duration::from_secs(24 * 3600),
    );
    let idle_cleanup_interval = off_when_non_positive(
        reader.duration(&mut fields, "idle_cleanup_interval"),
        Duration::from_secs(10 * 60),
    );
    let log_report_interval = positive_or(
        reader.duration(&mut fields, "log_report_interval"),
        Duration::from_secs(5),
    );
    let max_latency_at = reader.duration(&mut fields, "log_report_max_latency");
    let log_report_max_latency = positive_or(max_latency_at.clone(), Duration::from_secs(3));
    if let Some(at) = max_latency_at
        .as_ref()
        .filter(|_| log_report_max_latency >= log_report_interval)
    {
        reader.warn(
            &at.path,
            at.position,
            "not below runner.log_report_interval, so the periodic flush comes first",
        );
    }

    let log_report_batch_size = reader
        .int(
            &mut fields,
            "log_report_batch_size",
            i64::MIN.into(),
            i64::MAX.into(),
        )
        .and_then(|size| usize::try_from(size.value).ok())
        .filter(|size| *size > 0)
        .unwrap_or(100);
    let state_report_interval = positive_or(
        reader.duration(&mut fields, "state_report_interval"),
        Duration::from_secs(5),
    );
    let report_close_timeout = positive_or(
        reader.duration(&mut fields, "report_close_timeout"),
        Duration::from_secs(10),
    );
    let mut labels = Vec::new();
    for text in reader.strings(&mut fields, "labels") {
        match Label::parse(&text.value) {
            Ok(label) => labels.push(label),
            Err(error @ LabelError::Empty) => reader.warn(
                &text.path,
                text.position,
                format!("{error}, it will be skipped"),
            ),
            Err(error) => reader.problem(
                &text.path,
                text.position,
                format!("{:?}: {error}", text.value),
            ),
        }
    }
    let github_mirror = reader
        .non_empty_string(&mut fields, "github_mirror")
        .map(|mirror| mirror.value);
    let action_shallow_clone = reader
        .bool(&mut fields, "action_shallow_clone")
        .unwrap_or(true);
    let set_act_env = reader.bool(&mut fields, "set_act_env").unwrap_or(true);
    let patch_actions = reader.bool(&mut fields, "patch_actions").unwrap_or(true);
    let allocate_pty = reader.bool(&mut fields, "allocate_pty").unwrap_or(false);
    let default_image = reader
        .non_empty_string(&mut fields, "default_image")
        .map_or_else(|| DEFAULT_IMAGE.to_owned(), |image| image.value);
    let tool_cache_mode_at = reader.non_empty_string(&mut fields, "tool_cache_mode");
    let tool_cache_mode = match tool_cache_mode_at.as_ref().map(|mode| mode.value.as_str()) {
        None | Some("none") => ToolCacheMode::None,
        Some("shared") => ToolCacheMode::Shared,
        Some(other) => {
            let at = tool_cache_mode_at
                .as_ref()
                .map_or_else(Default::default, |at| at.position);
            reader.problem(
                "runner.tool_cache_mode",
                at,
                format!("unknown mode {other:?} (expected none or shared)"),
            );
            ToolCacheMode::None
        }
    };
    let shared_and_concurrent = tool_cache_mode == ToolCacheMode::Shared && capacity > 1;
    if let Some(at) = tool_cache_mode_at
        .as_ref()
        .filter(|_| shared_and_concurrent)
    {
        reader.warn(
            &at.path,
            at.position,
            "a shared tool cache with capacity > 1 lets concurrent jobs race on it",
        );
    }

    let post_task_script = reader
        .non_empty_string(&mut fields, "post_task_script")
        .map(|script| PathBuf::from(script.value));
    let post_task_script_timeout = positive_or(
        reader.duration(&mut fields, "post_task_script_timeout"),
        DEFAULT_POST_TASK_SCRIPT_TIMEOUT,
    );
    let mut hook_fields = reader.section(&mut fields, "hooks");
    let hooks = HooksConfig {
        job_started: reader
            .non_empty_string(&mut hook_fields, "job_started")
            .map(|hook| hook.value),
        job_completed: reader
            .non_empty_string(&mut hook_fields, "job_completed")
            .map(|hook| hook.value),
    };
    reader.finish(hook_fields);
    let protocol = match reader.non_empty_string(&mut fields, "protocol") {
        None => RpcProtocol::Connect,
        Some(text) => match text.value.as_str() {
            "connect" => RpcProtocol::Connect,
            "grpc" => RpcProtocol::Grpc,
            other => {
                reader.problem(
                    &text.path,
                    text.position,
                    format!("unknown protocol {other:?} (expected connect or grpc)"),
                );
                RpcProtocol::Connect
            }
        },
    };
    reader.finish(fields);
    RunnerConfig {
        file,
        capacity,
        envs,
        env_file: env_file_at.map(|file| PathBuf::from(file.value)),
        timeout,
        shutdown_timeout,
        insecure,
        fetch_timeout,
        fetch_interval,
        fetch_interval_max,
        workdir_cleanup_age,
        idle_cleanup_interval,
        log_report_interval,
        log_report_max_latency,
        log_report_batch_size,
        state_report_interval,
        report_close_timeout,
        labels,
        github_mirror,
        action_shallow_clone,
        set_act_env,
        patch_actions,
        allocate_pty,
        default_image,
        tool_cache_mode,
        post_task_script,
        post_task_script_timeout,
        hooks,
        protocol,
    }
}
