//! `container.options` and a workflow's `container.options` / `services.*.options`: the `docker run`
//! flags upstream accepts, split with shell-words, parsed into [`ContainerOptions`], checked against
//! the runner's policy and applied to a create body. Pure code, no I/O.
//!
//! Policy (Gitea's act): `--name` and `--network` are ignored (the runner names and connects the
//! container); `container.privileged` makes every container privileged and keeps the host-escape
//! flags; without it `--privileged` and the host-escape flags upstream strips (`--pid`,
//! `--cap-add`, `--device`, ...) are dropped with a warning for the job's log, except in the
//! runner's own options, which upstream trusts with them; volumes go through
//! `container.valid_volumes` later, with the job's own.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, PortBinding, PortMap, ResourcesUlimits,
};

use super::volumes::VolumeSpec;
use crate::executor::backend::BackendError;

/// Flags upstream strips when privileged containers are not allowed.
const HOST_ESCAPE_FLAGS: &[&str] = &[
    "--pid",
    "--ipc",
    "--uts",
    "--cgroupns",
    "--userns",
    "--cap-add",
    "--security-opt",
    "--device",
    "--device-cgroup-rule",
    "--gpus",
    "--volumes-from",
    "--runtime",
    "--cgroup-parent",
    "--sysctl",
];

/// Flags that take no value.
const BOOL_FLAGS: &[&str] = &[
    "--privileged",
    "--init",
    "--tty",
    "--interactive",
    "--read-only",
    "--rm",
    "--detach",
    "--no-healthcheck",
    "--oom-kill-disable",
    "--publish-all",
];

/// Everything parsed from an options string; `Default` is "no options".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerOptions {
    pub env: Vec<String>,
    pub volumes: Vec<VolumeSpec>,
    pub publish: Vec<String>,
    pub expose: Vec<String>,
    pub labels: Vec<String>,
    pub privileged: bool,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub hostname: Option<String>,
    pub entrypoint: Option<String>,
    pub add_hosts: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub devices: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub tmpfs: Vec<String>,
    pub group_add: Vec<String>,
    pub ulimits: Vec<String>,
    pub sysctls: Vec<String>,
    pub shm_size: Option<i64>,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub pids_limit: Option<i64>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub uts_mode: Option<String>,
    pub userns_mode: Option<String>,
    pub init: bool,
    pub tty: bool,
    pub read_only: bool,
    pub publish_all: bool,
    pub health_cmd: Option<String>,
    pub health_interval: Option<Duration>,
    pub health_timeout: Option<Duration>,
    pub health_start_period: Option<Duration>,
    pub health_retries: Option<i64>,
    pub no_healthcheck: bool,
    /// `--platform os/arch`: the image is pulled and the container created for it.
    pub platform: Option<String>,
    /// `--pull always|missing|never`.
    pub pull: Option<String>,
    /// Notes for the job log: ignored and stripped flags.
    pub warnings: Vec<String>,
}

/// The platform the options ask for: the last `--platform` of the runner's then the workflow's.
pub fn platform<'a>(options: impl IntoIterator<Item = &'a ContainerOptions>) -> Option<&'a str> {
    options
        .into_iter()
        .filter_map(|options| options.platform.as_deref())
        .last()
}

/// What the runner allows.
#[derive(Debug, Clone, Copy)]
pub struct OptionsPolicy {
    /// `container.privileged`: the container runs privileged, and host-escape flags are kept.
    pub privileged: bool,
    /// The runner's own options (`container.options`, `exec --container-opts`): host-escape
    /// flags are kept even without `privileged`; `--privileged` itself still is not.
    pub trusted: bool,
}

