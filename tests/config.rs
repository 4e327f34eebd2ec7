//! `config.yaml` loading through the public API: the example file, the data files in
//! `tests/data/config/{valid,invalid}/`, defaults, Go durations, warnings and errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use act_runner::config::{
    Config, ConfigError, DockerHost, EXAMPLE_CONFIG, Label, LoadEnv, LoadedConfig, LogLevel,
    NOT_ACTED_ON, RpcProtocol, ToolCacheMode,
};

/// Every key of upstream's config.yaml (runner-behaviour.md §3.2) plus this project's additions.
pub const EVERY_KEY: &[&str] = &[
    "log.level",
    "log.journald",
    "log.job.dir",
    "log.job.retention",
    "log.job.max_size",
    "runner.file",
    "runner.capacity",
    "runner.envs",
    "runner.env_file",
    "runner.timeout",
    "runner.shutdown_timeout",
    "runner.insecure",
    "runner.fetch_timeout",
    "runner.fetch_interval",
    "runner.fetch_interval_max",
    "runner.workdir_cleanup_age",
    "runner.idle_cleanup_interval",
    "runner.log_report_interval",
    "runner.log_report_max_latency",
    "runner.log_report_batch_size",
    "runner.state_report_interval",
    "runner.report_close_timeout",
    "runner.labels",
    "runner.github_mirror",
    "runner.action_shallow_clone",
    "runner.set_act_env",
    "runner.patch_actions",
    "runner.allocate_pty",
    "runner.default_image",
    "runner.tool_cache_mode",
    "runner.post_task_script",
    "runner.post_task_script_timeout",
    "runner.hooks.job_started",
    "runner.hooks.job_completed",
    "runner.protocol",
    "cache.enabled",
    "cache.dir",
    "cache.host",
    "cache.port",
    "cache.external_server",
    "cache.external_secret",
    "cache.external_secret_file",
    "cache.offline_mode",
    "cache.v2",
    "cache.retention",
    "cache.repo_size_limit",
    "cache.size_limit",
    "cache.sweep_interval",
    "container.network",
    "container.network_create_options.enable_ipv4",
    "container.network_create_options.enable_ipv6",
    "container.network_mode",
    "container.privileged",
    "container.options",
    "container.workdir_parent",
    "container.valid_volumes",
    "container.docker_host",
    "container.force_pull",
    "container.force_rebuild",
    "container.require_docker",
    "container.docker_timeout",
    "container.bind_workdir",
    "container.service_ready_timeout",
    "host.workdir_parent",
    "metrics.enabled",
    "metrics.addr",
    "metrics.readiness_grace",
    "health_check.enabled",
    "health_check.min_free_disk_space_mb",
    "health_check.script",
    "health_check.interval",
    "health_check.timeout",
];

fn env() -> LoadEnv {
    LoadEnv::with_home("/home/runner")
}

#[track_caller]
fn load(text: &str) -> LoadedConfig {
    match Config::from_yaml(text, Path::new("config.yaml"), &env()) {
        Ok(loaded) => loaded,
        Err(error) => panic!("{error}"),
    }
}

#[track_caller]
fn load_error(text: &str) -> String {
    match Config::from_yaml(text, Path::new("config.yaml"), &env()) {
        Ok(loaded) => panic!("expected an error, got {:?}", loaded.config),
        Err(error) => error.to_string(),
    }
}

