//! `act_runner register`: gathers the instance, registration token, name and labels (flags,
//! token sources, the config, or prompts), pings the instance, calls Register, and writes the
//! `.runner` file with the runner token the server returned.
//!
//! The token comes from, in order: `--token-file`, `--token`, `GITEA_RUNNER_REGISTRATION_TOKEN`,
//! then the systemd credential `$CREDENTIALS_DIRECTORY/registration-token`. Unlike upstream
//! today, the token prompt is reachable: without any source, interactive mode asks for it.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::client::proto::ping::PingRequest;
use crate::client::proto::runner::RegisterRequest;
use crate::client::{Client, ClientError, ClientSettings, RunnerApi};
use crate::config::{
    Config, DEFAULT_LABELS, Label, LockError, REQUEST_TIMEOUT, Registration, RegistrationLock,
    Secret, small_file,
};

use super::CliError;

/// How many times the instance is pinged (one second apart) before giving up. Upstream retries
/// forever; a bound lets a unit or script notice an unreachable instance.
pub const PING_ATTEMPTS: u32 = 30;
/// The file name of the registration token among systemd credentials.
pub const TOKEN_CREDENTIAL: &str = "registration-token";
/// The environment variable holding the registration token.
pub const TOKEN_ENV: &str = "GITEA_RUNNER_REGISTRATION_TOKEN";

/// Flags of `register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// Disable the prompts; --instance and a token are then required.
    #[arg(long)]
    pub no_interactive: bool,
    /// Gitea instance URL, e.g. https://gitea.example.com/.
    #[arg(long)]
    pub instance: Option<String>,
    /// Registration token (visible to other local users in the process list: prefer
    /// --token-file, GITEA_RUNNER_REGISTRATION_TOKEN or a systemd credential).
    #[arg(long)]
    pub token: Option<String>,
    /// File holding the registration token; wins over --token and the environment.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Runner name; defaults to the host name.
    #[arg(long)]
    pub name: Option<String>,
    /// Comma-separated labels, e.g. `ubuntu-latest:docker://node:20,self:host`.
    #[arg(long)]
    pub labels: Option<String>,
    /// Ask for an ephemeral runner: it takes one job and is then deleted by the server.
    #[arg(long)]
    pub ephemeral: bool,
}

/// Everything Register needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct RegisterInputs {
    /// As entered, trimmed (a trailing slash is kept, as upstream stores it).
    pub instance: String,
    pub token: Secret,
    pub name: String,
    pub labels: Vec<Label>,
    pub ephemeral: bool,
}