impl ContainerOptions {
    /// Parses one options string. Unknown flags are errors, as `docker run` makes them.
    pub fn parse(options: &str, policy: OptionsPolicy) -> Result<ContainerOptions, BackendError> {
        let words = expand_bundles(shell_words::split(options).map_err(|err| {
            BackendError::Policy(format!("cannot split container options: {err}"))
        })?);
        let mut parsed = ContainerOptions {
            privileged: policy.privileged,
            ..ContainerOptions::default()
        };
        let mut idx = 0;
        while idx < words.len() {
            let word = &words[idx];
            idx += 1;
            let (flag, inline_value) = split_flag(word)?;
            let value = if BOOL_FLAGS.contains(&flag.as_str()) {
                match inline_value.as_deref() {
                    None | Some("true") => String::from("true"),
                    Some("false") => continue,
                    Some(other) => return Err(bad_value(&flag, other)),
                }
            } else if let Some(value) = inline_value {
                value
            } else if idx < words.len() {
                idx += 1;
                words[idx - 1].clone()
            } else {
                return Err(BackendError::Policy(format!(
                    "container option `{flag}` needs a value"
                )));
            };
            let escapes = flag == "--privileged"
                || (!policy.trusted && HOST_ESCAPE_FLAGS.contains(&flag.as_str()));
            if !policy.privileged && escapes {
                parsed.warnings.push(format!(
                    "container option `{flag}` ignored: this runner does not allow privileged containers (container.privileged is false)"
                ));
                continue;
            }
            parsed.apply_flag(&flag, value)?;
        }
        Ok(parsed)
    }

    fn apply_flag(&mut self, flag: &str, value: String) -> Result<(), BackendError> {
        match flag {
            "--env" => {
                if value.contains('=') {
                    self.env.push(value);
                } else {
                    // `docker run -e NAME` copies the client's variable; the runner's own environment
                    // is not the job's to read.
                    self.warnings.push(format!(
                        "container option `--env {value}` without a value ignored"
                    ));
                }
            }
            "--volume" => self.volumes.push(VolumeSpec::parse(&value)?),
            "--mount" => self.volumes.push(parse_mount(&value)?),
            "--publish" => self.publish.push(value),
            "--expose" => self.expose.push(value),
            "--label" => self.labels.push(value),
            "--privileged" => self.privileged = true,
            "--user" => self.user = Some(value),
            "--workdir" => self.workdir = Some(value),
            "--hostname" => self.hostname = Some(value),
            "--entrypoint" => self.entrypoint = Some(value),
            "--add-host" => self.add_hosts.push(value),
            "--cap-add" => self.cap_add.push(value),
            "--cap-drop" => self.cap_drop.push(value),
            "--security-opt" => self.security_opt.push(value),
            "--device" => self.devices.push(value),
            "--dns" => self.dns.push(value),
            "--dns-search" => self.dns_search.push(value),
            "--dns-option" | "--dns-opt" => self.dns_options.push(value),
            "--tmpfs" => self.tmpfs.push(value),
            "--group-add" => self.group_add.push(value),
            "--ulimit" => self.ulimits.push(value),
            "--sysctl" => self.sysctls.push(value),
            "--shm-size" => self.shm_size = Some(parse_size(flag, &value)?),
            "--memory" => self.memory = Some(parse_size(flag, &value)?),
            "--memory-swap" => self.memory_swap = Some(parse_size(flag, &value)?),
            "--cpus" => {
                let cpus: f64 = value.parse().map_err(|_| bad_value(flag, &value))?;
                self.nano_cpus = Some((cpus * 1e9) as i64);
            }
            "--cpu-shares" => self.cpu_shares = Some(parse_int(flag, &value)?),
            "--pids-limit" => self.pids_limit = Some(parse_int(flag, &value)?),
            "--pid" => self.pid_mode = Some(value),
            "--ipc" => self.ipc_mode = Some(value),
            "--uts" => self.uts_mode = Some(value),
            "--userns" => self.userns_mode = Some(value),
            "--init" => self.init = true,
            "--tty" => self.tty = true,
            "--read-only" => self.read_only = true,
            "--publish-all" => self.publish_all = true,
            "--health-cmd" => self.health_cmd = Some(value),
            "--health-interval" => self.health_interval = Some(parse_duration(flag, &value)?),
            "--health-timeout" => self.health_timeout = Some(parse_duration(flag, &value)?),
            "--health-start-period" => {
                self.health_start_period = Some(parse_duration(flag, &value)?)
            }
            "--health-retries" => self.health_retries = Some(parse_int(flag, &value)?),
            "--no-healthcheck" => self.no_healthcheck = true,
            "--platform" => self.platform = Some(value),
            "--pull" => match value.as_str() {
                "always" | "missing" | "never" => self.pull = Some(value),
                _ => return Err(bad_value(flag, &value)),
            },
            "--name" | "--network" | "--net" | "--network-alias" | "--rm" | "--detach"
            | "--interactive" => {
                self.warnings.push(format!(
                    "container option `{flag}` ignored: the runner sets it"
                ));
            }
            // Accepted and meaningless here (upstream parses them too).
            "--oom-kill-disable" | "--stop-signal" | "--stop-timeout" => {}
            "--gpus"
            | "--device-cgroup-rule"
            | "--volumes-from"
            | "--runtime"
            | "--cgroup-parent"
            | "--cgroupns" => {
                self.warnings.push(format!(
                    "container option `{flag}` is not supported by this runner and is ignored"
                ));
            }
            _ => {
                return Err(BackendError::Policy(format!(
                    "unknown container option `{flag}`"
                )));
            }
        }
        Ok(())
    }