fn data_files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Turns `  #key: value` and `  #  - item` lines of the example into live YAML.
pub fn uncomment_every_key(example: &str) -> String {
    example
        .lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            let rest = &line[indent..];
            match rest.strip_prefix('#') {
                Some(yaml) if !yaml.starts_with(' ') && !yaml.is_empty() => {
                    format!("{}{yaml}", &line[..indent])
                }
                Some(yaml) if yaml.trim_start().starts_with("- ") || is_nested_key(yaml) => {
                    format!("{}{yaml}", &line[..indent])
                }
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `#  NAME: value` under a commented `#envs:`, i.e. a key indented right after the `#`.
fn is_nested_key(text: &str) -> bool {
    text.starts_with("  ") && {
        let key = text.trim_start();
        key.split_once(':')
            .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    }
}

#[test]
fn example_config_as_shipped_gives_exactly_the_defaults_and_no_warnings() {
    let loaded = load(EXAMPLE_CONFIG);
    assert_eq!(loaded.warnings, []);
    assert_eq!(loaded.config, Config::defaults(&env()));
    assert_eq!(loaded.config, load("").config);
}

#[test]
fn example_config_documents_every_key_and_round_trips_with_every_key_set() {
    let live = uncomment_every_key(EXAMPLE_CONFIG);
    for key in EVERY_KEY {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            live.lines()
                .any(|line| line.trim_start().starts_with(&format!("{leaf}:"))),
            "config.example.yaml does not document `{key}`"
        );
    }
    let loaded = load(&live);
    // Every documented key is known: the only warnings are for keys not acted on yet.
    let warned: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    let mut not_acted_on: Vec<&str> = NOT_ACTED_ON.iter().map(|entry| entry.key).collect();
    not_acted_on.sort_unstable();
    let mut warned_sorted = warned.clone();
    warned_sorted.sort_unstable();
    assert_eq!(warned_sorted, not_acted_on, "{:#?}", loaded.warnings);
    // The documented values are the defaults, except where the example shows a sample.
    let mut expected = Config::defaults(&env());
    expected.runner.envs = [
        ("A_TEST_ENV_NAME_1", "a_test_env_value_1"),
        ("A_TEST_ENV_NAME_2", "a_test_env_value_2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    expected.runner.env_file = Some(PathBuf::from(".env"));
    expected.runner.labels = vec![
        Label::parse("ubuntu-latest:docker://docker.gitea.com/runner-images:ubuntu-latest")
            .unwrap(),
        Label::parse("self-hosted:host").unwrap(),
    ];
    expected.container.network_create_options.enable_ipv4 = Some(true);
    expected.container.network_create_options.enable_ipv6 = Some(false);
    expected.container.valid_volumes = vec!["data".into(), "/src/*.json".into()];
    assert_eq!(loaded.config, expected);
    // Nothing in the example is left commented that looks like a key.
    let n_keys = live
        .lines()
        .filter(|line| {
            line.trim_start().starts_with('#') && line.contains(": ") && !line.contains(' ')
        })
        .count();
    assert_eq!(n_keys, 0);
}

#[test]
fn every_valid_data_file_loads() {
    let files = data_files("valid");
    assert!(files.len() >= 4, "found {} files", files.len());
    for file in &files {
        let loaded =
            Config::load_with(Some(file), &env()).unwrap_or_else(|error| panic!("{error}"));
        // Keys not acted on yet are warned about; nothing else is.
        let unexpected: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|warning| act_runner::config::not_acted_on(&warning.key).is_none())
            .collect();
        assert_eq!(
            unexpected,
            [] as [&act_runner::config::KeyMessage; 0],
            "{}",
            file.display()
        );
    }
}

#[test]
fn every_invalid_data_file_fails_naming_file_line_and_key() {
    let files = data_files("invalid");
    assert!(files.len() >= 10, "found {} files", files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // First line: `# expect: <key or -> <line or -> <words of the reason>`.
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap();
        let mut parts = expect.splitn(3, ' ');
        let (key, line, reason) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let error = Config::load_with(Some(file), &env()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&file.display().to_string()), "{message}");
        if key != "-" {
            assert!(matches!(error, ConfigError::Invalid(_)), "{message}");
            assert!(message.contains(&format!("`{key}`")), "{message}");
        }
        if line != "-" {
            assert!(message.contains(&format!(":{line}:")), "{message}");
        }
        assert!(
            message.contains(reason),
            "{} should say {reason:?}: {message}",
            file.display()
        );
    }
}

#[test]
fn every_invalid_value_is_reported_at_once() {
    let message = load_error("runner:\n  capacity: x\n  timeout: 5x\ncache:\n  port: -1\n");
    assert!(message.contains("3 problems"), "{message}");
    for needle in [
        "config.yaml:2:13: `runner.capacity`",
        "config.yaml:3:12: `runner.timeout`",
        "config.yaml:5:9: `cache.port`",
    ] {
        assert!(message.contains(needle), "{needle} missing in {message}");
    }
}

#[test]
fn unknown_keys_are_warnings_naming_key_and_line() {
    let loaded = load(
        "runner:\n  capacity: 2\n  capacityy: 3\nfoo: 1\ncontainer:\n  network_create_options:\n    ipv9: true\n",
    );
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "config.yaml:3:3: `runner.capacityy`: unknown key, it will be ignored",
            "config.yaml:7:5: `container.network_create_options.ipv9`: unknown key, it will be ignored",
            "config.yaml:4:1: `foo`: unknown key, it will be ignored",
        ]
    );
    assert_eq!(loaded.config.runner.capacity, 2);
}