/// Runs the command.
pub fn run(config_path: Option<PathBuf>, args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let loaded = Config::load(config_path.as_deref())?;
    super::init_logging(crate::config::LogLevel::Info);
    super::log_config_warnings(&loaded.warnings);
    let config = loaded.config;
    tracing::info!(
        arch = std::env::consts::ARCH,
        os = std::env::consts::OS,
        version = crate::VERSION,
        "Registering runner"
    );
    if !nix::unistd::Uid::effective().is_root() {
        tracing::warn!("Runner in user-mode.");
    }
    let token = resolve_token(&TokenSources {
        token_file: args.token_file.as_deref(),
        token_flag: args.token.as_deref(),
        env_token: std::env::var(TOKEN_ENV).ok(),
        credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
    })?;
    let partial = PartialInputs {
        instance: trimmed(args.instance),
        token,
        name: trimmed(args.name),
        labels: args.labels.as_deref().map(split_labels),
        ephemeral: args.ephemeral,
    };
    let inputs = if args.no_interactive {
        non_interactive(partial, &config, &hostname())?
    } else {
        let stdin = io::stdin();
        let mut prompter = Prompter {
            input: stdin.lock(),
            output: io::stderr(),
            echo_hint: !io::stdin().is_terminal(),
        };
        match interactive(partial, &config, &hostname(), &mut prompter)? {
            Some(inputs) => inputs,
            None => return Ok(ExitCode::SUCCESS),
        }
    };
    let runner_file = config.runner.file.clone();
    let _lock = match RegistrationLock::try_acquire(&runner_file) {
        Ok(lock) => Some(lock),
        Err(error @ LockError::Locked { .. }) => {
            return Err(anyhow::Error::from(error).context("stop it before re-registering"));
        }
        Err(error) => {
            tracing::warn!(error = %error, "cannot lock the registration file, continuing");
            None
        }
    };
    tracing::info!(
        name = %inputs.name,
        instance = %inputs.instance,
        labels = ?inputs.labels.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "Registering runner"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let registration = runtime.block_on(async {
        let api = connect(&config, &inputs.instance)?;
        tokio::select! {
            registration = register_runner(&api, &inputs) => registration,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        }
    })?;
    registration.save(&runner_file)?;
    tracing::info!("Runner registered successfully.");
    Ok(ExitCode::SUCCESS)
}

/// Builds the client for `instance` without credentials (Register needs none).
fn connect(config: &Config, instance: &str) -> Result<Client, ClientError> {
    Client::new(ClientSettings {
        instance: instance.to_owned(),
        protocol: super::client_protocol(config.runner.protocol),
        insecure: config.runner.insecure,
        timeout: REQUEST_TIMEOUT,
        credentials: None,
    })
}

/// Pings the instance (bounded retries), calls Register and returns what to store in `.runner`.
pub async fn register_runner(
    api: &impl RunnerApi,
    inputs: &RegisterInputs,
) -> anyhow::Result<Registration> {
    ping_until_reachable(api, &inputs.name).await?;
    let request = RegisterRequest {
        name: inputs.name.clone(),
        token: inputs.token.expose().to_owned(),
        version: crate::VERSION.to_owned(),
        labels: inputs
            .labels
            .iter()
            .map(|label| label.name.clone())
            .collect(),
        ephemeral: inputs.ephemeral,
        capabilities: vec!["cancelling".to_owned()],
        ..RegisterRequest::default()
    };
    let response = match api.register(request).await {
        Ok(response) => response,
        // Gitea answers a bad, rotated or orphaned registration token with a plain error.
        Err(ClientError::Server { message, .. }) => {
            return Err(CliError::RegistrationRejected { message }.into());
        }
        Err(error) => {
            return Err(
                anyhow::Error::from(error).context("cannot register with the Gitea instance")
            );
        }
    };
    let runner = response
        .runner
        .context("the server accepted the registration but returned no runner")?;
    if runner.uuid.is_empty() || runner.token.is_empty() {
        anyhow::bail!("the server returned a runner without uuid or token");
    }
    if runner.ephemeral != inputs.ephemeral {
        tracing::error!(
            requested = inputs.ephemeral,
            granted = runner.ephemeral,
            "the Gitea instance is too old for ephemeral runners"
        );
    }
    Ok(Registration {
        id: runner.id,
        uuid: runner.uuid,
        name: runner.name,
        token: Secret::new(runner.token),
        address: inputs.instance.clone(),
        labels: inputs.labels.iter().map(ToString::to_string).collect(),
        ephemeral: inputs.ephemeral,
    })
}

async fn ping_until_reachable(api: &impl RunnerApi, name: &str) -> anyhow::Result<()> {
    let mut attempt = 1;
    loop {
        let request = PingRequest {
            data: name.to_owned(),
        };
        match api.ping(request).await {
            Ok(_) => return Ok(()),
            Err(
                error @ (ClientError::Transport { .. }
                | ClientError::Unavailable { .. }
                | ClientError::DeadlineExceeded { .. }),
            ) if attempt < PING_ATTEMPTS => {
                tracing::warn!(error = %error, attempt, "Cannot ping the Gitea instance server");
                tokio::time::sleep(Duration::from_secs(1)).await;
                attempt += 1;
            }
            Err(error) => {
                return Err(anyhow::Error::from(error).context("cannot reach the Gitea instance"));
            }
        }
    }
}

/// What the flags and token sources gave, before prompts or defaults.
#[derive(Debug, Clone, Default)]
pub struct PartialInputs {
    pub instance: Option<String>,
    pub token: Option<Secret>,
    pub name: Option<String>,
    /// The `--labels` elements, trimmed, empty ones dropped.
    pub labels: Option<Vec<String>>,
    pub ephemeral: bool,
}

/// Where a registration token may come from, in precedence order.
#[derive(Debug)]
pub struct TokenSources<'a> {
    pub token_file: Option<&'a Path>,
    pub token_flag: Option<&'a str>,
    pub env_token: Option<String>,
    /// `$CREDENTIALS_DIRECTORY`, when systemd passes credentials.
    pub credentials_dir: Option<PathBuf>,
}

/// The first non-empty token among the sources (each trimmed); `None` when none has one.
pub fn resolve_token(sources: &TokenSources<'_>) -> anyhow::Result<Option<Secret>> {
    if let Some(path) = sources
        .token_file
        .filter(|path| !path.as_os_str().is_empty())
    {
        let text = small_file::read_to_string(path)
            .with_context(|| format!("cannot read the token file: {}", path.display()))?;
        return Ok(Some(Secret::new(text.trim())).filter(|token| !token.is_empty()));
    }
    if let Some(token) = sources
        .token_flag
        .map(str::trim)
        .filter(|token| !token.is_empty())
    {
        return Ok(Some(Secret::new(token)));
    }
    if let Some(token) = sources
        .env_token
        .as_deref()
        .map(str::trim)
        .filter(|token| !token.is_empty())
    {
        return Ok(Some(Secret::new(token)));
    }
    if let Some(dir) = &sources.credentials_dir {
        let path = dir.join(TOKEN_CREDENTIAL);
        match small_file::read_to_string(&path) {
            Ok(text) => return Ok(Some(Secret::new(text.trim())).filter(|token| !token.is_empty())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(anyhow::Error::from(error)
                    .context(format!("cannot read the credential {}", path.display())));
            }
        }
    }
    Ok(None)
}

/// Splits `--labels`: trimmed elements, empty ones dropped. (Upstream keeps the spaces around
/// each element, which gives labels no `runs-on` can match; the daemon already trims.)
pub fn split_labels(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|label| !label.is_empty())
        .map(str::to_owned)
        .collect()
}