    /// Applies everything but volumes, ports and env (which the caller merges with the workflow's)
    /// to a create body.
    pub fn apply(&self, body: &mut ContainerCreateBody) -> Result<(), BackendError> {
        let host = body.host_config.get_or_insert_with(HostConfig::default);
        if self.privileged {
            host.privileged = Some(true);
        }
        set_list(&mut host.extra_hosts, &self.add_hosts);
        set_list(&mut host.cap_add, &self.cap_add);
        set_list(&mut host.cap_drop, &self.cap_drop);
        set_list(&mut host.security_opt, &self.security_opt);
        set_list(&mut host.dns, &self.dns);
        set_list(&mut host.dns_search, &self.dns_search);
        set_list(&mut host.dns_options, &self.dns_options);
        set_list(&mut host.group_add, &self.group_add);
        if !self.devices.is_empty() {
            host.devices = Some(
                self.devices
                    .iter()
                    .map(|device| parse_device(device))
                    .collect(),
            );
        }
        if !self.tmpfs.is_empty() {
            let mounts = self.tmpfs.iter().map(|entry| match entry.split_once(':') {
                Some((path, opts)) => (path.to_string(), opts.to_string()),
                None => (entry.clone(), String::new()),
            });
            host.tmpfs = Some(mounts.collect());
        }
        if !self.ulimits.is_empty() {
            let ulimits: Result<Vec<_>, _> = self
                .ulimits
                .iter()
                .map(|limit| parse_ulimit(limit))
                .collect();
            host.ulimits = Some(ulimits?);
        }
        if !self.sysctls.is_empty() {
            let sysctls: Result<HashMap<_, _>, _> = self
                .sysctls
                .iter()
                .map(|entry| match entry.split_once('=') {
                    Some((key, value)) => Ok((key.to_string(), value.to_string())),
                    None => Err(bad_value("--sysctl", entry)),
                })
                .collect();
            host.sysctls = Some(sysctls?);
        }
        host.shm_size = self.shm_size.or(host.shm_size);
        host.memory = self.memory.or(host.memory);
        host.memory_swap = self.memory_swap.or(host.memory_swap);
        host.nano_cpus = self.nano_cpus.or(host.nano_cpus);
        host.cpu_shares = self.cpu_shares.or(host.cpu_shares);
        host.pids_limit = self.pids_limit.or(host.pids_limit);
        host.pid_mode = self.pid_mode.clone().or(host.pid_mode.take());
        host.ipc_mode = self.ipc_mode.clone().or(host.ipc_mode.take());
        host.uts_mode = self.uts_mode.clone().or(host.uts_mode.take());
        host.userns_mode = self.userns_mode.clone().or(host.userns_mode.take());
        if self.init {
            host.init = Some(true);
        }
        if self.read_only {
            host.readonly_rootfs = Some(true);
        }
        if self.publish_all {
            host.publish_all_ports = Some(true);
        }
        if self.tty {
            body.tty = Some(true);
        }
        if let Some(user) = &self.user {
            body.user = Some(user.clone());
        }
        if let Some(hostname) = &self.hostname {
            body.hostname = Some(hostname.clone());
        }
        if !self.labels.is_empty() {
            let labels = body.labels.get_or_insert_with(HashMap::new);
            for label in &self.labels {
                let (key, value) = label.split_once('=').unwrap_or((label.as_str(), ""));
                // The runner's identity labels are how orphans are found; a workflow may not forge them.
                labels
                    .entry(key.to_string())
                    .or_insert_with(|| value.to_string());
            }
        }
        if self.no_healthcheck {
            body.healthcheck = Some(HealthConfig {
                test: Some(vec![String::from("NONE")]),
                ..Default::default()
            });
        } else if self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
        {
            let nanos = |duration: Option<Duration>| duration.map(|d| d.as_nanos() as i64);
            body.healthcheck = Some(HealthConfig {
                test: self
                    .health_cmd
                    .as_ref()
                    .map(|cmd| vec![String::from("CMD-SHELL"), cmd.clone()]),
                interval: nanos(self.health_interval),
                timeout: nanos(self.health_timeout),
                start_period: nanos(self.health_start_period),
                retries: self.health_retries,
                ..Default::default()
            });
        }
        Ok(())
    }
}

