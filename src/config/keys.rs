//! Every key of `config.yaml` with the shape of its value, and the walk of a dotted key path
//! (`runner.labels`, `runner.envs.NAME`) through them. The `config get|set|add|remove` commands
//! use it to refuse an unknown key before touching the file; the loader stays the judge of
//! values.

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Free text (paths, images, addresses, and enumerations the loader checks).
    String,
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Int,
    /// A Go duration (`30s`, `1h30m`).
    Duration,
    /// A byte size (`512MB`, `10GB`, a byte count).
    Size,
    /// A list of strings.
    List,
    /// A mapping of user-chosen names to strings (`runner.envs`).
    Map,
}

/// Every key, in the order of `config.example.yaml`.
pub const KEYS: &[(&str, KeyKind)] = &[
    ("log.level", KeyKind::String),
    ("log.journald", KeyKind::Bool),
    ("log.job.dir", KeyKind::String),
    ("log.job.retention", KeyKind::Duration),
    ("log.job.max_size", KeyKind::Size),
    ("runner.file", KeyKind::String),
    ("runner.capacity", KeyKind::Int),
    ("runner.envs", KeyKind::Map),
    ("runner.env_file", KeyKind::String),
    ("runner.timeout", KeyKind::Duration),
    ("runner.shutdown_timeout", KeyKind::Duration),
    ("runner.insecure", KeyKind::Bool),
    ("runner.fetch_timeout", KeyKind::Duration),
    ("runner.fetch_interval", KeyKind::Duration),
    ("runner.fetch_interval_max", KeyKind::Duration),
    ("runner.workdir_cleanup_age", KeyKind::Duration),
    ("runner.idle_cleanup_interval", KeyKind::Duration),
    ("runner.log_report_interval", KeyKind::Duration),
    ("runner.log_report_max_latency", KeyKind::Duration),
    ("runner.log_report_batch_size", KeyKind::Int),
    ("runner.state_report_interval", KeyKind::Duration),
    ("runner.report_close_timeout", KeyKind::Duration),
    ("runner.labels", KeyKind::List),
    ("runner.github_mirror", KeyKind::String),
    ("runner.action_shallow_clone", KeyKind::Bool),
    ("runner.set_act_env", KeyKind::Bool),
    ("runner.patch_actions", KeyKind::Bool),
    ("runner.allocate_pty", KeyKind::Bool),
    ("runner.default_image", KeyKind::String),
    ("runner.tool_cache_mode", KeyKind::String),
    ("runner.post_task_script", KeyKind::String),
    ("runner.post_task_script_timeout", KeyKind::Duration),
    ("runner.hooks.job_started", KeyKind::String),
    ("runner.hooks.job_completed", KeyKind::String),
    ("runner.protocol", KeyKind::String),
    ("cache.enabled", KeyKind::Bool),
    ("cache.dir", KeyKind::String),
    ("cache.host", KeyKind::String),
    ("cache.port", KeyKind::Int),
    ("cache.external_server", KeyKind::String),
    ("cache.external_secret", KeyKind::String),
    ("cache.external_secret_file", KeyKind::String),
    ("cache.offline_mode", KeyKind::Bool),
    ("cache.v2", KeyKind::Bool),
    ("cache.retention", KeyKind::Duration),
    ("cache.repo_size_limit", KeyKind::Size),
    ("cache.size_limit", KeyKind::Size),
    ("cache.sweep_interval", KeyKind::Duration),
    ("container.network", KeyKind::String),
    (
        "container.network_create_options.enable_ipv4",
        KeyKind::Bool,
    ),
    (
        "container.network_create_options.enable_ipv6",
        KeyKind::Bool,
    ),
    ("container.network_mode", KeyKind::String),
    ("container.privileged", KeyKind::Bool),
    ("container.options", KeyKind::String),
    ("container.workdir_parent", KeyKind::String),
    ("container.valid_volumes", KeyKind::List),
    ("container.docker_host", KeyKind::String),
    ("container.force_pull", KeyKind::Bool),
    ("container.force_rebuild", KeyKind::Bool),
    ("container.require_docker", KeyKind::Bool),
    ("container.docker_timeout", KeyKind::Duration),
    ("container.bind_workdir", KeyKind::Bool),
    ("container.service_ready_timeout", KeyKind::Duration),
    ("host.workdir_parent", KeyKind::String),
    ("metrics.enabled", KeyKind::Bool),
    ("metrics.addr", KeyKind::String),
    ("metrics.readiness_grace", KeyKind::Duration),
    ("health_check.enabled", KeyKind::Bool),
    ("health_check.min_free_disk_space_mb", KeyKind::Int),
    ("health_check.script", KeyKind::String),
    ("health_check.interval", KeyKind::Duration),
    ("health_check.timeout", KeyKind::Duration),
];

