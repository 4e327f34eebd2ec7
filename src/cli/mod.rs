//! The command line: one file per command. The only room that uses `anyhow`, and the one place
//! that turns errors into exit codes ([`exit_code_for`]):
//!
//! | code | meaning | systemd |
//! |---|---|---|
//! | 0  | done | |
//! | 1  | runtime failure | restart |
//! | 77 | not registered, or rejected by the server (bad token, runner deleted) | no restart |
//! | 78 | invalid configuration or input | no restart |
//!
//! May use every room; no other room uses `cli`.

pub mod bug_report;
pub mod cache_admin;
mod cache_metrics;
pub mod cache_server;
pub mod cache_service;
pub mod completion;
pub mod config_edit;
pub mod daemon;
pub mod exec;
pub mod generate_config;
pub mod job_cgroup;
pub mod logging;
pub mod register;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::ClientError;
use crate::config::{ConfigError, EditError, KeyMessage, LogLevel, RegistrationError, RpcProtocol};

/// Exit code: the command did what it was asked.
pub const EXIT_OK: u8 = 0;
/// Exit code: a runtime failure worth a restart.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: not registered, or the server rejected the registration or the runner.
pub const EXIT_NOT_REGISTERED: u8 = 77;
/// Exit code: the configuration or the command's input is invalid.
pub const EXIT_INVALID_CONFIG: u8 = 78;

/// What `--version` prints after the binary's name: `act_runner version 0.1.0`, upstream's
/// (cobra's) shape, which install scripts cut the version out of.
const VERSION_TEXT: &str = concat!("version ", env!("CARGO_PKG_VERSION"));

/// A systemd-native Gitea Actions runner.
#[derive(Debug, Parser)]
#[command(
    name = "act_runner",
    version = VERSION_TEXT,
    disable_version_flag = true,
    about,
    long_about = None
)]
pub struct Cli {
    /// Config file path (YAML). Without it every default applies; `config get|set|add|remove`
    /// look for config.yaml or config.yml here, then beside the executable.
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,

    /// Print version (`-v` as upstream's).
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register this runner with a Gitea instance and write the registration file.
    Register(register::RegisterArgs),
    /// Poll Gitea for jobs and run them.
    Daemon(daemon::DaemonArgs),
    /// Run workflows locally, without Gitea.
    Exec(Box<exec::ExecArgs>),
    /// Print an example config file documenting every key (also `config generate`).
    GenerateConfig(generate_config::GenerateConfigArgs),
    /// Generate, read and edit config files: `generate` prints the example, `init` writes a
    /// minimal one, `get|set|add|remove` read or change one key.
    #[command(subcommand)]
    Config(generate_config::ConfigCommand),
    /// Print information useful when filing a bug report.
    BugReport(bug_report::BugReportArgs),
    /// Serve the actions/cache API on its own.
    CacheServer(cache_server::CacheServerArgs),
    /// List or delete the entries of the actions cache in `cache.dir`.
    #[command(subcommand)]
    Cache(cache_admin::CacheArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::CompletionArgs),
    /// The host backend's launcher: run a program in a job's cgroup.
    #[command(name = job_cgroup::COMMAND, hide = true)]
    JobCgroup(job_cgroup::JobCgroupArgs),
}

/// Errors the commands raise that decide an exit code by themselves.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No usable registration: tell the user how to register.
    #[error(
        "{} not found: this runner is not registered. Run `act_runner register` first, for example \
         `act_runner register --no-interactive --instance <url> --token <registration token>` \
         (use the same --config and working directory)",
        .path.display()
    )]
    NotRegistered { path: PathBuf },
    /// The server refused the registration (bad or rotated registration token, ...).
    #[error("the server rejected the registration: {message}")]
    RegistrationRejected { message: String },
    /// The command's input (flags, prompts, config values it needs) is unusable.
    #[error("{0}")]
    InvalidInput(String),
}

/// Parses the command line, runs the command and turns its outcome into the process exit code.
/// `inherited` is what systemd passed, captured by `main` before any thread started.
pub fn main(inherited: crate::systemd::Inherited) -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Register(args) => register::run(cli.config, args),
        Command::Daemon(args) => daemon::run(cli.config, args, inherited),
        Command::Exec(args) => exec::run(cli.config, *args),
        Command::GenerateConfig(args) => generate_config::run(args),
        Command::Config(command) => generate_config::run_config(cli.config, command),
        Command::BugReport(args) => bug_report::run(args),
        Command::CacheServer(args) => cache_server::run(cli.config, args, inherited),
        Command::Cache(args) => cache_admin::run(cli.config, args),
        Command::Completion(args) => completion::run(args),
        Command::JobCgroup(args) => Ok(job_cgroup::run(args)),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::from(exit_code_for(&error))
        }
    }
}