/// Parses `-p` entries into exposed ports and bindings: `[ip:][host:]container[/proto]`.
pub fn parse_ports(entries: &[String]) -> Result<(Vec<String>, PortMap), BackendError> {
    let mut exposed = Vec::new();
    let mut bindings = PortMap::new();
    for entry in entries {
        let (address, proto) = match entry.rsplit_once('/') {
            Some((address, proto)) => (address, proto),
            None => (entry.as_str(), "tcp"),
        };
        let parts: Vec<&str> = address.split(':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [container] => (None, None, *container),
            [host, container] => (None, Some(*host), *container),
            [ip, host, container] => (Some(*ip), Some(*host), *container),
            _ => return Err(bad_value("--publish", entry)),
        };
        if container_port.parse::<u16>().is_err()
            || host_port.is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_err())
        {
            return Err(bad_value("--publish", entry));
        }
        let key = format!("{container_port}/{proto}");
        exposed.push(key.clone());
        // A container port alone is published on a free host port, as `docker run -p 5432`.
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: host_ip.map(str::to_string),
                host_port: host_port.filter(|p| !p.is_empty()).map(str::to_string),
            });
    }
    Ok((exposed, bindings))
}

/// Expands `-it` into `-i -t`: bundles of value-less short flags.
fn expand_bundles(words: Vec<String>) -> Vec<String> {
    let mut expanded = Vec::with_capacity(words.len());
    for word in words {
        let bundle = word
            .strip_prefix('-')
            .filter(|rest| rest.len() > 1 && !rest.starts_with('-'))
            .filter(|rest| rest.chars().all(|c| matches!(c, 'i' | 't' | 'd' | 'P')));
        match bundle {
            Some(letters) => expanded.extend(letters.chars().map(|c| format!("-{c}"))),
            None => expanded.push(word),
        }
    }
    expanded
}

fn split_flag(word: &str) -> Result<(String, Option<String>), BackendError> {
    let short = |letter: char| -> Option<&'static str> {
        Some(match letter {
            'e' => "--env",
            'v' => "--volume",
            'p' => "--publish",
            'P' => "--publish-all",
            'l' => "--label",
            'u' => "--user",
            'w' => "--workdir",
            'h' => "--hostname",
            'm' => "--memory",
            't' => "--tty",
            'i' => "--interactive",
            'd' => "--detach",
            _ => return None,
        })
    };
    if let Some(long) = word.strip_prefix("--") {
        return Ok(match long.split_once('=') {
            Some((name, value)) => (format!("--{name}"), Some(value.to_string())),
            None => (format!("--{long}"), None),
        });
    }
    if let Some(rest) = word.strip_prefix('-') {
        let mut chars = rest.chars();
        if let Some(letter) = chars.next()
            && let Some(flag) = short(letter)
        {
            let tail: String = chars.collect();
            if tail.is_empty() {
                return Ok((flag.to_string(), None));
            }
            return Ok((
                flag.to_string(),
                Some(tail.trim_start_matches('=').to_string()),
            ));
        }
    }
    Err(BackendError::Policy(format!(
        "unknown container option `{word}`"
    )))
}

fn parse_mount(value: &str) -> Result<VolumeSpec, BackendError> {
    let mut source = None;
    let mut target = None;
    let mut read_only = false;
    let mut kind = "volume";
    for field in value.split(',') {
        let (key, val) = field.split_once('=').unwrap_or((field, "true"));
        match key {
            "type" => kind = if val == "bind" { "bind" } else { "volume" },
            "source" | "src" => source = Some(val.to_string()),
            "target" | "destination" | "dst" => target = Some(val.to_string()),
            "readonly" | "ro" => read_only = val != "false",
            _ => {}
        }
    }
    let target = target.ok_or_else(|| bad_value("--mount", value))?;
    if kind == "bind" && source.is_none() {
        return Err(bad_value("--mount", value));
    }
    Ok(VolumeSpec {
        source,
        target,
        mode: read_only.then(|| String::from("ro")),
    })
}