fn trimmed(value: Option<String>) -> Option<String> {
    value
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

fn parse_labels(texts: &[String]) -> Result<Vec<Label>, CliError> {
    texts
        .iter()
        .map(|text| {
            Label::parse(text)
                .map_err(|error| CliError::InvalidInput(format!("invalid label {text:?}: {error}")))
        })
        .collect()
}

fn default_labels() -> Vec<Label> {
    DEFAULT_LABELS
        .iter()
        .filter_map(|text| Label::parse(text).ok())
        .collect()
}

/// `--no-interactive`: config labels win over `--labels`, then the default labels; the name
/// defaults to the host name; instance and token are required.
pub fn non_interactive(
    partial: PartialInputs,
    config: &Config,
    hostname: &str,
) -> anyhow::Result<RegisterInputs> {
    let instance = partial.instance.ok_or_else(|| {
        CliError::InvalidInput("instance address is empty: pass --instance <url>".to_owned())
    })?;
    let token = partial.token.ok_or_else(|| {
        CliError::InvalidInput(format!(
            "missing token: pass --token-file, --token, set {TOKEN_ENV}, or provide the systemd \
             credential {TOKEN_CREDENTIAL}"
        ))
    })?;
    let labels = if !config.runner.labels.is_empty() {
        if partial.labels.is_some() {
            tracing::warn!(
                "Labels from command will be ignored, use labels defined in config file."
            );
        }
        config.runner.labels.clone()
    } else {
        match partial.labels {
            Some(texts) if !texts.is_empty() => parse_labels(&texts)?,
            _ => default_labels(),
        }
    };
    let name = partial.name.unwrap_or_else(|| {
        tracing::info!(hostname, "Runner name is empty, use hostname");
        hostname.to_owned()
    });
    Ok(RegisterInputs {
        instance,
        token,
        name,
        labels,
        ephemeral: partial.ephemeral,
    })
}

/// Asks questions on a text stream (the terminal, or whatever stdin is).
pub struct Prompter<R, W> {
    pub input: R,
    pub output: W,
    /// Print a newline after each prompt, because a non-terminal does not echo the answer.
    pub echo_hint: bool,
}

impl<R: BufRead, W: Write> Prompter<R, W> {
    /// Asks `question` and returns the trimmed answer. End of input is an error naming the
    /// question, so a closed stdin never loops.
    fn ask(&mut self, question: &str) -> anyhow::Result<String> {
        write!(self.output, "{question} ")?;
        if self.echo_hint {
            writeln!(self.output)?;
        }
        self.output.flush()?;
        let mut line = String::new();
        let n_read = self
            .input
            .read_line(&mut line)
            .context("cannot read the answer")?;
        if n_read == 0 {
            return Err(CliError::InvalidInput(format!(
                "no answer to {question:?} (input closed); pass --instance and a token, or use --no-interactive"
            ))
            .into());
        }
        Ok(line.trim().to_owned())
    }
}

/// The prompts, each skipped when its value is already known. `None` means the user declined to
/// overwrite an existing registration.
pub fn interactive<R: BufRead, W: Write>(
    partial: PartialInputs,
    config: &Config,
    hostname: &str,
    prompter: &mut Prompter<R, W>,
) -> anyhow::Result<Option<RegisterInputs>> {
    if config.runner.file.is_file() {
        let answer = prompter.ask("Runner is already registered, overwrite local config? [y/N]")?;
        if !answer.eq_ignore_ascii_case("y") {
            tracing::info!("Registration skipped, the existing registration is kept.");
            return Ok(None);
        }
    }
    let instance = match partial.instance {
        Some(instance) => instance,
        None => loop {
            let answer =
                prompter.ask("Enter the Gitea instance URL (for example, https://gitea.com/):")?;
            if !answer.is_empty() {
                break answer;
            }
        },
    };
    let token = match partial.token {
        Some(token) => token,
        None => loop {
            let answer = prompter.ask("Enter the runner token:")?;
            if !answer.is_empty() {
                break Secret::new(answer);
            }
        },
    };
    let name = match partial.name {
        Some(name) => name,
        None => {
            let answer = prompter.ask(&format!(
                "Enter the runner name (if set empty, use hostname: {hostname}):"
            ))?;
            if answer.is_empty() {
                hostname.to_owned()
            } else {
                answer
            }
        }
    };
    let labels = if !config.runner.labels.is_empty() {
        config.runner.labels.clone()
    } else if let Some(texts) = partial.labels.filter(|texts| !texts.is_empty()) {
        parse_labels(&texts)?
    } else {
        let question = "Enter the runner labels, leave blank to use the default labels (comma-separated, for example, ubuntu-latest:docker://docker.gitea.com/runner-images:ubuntu-latest):";
        let answer = prompter.ask(question)?;
        let texts = split_labels(&answer);
        if texts.is_empty() {
            default_labels()
        } else {
            parse_labels(&texts)?
        }
    };
    Ok(Some(RegisterInputs {
        instance,
        token,
        name,
        labels,
        ephemeral: partial.ephemeral,
    }))
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "act-runner".to_owned())
}
