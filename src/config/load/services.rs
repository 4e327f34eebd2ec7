//! Reading the `cache:`, `container:`, `host:`, `metrics:` and `health_check:` sections.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{LoadEnv, off_when_non_positive, positive_or};
use crate::config::model::*;
use crate::config::reader::{Fields, Reader};
use crate::config::secret::Secret;
use crate::config::small_file;

pub(super) fn read_cache(
    reader: &mut Reader<'_>,
    top: &mut Fields<'_>,
    env: &LoadEnv,
) -> CacheConfig {
    let mut fields = reader.section(top, "cache");
    let enabled = reader.bool(&mut fields, "enabled").unwrap_or(true);
    let dir = reader
        .non_empty_string(&mut fields, "dir")
        .map_or_else(|| env.default_cache_dir(), |dir| PathBuf::from(dir.value));
    let host = reader
        .non_empty_string(&mut fields, "host")
        .map(|host| host.value);
    let port = reader
        .int(&mut fields, "port", 0, u16::MAX.into())
        .and_then(|port| u16::try_from(port.value).ok())
        .unwrap_or(0);
    let external_server_at = reader.non_empty_string(&mut fields, "external_server");
    let external_server = external_server_at
        .as_ref()
        .map(|server| format!("{}/", server.value.trim_end_matches('/')));
    let secret_at = reader.non_empty_string(&mut fields, "external_secret");
    let secret_file_at = reader.non_empty_string(&mut fields, "external_secret_file");
    let mut external_secret = secret_at
        .as_ref()
        .map(|secret| Secret::new(secret.value.clone()));
    // Read even when the cache is disabled, as upstream does, so a broken file is noticed early.
    if let Some(file) = &secret_file_at {
        if secret_at.is_some() {
            reader.problem(
                &file.path,
                file.position,
                "set either cache.external_secret or cache.external_secret_file, not both",
            );
        } else {
            match small_file::read_to_string(Path::new(&file.value)) {
                Ok(text) if text.trim().is_empty() => {
                    reader.problem(
                        &file.path,
                        file.position,
                        format!("{} is empty (expected the shared secret)", file.value),
                    );
                }
                Ok(text) => external_secret = Some(Secret::new(text.trim())),
                Err(error) => reader.problem(
                    &file.path,
                    file.position,
                    format!("cannot read {}: {error}", file.value),
                ),
            }
        }
    }
    let offline_mode = reader.bool(&mut fields, "offline_mode").unwrap_or(false);
    let v2 = reader.bool(&mut fields, "v2").unwrap_or(true);
    let retention_at = reader.duration(&mut fields, "retention");
    let repo_size_limit_at = reader.size(&mut fields, "repo_size_limit");
    let size_limit_at = reader.size(&mut fields, "size_limit");
    let sweep_interval_at = reader.duration(&mut fields, "sweep_interval");
    if let Some(server) = &external_server_at {
        if enabled && external_secret.is_none() && secret_file_at.is_none() {
            reader.problem(
                &server.path,
                server.position,
                "an external cache server needs cache.external_secret or cache.external_secret_file",
            );
        }
        let eviction_keys = [
            retention_at.as_ref().map(|at| (&at.path, at.position)),
            repo_size_limit_at
                .as_ref()
                .map(|at| (&at.path, at.position)),
            size_limit_at.as_ref().map(|at| (&at.path, at.position)),
            sweep_interval_at.as_ref().map(|at| (&at.path, at.position)),
        ];
        for (path, position) in eviction_keys.into_iter().flatten() {
            reader.warn(
                path,
                position,
                "ignored with cache.external_server (the external server evicts)",
            );
        }
    } else if let Some(secret) = secret_at.as_ref().or(secret_file_at.as_ref()) {
        reader.warn(
            &secret.path,
            secret.position,
            "ignored without cache.external_server",
        );
    }
    reader.finish(fields);
    CacheConfig {
        enabled,
        dir,
        host,
        port,
        external_server,
        external_secret,
        offline_mode,
        v2,
        retention: off_when_non_positive(retention_at, Duration::from_secs(168 * 3600)),
        repo_size_limit: match repo_size_limit_at {
            None => Some(10 << 30),
            Some(size) => Some(size.value).filter(|bytes| *bytes > 0),
        },
        size_limit: size_limit_at
            .map(|size| size.value)
            .filter(|bytes| *bytes > 0),
        sweep_interval: positive_or(sweep_interval_at, Duration::from_secs(3600)),
    }
}