#[test]
fn go_durations_parse_as_go_does() {
    for (text, expected) in [
        ("3h", Duration::from_secs(3 * 3600)),
        ("1h30m", Duration::from_secs(5400)),
        ("500ms", Duration::from_millis(500)),
        ("10m0s", Duration::from_secs(600)),
        ("1.5h", Duration::from_secs(5400)),
        ("2000000000", Duration::from_secs(2)),
    ] {
        let loaded = load(&format!("runner:\n  timeout: {text}\n"));
        assert_eq!(loaded.config.runner.timeout, expected, "{text}");
    }
    // A bare integer is nanoseconds, as in Go, and almost never what was meant: warn.
    let loaded = load("runner:\n  timeout: 30\n");
    assert_eq!(loaded.config.runner.timeout, Duration::from_nanos(30));
    assert!(
        loaded.warnings[0].message.contains("nanoseconds"),
        "{:?}",
        loaded.warnings
    );
    // `0s` on a key whose zero means "use the default".
    assert_eq!(
        load("runner:\n  timeout: 0s\n").config.runner.timeout,
        Duration::from_secs(3 * 3600)
    );
    // `0s` on a key whose zero is a real value.
    assert_eq!(
        load("runner:\n  shutdown_timeout: 0s\n")
            .config
            .runner
            .shutdown_timeout,
        Duration::ZERO
    );
    assert!(load_error("runner:\n  timeout: 1h 30m\n").contains("`runner.timeout`"));
}