fn parse_device(device: &str) -> bollard::models::DeviceMapping {
    let parts: Vec<&str> = device.split(':').collect();
    let host = parts.first().copied().unwrap_or_default().to_string();
    bollard::models::DeviceMapping {
        path_on_host: Some(host.clone()),
        path_in_container: Some(parts.get(1).map(|p| p.to_string()).unwrap_or(host)),
        cgroup_permissions: Some(parts.get(2).copied().unwrap_or("rwm").to_string()),
    }
}

fn parse_ulimit(limit: &str) -> Result<ResourcesUlimits, BackendError> {
    let (name, values) = limit
        .split_once('=')
        .ok_or_else(|| bad_value("--ulimit", limit))?;
    let (soft, hard) = values.split_once(':').unwrap_or((values, values));
    Ok(ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(parse_int("--ulimit", soft)?),
        hard: Some(parse_int("--ulimit", hard)?),
    })
}

fn set_list(field: &mut Option<Vec<String>>, values: &[String]) {
    if !values.is_empty() {
        field
            .get_or_insert_with(Vec::new)
            .extend(values.iter().cloned());
    }
}

fn bad_value(flag: &str, value: &str) -> BackendError {
    BackendError::Policy(format!(
        "invalid value `{value}` for container option `{flag}`"
    ))
}

fn parse_int(flag: &str, value: &str) -> Result<i64, BackendError> {
    value.parse().map_err(|_| bad_value(flag, value))
}

fn parse_duration(flag: &str, value: &str) -> Result<Duration, BackendError> {
    humantime::parse_duration(value).map_err(|_| bad_value(flag, value))
}