pub(super) fn read_container(reader: &mut Reader<'_>, top: &mut Fields<'_>) -> ContainerConfig {
    let mut fields = reader.section(top, "container");
    let mut network = reader
        .non_empty_string(&mut fields, "network")
        .map(|network| network.value);
    let mut create_fields = reader.section(&mut fields, "network_create_options");
    let network_create_options = NetworkCreateOptions {
        enable_ipv4: reader.bool(&mut create_fields, "enable_ipv4"),
        enable_ipv6: reader.bool(&mut create_fields, "enable_ipv6"),
    };
    reader.finish(create_fields);
    if let Some(mode) = reader.non_empty_string(&mut fields, "network_mode") {
        if network.is_none() {
            reader.warn(
                &mode.path,
                mode.position,
                "deprecated, use container.network instead",
            );
            // `bridge` used to mean "the default network", which is now a per-job network.
            if mode.value != "bridge" {
                network = Some(mode.value);
            }
        } else {
            reader.warn(
                &mode.path,
                mode.position,
                "deprecated and ignored because container.network is set",
            );
        }
    }
    let privileged = reader.bool(&mut fields, "privileged").unwrap_or(false);
    let options = reader
        .string(&mut fields, "options")
        .map(|options| options.value)
        .unwrap_or_default();
    let workdir_parent = reader
        .non_empty_string(&mut fields, "workdir_parent")
        .map(|parent| parent.value.trim_start_matches('/').to_owned())
        .filter(|parent| !parent.is_empty())
        .unwrap_or_else(|| "workspace".to_owned());
    let valid_volumes = reader
        .strings(&mut fields, "valid_volumes")
        .into_iter()
        .map(|volume| volume.value)
        .collect();
    let docker_host = match reader.non_empty_string(&mut fields, "docker_host") {
        None => DockerHost::Detect,
        Some(host) if host.value == "-" => DockerHost::DetectWithoutMount,
        Some(host) => DockerHost::Address(host.value),
    };
    let force_pull = reader.bool(&mut fields, "force_pull").unwrap_or(false);
    let force_rebuild = reader.bool(&mut fields, "force_rebuild").unwrap_or(false);
    let require_docker = reader.bool(&mut fields, "require_docker").unwrap_or(false);
    let docker_timeout = positive_or(
        reader.duration(&mut fields, "docker_timeout"),
        Duration::ZERO,
    );
    let bind_workdir = reader.bool(&mut fields, "bind_workdir").unwrap_or(false);
    let service_ready_timeout = match reader.duration(&mut fields, "service_ready_timeout") {
        Some(at) if at.value.is_negative() => None,
        other => Some(positive_or(other, DEFAULT_SERVICE_READY_TIMEOUT)),
    };
    reader.finish(fields);
    ContainerConfig {
        network,
        network_create_options,
        privileged,
        options,
        workdir_parent,
        valid_volumes,
        docker_host,
        force_pull,
        force_rebuild,
        require_docker,
        docker_timeout,
        bind_workdir,
        service_ready_timeout,
    }
}

pub(super) fn read_host(
    reader: &mut Reader<'_>,
    top: &mut Fields<'_>,
    env: &LoadEnv,
) -> HostConfig {
    let mut fields = reader.section(top, "host");
    let workdir_parent = reader
        .non_empty_string(&mut fields, "workdir_parent")
        .map_or_else(
            || env.home.join(".cache/act"),
            |parent| PathBuf::from(parent.value),
        );
    reader.finish(fields);
    HostConfig { workdir_parent }
}

pub(super) fn read_metrics(reader: &mut Reader<'_>, top: &mut Fields<'_>) -> MetricsConfig {
    let mut fields = reader.section(top, "metrics");
    let enabled = reader.bool(&mut fields, "enabled").unwrap_or(false);
    let default_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9101));
    let addr = match reader.non_empty_string(&mut fields, "addr") {
        None => default_addr,
        Some(text) => parse_listen_addr(&text.value).unwrap_or_else(|| {
            reader.problem(
                &text.path,
                text.position,
                format!("{:?} is not a listen address (expected IP:port such as 127.0.0.1:9101, or :port)", text.value),
            );
            default_addr
        }),
    };
    let readiness_grace = positive_or(
        reader.duration(&mut fields, "readiness_grace"),
        Duration::from_secs(30),
    );
    reader.finish(fields);
    MetricsConfig {
        enabled,
        addr,
        readiness_grace,
    }
}

/// `IP:port`, `[v6]:port`, `localhost:port`, or Go's `:port` (every interface).
fn parse_listen_addr(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

pub(super) fn read_health_check(
    reader: &mut Reader<'_>,
    top: &mut Fields<'_>,
) -> HealthCheckConfig {
    let mut fields = reader.section(top, "health_check");
    let enabled = reader.bool(&mut fields, "enabled").unwrap_or(false);
    let min_free_disk_space_mb = reader
        .int(
            &mut fields,
            "min_free_disk_space_mb",
            i64::MIN.into(),
            i64::MAX.into(),
        )
        .and_then(|mb| u64::try_from(mb.value).ok())
        .filter(|mb| *mb > 0)
        .unwrap_or(1024);
    let script = reader
        .non_empty_string(&mut fields, "script")
        .map(|script| PathBuf::from(script.value));
    let interval = positive_or(
        reader.duration(&mut fields, "interval"),
        Duration::from_secs(30),
    );
    let timeout = positive_or(
        reader.duration(&mut fields, "timeout"),
        Duration::from_secs(10),
    );
    reader.finish(fields);
    HealthCheckConfig {
        enabled,
        min_free_disk_space_mb,
        script,
        interval,
        timeout,
    }
}
