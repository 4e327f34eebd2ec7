//! The command line: one file per command. The only room that uses `anyhow` and maps errors to exit
//! codes (0 done, 1 runtime failure, 77 not registered or rejected, 78 invalid configuration).

pub mod cache_server;
pub mod daemon;
pub mod exec;
pub mod generate_config;
pub mod register;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A systemd-native Gitea Actions runner.
#[derive(Debug, Parser)]
#[command(name = "act_runner", version = crate::VERSION, about, long_about = None)]
pub struct Cli {
    /// Config file path (YAML). Without it every default applies.
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,

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
    /// Print an example config file documenting every key.
    GenerateConfig(generate_config::GenerateConfigArgs),
    /// Serve the actions/cache API on its own.
    CacheServer(cache_server::CacheServerArgs),
}

/// Parses the command line, runs the command and turns its outcome into the process exit code.
/// `inherited` is what systemd passed, captured by `main` before any thread started.
pub fn main(inherited: crate::systemd::Inherited) -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Register(args) => register::run(cli.config, args),
        Command::Daemon(args) => daemon::run(cli.config, args, inherited),
        Command::Exec(args) => exec::run(cli.config, *args),
        Command::GenerateConfig(args) => generate_config::run(args),
        Command::CacheServer(args) => cache_server::run(cli.config, args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}