/// Docker's `RAMInBytes`: binary units, case-insensitive, optional `b`.
fn parse_size(flag: &str, value: &str) -> Result<i64, BackendError> {
    let lower = value.trim().to_ascii_lowercase();
    let trimmed = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, multiplier) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1i64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    let number: f64 = number.parse().map_err(|_| bad_value(flag, value))?;
    if number < 0.0 {
        return Err(bad_value(flag, value));
    }
    Ok((number * multiplier as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: OptionsPolicy = OptionsPolicy {
        privileged: false,
        trusted: false,
    };
    const LOOSE: OptionsPolicy = OptionsPolicy {
        privileged: true,
        trusted: false,
    };
    const RUNNER: OptionsPolicy = OptionsPolicy {
        privileged: false,
        trusted: true,
    };

    #[test]
    fn privileged_is_dropped_with_a_warning_unless_allowed() {
        let refused = ContainerOptions::parse("--privileged", STRICT).unwrap();
        assert!(!refused.privileged);
        assert_eq!(refused.warnings.len(), 1);
        assert!(
            refused.warnings[0].contains("`--privileged` ignored"),
            "{:?}",
            refused.warnings
        );
        assert!(
            ContainerOptions::parse("--privileged", LOOSE)
                .unwrap()
                .privileged
        );
        assert!(
            !ContainerOptions::parse("--privileged=false", STRICT)
                .unwrap()
                .privileged
        );
    }

    #[test]
    fn a_privileged_runner_makes_every_container_privileged() {
        let parsed = ContainerOptions::parse("", LOOSE).unwrap();
        assert!(parsed.privileged);
        assert!(parsed.warnings.is_empty());
        assert!(!ContainerOptions::parse("", STRICT).unwrap().privileged);
    }

    #[test]
    fn host_escape_flags_are_stripped_with_a_warning() {
        let parsed =
            ContainerOptions::parse("--cap-add SYS_ADMIN --pid=host -e A=1", STRICT).unwrap();
        assert!(parsed.cap_add.is_empty());
        assert!(parsed.pid_mode.is_none());
        assert_eq!(parsed.env, ["A=1"]);
        assert_eq!(parsed.warnings.len(), 2);
        let loose = ContainerOptions::parse("--cap-add SYS_ADMIN", LOOSE).unwrap();
        assert_eq!(loose.cap_add, ["SYS_ADMIN"]);
    }

    #[test]
    fn the_runners_own_options_keep_host_escape_flags_but_not_privileged() {
        let parsed = ContainerOptions::parse(
            "--cap-add SYS_ADMIN --device /dev/fuse --pid=host --privileged",
            RUNNER,
        )
        .unwrap();
        assert_eq!(parsed.cap_add, ["SYS_ADMIN"]);
        assert_eq!(parsed.devices, ["/dev/fuse"]);
        assert_eq!(parsed.pid_mode.as_deref(), Some("host"));
        assert!(!parsed.privileged);
        assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
        assert!(parsed.warnings[0].contains("`--privileged` ignored"));
    }

    #[test]
    fn platform_is_kept_for_the_pull_and_the_create() {
        let parsed = ContainerOptions::parse("--platform linux/arm64", STRICT).unwrap();
        assert_eq!(parsed.platform.as_deref(), Some("linux/arm64"));
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert_eq!(
            platform([&parsed, &ContainerOptions::default()]),
            Some("linux/arm64")
        );
        let later = ContainerOptions::parse("--platform=linux/amd64", STRICT).unwrap();
        assert_eq!(platform([&parsed, &later]), Some("linux/amd64"));
    }

    #[test]
    fn name_and_network_are_ignored() {
        let parsed = ContainerOptions::parse("--name x --network=host", STRICT).unwrap();
        assert_eq!(parsed.warnings.len(), 2);
    }

    #[test]
    fn quoted_values_and_short_flags() {
        let parsed = ContainerOptions::parse(
            r#"-e "GREETING=hello world" -v /a:/b:ro -p 8080:80 -u 1000 -it"#,
            STRICT,
        )
        .unwrap();
        assert_eq!(parsed.env, ["GREETING=hello world"]);
        assert_eq!(parsed.volumes[0].to_bind().as_deref(), Some("/a:/b:ro"));
        assert_eq!(parsed.publish, ["8080:80"]);
        assert_eq!(parsed.user.as_deref(), Some("1000"));
        assert!(parsed.tty);
    }

    #[test]
    fn health_flags_become_a_healthcheck() {
        let parsed = ContainerOptions::parse(
            "--health-cmd 'test -f /ready' --health-interval 1s --health-retries 5 --health-timeout=2s",
            STRICT,
        )
        .unwrap();
        let mut body = ContainerCreateBody::default();
        parsed.apply(&mut body).unwrap();
        let health = body.healthcheck.unwrap();
        assert_eq!(health.test.unwrap(), ["CMD-SHELL", "test -f /ready"]);
        assert_eq!(health.interval, Some(1_000_000_000));
        assert_eq!(health.retries, Some(5));
    }

    #[test]
    fn sizes_are_binary_and_case_insensitive() {
        let parsed = ContainerOptions::parse("--shm-size 1G -m 512mb", STRICT).unwrap();
        assert_eq!(parsed.shm_size, Some(1 << 30));
        assert_eq!(parsed.memory, Some(512 << 20));
    }

    #[test]
    fn unknown_flag_and_missing_value_are_errors() {
        assert!(ContainerOptions::parse("--frobnicate", STRICT).is_err());
        assert!(ContainerOptions::parse("-e", STRICT).is_err());
        assert!(ContainerOptions::parse("--memory lots", STRICT).is_err());
        assert!(ContainerOptions::parse("'unterminated", STRICT).is_err());
    }

    #[test]
    fn mount_flag_becomes_a_volume() {
        let parsed =
            ContainerOptions::parse("--mount type=bind,source=/src,target=/dst,readonly", STRICT)
                .unwrap();
        assert_eq!(parsed.volumes[0].to_bind().as_deref(), Some("/src:/dst:ro"));
    }

    #[test]
    fn workflow_labels_cannot_override_runner_labels() {
        let parsed = ContainerOptions::parse(
            "--label com.gitea.runner.uuid=forged --label extra=1",
            STRICT,
        )
        .unwrap();
        let mut body = ContainerCreateBody {
            labels: Some(HashMap::from([(
                String::from("com.gitea.runner.uuid"),
                String::from("real"),
            )])),
            ..Default::default()
        };
        parsed.apply(&mut body).unwrap();
        let labels = body.labels.unwrap();
        assert_eq!(labels["com.gitea.runner.uuid"], "real");
        assert_eq!(labels["extra"], "1");
    }

    #[test]
    fn ports_parse_with_ip_and_protocol() {
        let (exposed, bindings) =
            parse_ports(&["127.0.0.1:8080:80/udp".to_string(), "5432".to_string()]).unwrap();
        assert_eq!(exposed, ["80/udp", "5432/tcp"]);
        let binding = &bindings["80/udp"].as_ref().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some("8080"));
        // Published on a free host port Docker picks.
        let any_port = &bindings["5432/tcp"].as_ref().unwrap()[0];
        assert_eq!(any_port.host_port, None);
        assert!(parse_ports(&["a:b:c:d".to_string()]).is_err());
    }
}