#[test]
fn defaults_match_upstream() {
    let config = Config::defaults(&env());
    assert_eq!(config.log.level, LogLevel::Info);
    assert!(!config.log.journald);
    assert_eq!(config.log.job.dir, None);
    assert_eq!(
        config.log.job.retention,
        Some(Duration::from_secs(168 * 3600))
    );
    assert_eq!(config.log.job.max_size, Some(1 << 30));
    let runner = &config.runner;
    assert_eq!(runner.file, PathBuf::from(".runner"));
    assert_eq!(runner.capacity, 1);
    assert_eq!(runner.timeout, Duration::from_secs(3 * 3600));
    assert_eq!(runner.shutdown_timeout, Duration::ZERO);
    assert_eq!(runner.fetch_timeout, Duration::from_secs(5));
    assert_eq!(runner.fetch_interval, Duration::from_secs(2));
    assert_eq!(runner.fetch_interval_max, Duration::from_secs(5));
    assert_eq!(
        runner.workdir_cleanup_age,
        Some(Duration::from_secs(24 * 3600))
    );
    assert_eq!(runner.idle_cleanup_interval, Some(Duration::from_secs(600)));
    assert_eq!(runner.log_report_interval, Duration::from_secs(5));
    assert_eq!(runner.log_report_max_latency, Duration::from_secs(3));
    assert_eq!(runner.log_report_batch_size, 100);
    assert_eq!(runner.state_report_interval, Duration::from_secs(5));
    assert_eq!(runner.report_close_timeout, Duration::from_secs(10));
    assert!(runner.action_shallow_clone && runner.set_act_env && runner.patch_actions);
    assert!(!runner.allocate_pty && !runner.insecure);
    assert_eq!(
        runner.default_image,
        "docker.gitea.com/runner-images:ubuntu-latest"
    );
    assert_eq!(runner.tool_cache_mode, ToolCacheMode::None);
    assert_eq!(runner.post_task_script_timeout, Duration::from_secs(300));
    assert_eq!(runner.protocol, RpcProtocol::Connect);
    let cache = &config.cache;
    assert!(cache.enabled && cache.v2);
    assert_eq!(cache.dir, PathBuf::from("/home/runner/.cache/actcache"));
    assert_eq!(cache.port, 0);
    assert_eq!(cache.retention, Some(Duration::from_secs(168 * 3600)));
    assert_eq!(cache.repo_size_limit, Some(10 << 30));
    assert_eq!(cache.size_limit, None);
    assert_eq!(cache.sweep_interval, Duration::from_secs(3600));
    let container = &config.container;
    assert_eq!(container.network, None);
    assert_eq!(container.workdir_parent, "workspace");
    assert_eq!(container.docker_host, DockerHost::Detect);
    assert_eq!(container.docker_timeout, Duration::ZERO);
    assert_eq!(
        container.service_ready_timeout,
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        config.host.workdir_parent,
        PathBuf::from("/home/runner/.cache/act")
    );
    assert!(!config.metrics.enabled);
    assert_eq!(config.metrics.addr.to_string(), "127.0.0.1:9101");
    assert_eq!(config.metrics.readiness_grace, Duration::from_secs(30));
    assert!(!config.health_check.enabled);
    assert_eq!(config.health_check.min_free_disk_space_mb, 1024);
    assert_eq!(config.health_check.interval, Duration::from_secs(30));
    assert_eq!(config.health_check.timeout, Duration::from_secs(10));
}

#[test]
fn zero_and_negative_values_follow_upstream() {
    let config = load(
        "runner:\n  capacity: -3\n  workdir_cleanup_age: 0\n  idle_cleanup_interval: -1s\n\
         log:\n  job:\n    retention: 0s\n    max_size: 0\n\
         cache:\n  retention: 0s\n  repo_size_limit: 0\n  sweep_interval: 0s\n\
         container:\n  service_ready_timeout: -1s\n",
    )
    .config;
    assert_eq!(config.runner.capacity, 1);
    assert_eq!(config.runner.workdir_cleanup_age, None);
    assert_eq!(config.runner.idle_cleanup_interval, None);
    assert_eq!(config.log.job.retention, None);
    assert_eq!(config.log.job.max_size, None);
    assert_eq!(config.cache.retention, None);
    assert_eq!(config.cache.repo_size_limit, None);
    assert_eq!(config.cache.sweep_interval, Duration::from_secs(3600));
    assert_eq!(config.container.service_ready_timeout, None);
    assert_eq!(
        load("container:\n  service_ready_timeout: 0s\n")
            .config
            .container
            .service_ready_timeout,
        Some(Duration::from_secs(300))
    );
}

#[test]
fn clamped_values_warn() {
    let loaded =
        load("runner:\n  fetch_timeout: 2m\n  fetch_interval: 10s\n  fetch_interval_max: 3s\n");
    assert_eq!(loaded.config.runner.fetch_timeout, Duration::from_secs(60));
    assert_eq!(
        loaded.config.runner.fetch_interval_max,
        Duration::from_secs(10)
    );
    let keys: Vec<&str> = loaded
        .warnings
        .iter()
        .map(|warning| warning.key.as_str())
        .collect();
    assert_eq!(keys, ["runner.fetch_timeout", "runner.fetch_interval_max"]);
}