/// What a dotted key path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTarget {
    /// A key of [`KEYS`].
    Key(KeyKind),
    /// One entry of a [`KeyKind::Map`] key (`runner.envs.NAME`): a string.
    MapEntry,
    /// A section holding keys (`runner`, `runner.hooks`).
    Section,
}

/// Why a dotted key path names no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPathError {
    #[error("no config key given")]
    Empty,
    #[error("unknown config key {key:?}, valid keys here: {}", .valid.join(", "))]
    Unknown { key: String, valid: Vec<String> },
    #[error("{key:?} has no sub-keys: its entries are names given by you (`{key}.NAME`)")]
    NoSubKeys { key: String },
    #[error("{key:?} is a value, not a section")]
    NotASection { key: String },
}

/// Resolves `path` against [`KEYS`].
///
/// ```
/// use act_runner::config::{KeyKind, KeyTarget, resolve_key};
/// assert_eq!(resolve_key("runner.labels"), Ok(KeyTarget::Key(KeyKind::List)));
/// assert_eq!(resolve_key("runner.envs.HTTP_PROXY"), Ok(KeyTarget::MapEntry));
/// assert_eq!(resolve_key("runner.hooks"), Ok(KeyTarget::Section));
/// assert!(resolve_key("runner.labl").is_err());
/// ```
pub fn resolve_key(path: &str) -> Result<KeyTarget, KeyPathError> {
    if path.is_empty() {
        return Err(KeyPathError::Empty);
    }
    let segments: Vec<&str> = path.split('.').collect();
    for (idx, _) in segments.iter().enumerate() {
        let prefix = segments[..=idx].join(".");
        if let Some((_, kind)) = KEYS.iter().find(|(name, _)| *name == prefix) {
            let n_rest = segments.len() - idx - 1;
            return match (kind, n_rest) {
                (kind, 0) => Ok(KeyTarget::Key(*kind)),
                (KeyKind::Map, 1) => Ok(KeyTarget::MapEntry),
                (KeyKind::Map, _) => Err(KeyPathError::NoSubKeys {
                    key: segments[..=idx + 1].join("."),
                }),
                _ => Err(KeyPathError::NotASection { key: prefix }),
            };
        }
        let children = children_of(&segments[..idx]);
        if !children.contains(&segments[idx]) {
            return Err(KeyPathError::Unknown {
                key: prefix,
                valid: children.into_iter().map(str::to_owned).collect(),
            });
        }
    }
    Ok(KeyTarget::Section)
}

/// The names one level below the section `parent` (empty: the top level), sorted.
pub(super) fn children_of(parent: &[&str]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = KEYS
        .iter()
        .filter_map(|(name, _)| {
            let mut parts = name.split('.');
            parent
                .iter()
                .all(|segment| parts.next() == Some(*segment))
                .then(|| parts.next())
                .flatten()
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_lists_the_valid_ones_at_its_level() {
        let Err(KeyPathError::Unknown { key, valid }) = resolve_key("runner.hooks.job_start")
        else {
            panic!("not refused")
        };
        assert_eq!(key, "runner.hooks.job_start");
        assert_eq!(valid, ["job_completed", "job_started"]);
        let Err(KeyPathError::Unknown { valid, .. }) = resolve_key("runers") else {
            panic!("not refused")
        };
        assert_eq!(
            valid,
            [
                "cache",
                "container",
                "health_check",
                "host",
                "log",
                "metrics",
                "runner"
            ]
        );
        assert!(resolve_key("runner..labels").is_err());
    }

    #[test]
    fn values_have_no_sub_keys_and_map_entries_have_one_level() {
        assert_eq!(
            resolve_key("runner.capacity.x"),
            Err(KeyPathError::NotASection {
                key: "runner.capacity".into()
            })
        );
        assert_eq!(
            resolve_key("runner.envs.A.B"),
            Err(KeyPathError::NoSubKeys {
                key: "runner.envs.A".into()
            })
        );
        assert_eq!(resolve_key(""), Err(KeyPathError::Empty));
        assert_eq!(resolve_key("container"), Ok(KeyTarget::Section));
    }
}