/// The documented exit code for an error, decided by the first typed cause in its chain.
pub fn exit_code_for(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(edit_error) = cause.downcast_ref::<EditError>() {
            return match edit_error {
                // A script asks whether a key is set; a bug is no fault of the input.
                EditError::NotSet { .. } | EditError::Internal { .. } => EXIT_FAILURE,
                _ => EXIT_INVALID_CONFIG,
            };
        }
        if cause.is::<ConfigError>() {
            return EXIT_INVALID_CONFIG;
        }
        if let Some(cli_error) = cause.downcast_ref::<CliError>() {
            return match cli_error {
                CliError::NotRegistered { .. } | CliError::RegistrationRejected { .. } => {
                    EXIT_NOT_REGISTERED
                }
                CliError::InvalidInput(_) => EXIT_INVALID_CONFIG,
            };
        }
        if let Some(registration_error) = cause.downcast_ref::<RegistrationError>() {
            return match registration_error {
                RegistrationError::NotFound { .. } | RegistrationError::Corrupt { .. } => {
                    EXIT_NOT_REGISTERED
                }
                RegistrationError::Read { .. } | RegistrationError::Write { .. } => EXIT_FAILURE,
            };
        }
        match cause.downcast_ref::<ClientError>() {
            Some(ClientError::Unauthenticated { .. }) => return EXIT_NOT_REGISTERED,
            Some(ClientError::InvalidSettings { .. }) => return EXIT_INVALID_CONFIG,
            _ => {}
        }
    }
    EXIT_FAILURE
}

/// The client's transport for `runner.protocol`.
pub fn client_protocol(protocol: RpcProtocol) -> crate::client::Protocol {
    match protocol {
        RpcProtocol::Connect => crate::client::Protocol::Connect,
        RpcProtocol::Grpc => crate::client::Protocol::Grpc,
    }
}

/// Installs the log at `level` (`RUST_LOG` overrides it): stderr, or the journal when stderr is
/// the journal. A second call is a no-op, so commands may call it after reading their
/// configuration. The daemon uses [`logging::init`] directly to keep the reload handle.
pub fn init_logging(level: LogLevel) {
    let _ = logging::init(level, false);
}

/// Logs what loading the configuration warned about.
pub fn log_config_warnings(warnings: &[KeyMessage]) {
    for warning in warnings {
        tracing::warn!(
            file = %warning.path.display(),
            line = warning.line,
            key = %warning.key,
            "config: {}",
            warning.message
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::client::Method;

    #[test]
    fn every_error_kind_maps_to_its_documented_code() {
        let cases: Vec<(anyhow::Error, u8)> = vec![
            (ConfigError::Invalid(Vec::new()).into(), EXIT_INVALID_CONFIG),
            (
                anyhow::Error::from(ConfigError::Read {
                    path: "c.yaml".into(),
                    source: std::io::ErrorKind::NotFound.into(),
                })
                .context("loading"),
                EXIT_INVALID_CONFIG,
            ),
            (
                CliError::NotRegistered {
                    path: ".runner".into(),
                }
                .into(),
                EXIT_NOT_REGISTERED,
            ),
            (
                CliError::RegistrationRejected {
                    message: "no".into(),
                }
                .into(),
                EXIT_NOT_REGISTERED,
            ),
            (
                CliError::InvalidInput("x".into()).into(),
                EXIT_INVALID_CONFIG,
            ),
            (
                RegistrationError::Corrupt {
                    path: Path::new(".runner").into(),
                    reason: "x".into(),
                }
                .into(),
                EXIT_NOT_REGISTERED,
            ),
            (
                anyhow::Error::from(ClientError::Unauthenticated {
                    method: Method::FetchTask,
                    url: "http://gitea/api/actions".into(),
                    message: "unregistered runner".into(),
                })
                .context("polling"),
                EXIT_NOT_REGISTERED,
            ),
            (
                ClientError::InvalidSettings {
                    url: "not a url".into(),
                    message: "relative URL".into(),
                }
                .into(),
                EXIT_INVALID_CONFIG,
            ),
            (
                ClientError::DeadlineExceeded {
                    method: Method::Ping,
                    url: "http://gitea/api/actions".into(),
                    timeout: std::time::Duration::from_secs(60),
                }
                .into(),
                EXIT_FAILURE,
            ),
            (
                anyhow::Error::from(EditError::NotSet {
                    key: "metrics".into(),
                })
                .context("c.yaml"),
                EXIT_FAILURE,
            ),
            (
                EditError::WouldBeInvalid(ConfigError::Invalid(Vec::new())).into(),
                EXIT_INVALID_CONFIG,
            ),
            (
                EditError::AlreadyContains {
                    key: "runner.labels".into(),
                    value: "x".into(),
                }
                .into(),
                EXIT_INVALID_CONFIG,
            ),
            (anyhow::anyhow!("anything else"), EXIT_FAILURE),
        ];
        for (error, code) in cases {
            assert_eq!(exit_code_for(&error), code, "{error:#}");
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