#[test]
fn a_shared_tool_cache_warns_only_with_concurrent_jobs() {
    let shared = load("runner:\n  capacity: 2\n  tool_cache_mode: shared\n");
    assert_eq!(shared.config.runner.tool_cache_mode, ToolCacheMode::Shared);
    let warnings: Vec<(&str, u64)> = shared
        .warnings
        .iter()
        .map(|warning| (warning.key.as_str(), warning.line))
        .collect();
    assert_eq!(warnings, [("runner.tool_cache_mode", 3)]);
    assert!(shared.warnings[0].message.contains("concurrent jobs"));
    let alone = load("runner:\n  capacity: 1\n  tool_cache_mode: shared\n");
    assert!(alone.warnings.is_empty(), "{:?}", alone.warnings);
}

#[test]
fn deprecated_network_mode_maps_to_network() {
    let loaded = load("container:\n  network_mode: bridge\n");
    assert_eq!(loaded.config.container.network, None);
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(
        load("container:\n  network_mode: mynet\n")
            .config
            .container
            .network
            .as_deref(),
        Some("mynet")
    );
}

#[test]
fn env_file_is_merged_over_envs_and_a_missing_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("runner.env");
    std::fs::write(&env_file, "B=from-file\nC=3\n").unwrap();
    let text = format!(
        "runner:\n  envs:\n    A: 1\n    B: from-config\n  env_file: {}\n",
        env_file.display()
    );
    let envs = load(&text).config.runner.envs;
    let pairs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(pairs, [("A", "1"), ("B", "from-file"), ("C", "3")]);
    let missing = format!(
        "runner:\n  env_file: {}\n",
        dir.path().join("nope.env").display()
    );
    assert!(load(&missing).config.runner.envs.is_empty());
    std::fs::write(&env_file, "not a variable\n").unwrap();
    assert!(load_error(&text).contains("`runner.env_file`"));
}

#[test]
fn external_secret_file_is_read_trimmed_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("cache-secret");
    std::fs::write(&secret_file, "  s3cr3t-value\n").unwrap();
    let text = format!(
        "cache:\n  external_server: http://cache:8088//\n  external_secret_file: {}\n",
        secret_file.display()
    );
    let config = load(&text).config;
    assert_eq!(
        config.cache.external_secret.as_ref().unwrap().expose(),
        "s3cr3t-value"
    );
    assert_eq!(
        config.cache.external_server.as_deref(),
        Some("http://cache:8088/")
    );
    assert!(!format!("{config:?}").contains("s3cr3t"));
    std::fs::write(&secret_file, "\n").unwrap();
    assert!(load_error(&text).contains("is empty"));
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let error = Config::load_with(Some(Path::new("/nonexistent/config.yaml")), &env()).unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/config.yaml"),
        "{error}"
    );
}

#[test]
fn labels_in_config_are_parsed_and_empty_ones_skipped_with_a_warning() {
    let loaded = load("runner:\n  labels:\n    - a\n    - ''\n    - b:docker://alpine\n");
    let shown: Vec<String> = loaded
        .config
        .runner
        .labels
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["a:host", "b:docker://alpine"]);
    assert_eq!(loaded.warnings[0].line, 4);
}

#[test]
fn cache_dir_defaults_to_the_state_directory_then_xdg_cache_home_then_home() {
    let mut env = LoadEnv::with_home("/home/runner");
    env.xdg_cache_home = Some(PathBuf::from("/xdg/cache"));
    let config = Config::from_yaml("", Path::new("config.yaml"), &env)
        .unwrap()
        .config;
    assert_eq!(config.cache.dir, PathBuf::from("/xdg/cache/actcache"));
    env.state_directory = Some(PathBuf::from("/var/lib/act-runner"));
    let config = Config::from_yaml("", Path::new("config.yaml"), &env)
        .unwrap()
        .config;
    assert_eq!(config.cache.dir, PathBuf::from("/var/lib/act-runner/cache"));
    let config = Config::from_yaml(
        "cache:\n  dir: /srv/cache\n",
        Path::new("config.yaml"),
        &env,
    )
    .unwrap()
    .config;
    assert_eq!(config.cache.dir, PathBuf::from("/srv/cache"));
}
