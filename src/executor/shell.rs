//! Shells of `run:` steps: turning `shell:` (or its absence) into a command template whose `{0}` is the
//! script path, plus the script's file extension and the wrapping some shells need.

/// Which interpreters the job environment has, probed once per job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Available {
    pub bash: bool,
    pub python: bool,
    pub python3: bool,
}

impl Available {
    /// The probe script; prints one known name per line.
    pub const PROBE: &'static str = "for c in bash python python3; do command -v \"$c\" >/dev/null 2>&1 && echo \"$c\"; done; true";

    pub fn from_probe_output(lines: &[String]) -> Available {
        let has = |name: &str| lines.iter().any(|line| line.trim() == name);
        Available {
            bash: has("bash"),
            python: has("python"),
            python3: has("python3"),
        }
    }
}

/// How to run a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// Arguments, with `{0}` standing for the script path.
    pub template: Vec<String>,
    /// File extension of the script (with the dot), or empty.
    pub extension: &'static str,
    pub script_prefix: &'static str,
    pub script_suffix: &'static str,
}

const PWSH_PREFIX: &str = "$ErrorActionPreference = 'stop'\n";
const PWSH_SUFFIX: &str =
    "\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) { exit $LASTEXITCODE }\n";

impl ShellCommand {
    fn plain(template: &[&str], extension: &'static str) -> ShellCommand {
        ShellCommand {
            template: template.iter().map(|arg| arg.to_string()).collect(),
            extension,
            script_prefix: "",
            script_suffix: "",
        }
    }

    /// The argv for a script at `script_path`.
    pub fn argv(&self, script_path: &str) -> Vec<String> {
        self.template
            .iter()
            .map(|arg| arg.replace("{0}", script_path))
            .collect()
    }

    /// The script text with the wrapping this shell needs.
    pub fn script(&self, body: &str) -> String {
        format!("{}{body}{}", self.script_prefix, self.script_suffix)
    }
}

/// Resolves `shell:`; `None` is the default (`bash -e {0}`, or `sh -e {0}` without bash).
pub fn resolve(shell: Option<&str>, available: &Available) -> Result<ShellCommand, String> {
    let Some(shell) = shell.map(str::trim).filter(|shell| !shell.is_empty()) else {
        return Ok(if available.bash {
            ShellCommand::plain(&["bash", "-e", "{0}"], ".sh")
        } else {
            ShellCommand::plain(&["sh", "-e", "{0}"], ".sh")
        });
    };
    Ok(match shell {
        "bash" => ShellCommand::plain(
            &["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
            ".sh",
        ),
        "sh" => ShellCommand::plain(&["sh", "-e", "{0}"], ".sh"),
        "python" => {
            let program = if !available.python && available.python3 {
                "python3"
            } else {
                "python"
            };
            ShellCommand::plain(&[program, "{0}"], ".py")
        }
        "pwsh" | "powershell" => ShellCommand {
            template: vec![shell.to_string(), "-command".into(), ". '{0}'".into()],
            extension: ".ps1",
            script_prefix: PWSH_PREFIX,
            script_suffix: PWSH_SUFFIX,
        },
        "cmd" => return Err("shell `cmd` is only available on Windows".into()),
        custom if custom.contains("{0}") => {
            let template =
                shell_words::split(custom).map_err(|error| format!("shell `{custom}`: {error}"))?;
            ShellCommand {
                template,
                extension: "",
                script_prefix: "",
                script_suffix: "",
            }
        }
        other => {
            return Err(format!(
                "unknown shell `{other}`: use bash, sh, python, pwsh, powershell, or a command with `{{0}}` for the script"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(shell: Option<&str>, available: &Available) -> Vec<String> {
        resolve(shell, available).unwrap().argv("/s")
    }

    #[test]
    fn default_is_bash_without_pipefail_falling_back_to_sh() {
        let bash = Available {
            bash: true,
            ..Available::default()
        };
        assert_eq!(argv(None, &bash), ["bash", "-e", "/s"]);
        assert_eq!(argv(None, &Available::default()), ["sh", "-e", "/s"]);
    }

    #[test]
    fn explicit_bash_has_pipefail() {
        assert_eq!(
            argv(Some("bash"), &Available::default()),
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "/s"]
        );
    }

    #[test]
    fn python_falls_back_to_python3() {
        let only3 = Available {
            python3: true,
            ..Available::default()
        };
        assert_eq!(argv(Some("python"), &only3), ["python3", "/s"]);
    }

    #[test]
    fn custom_template_is_split_like_a_shell() {
        assert_eq!(
            argv(Some("perl -w '{0}' x"), &Available::default()),
            ["perl", "-w", "/s", "x"]
        );
    }

    #[test]
    fn pwsh_wraps_the_script() {
        let shell = resolve(Some("pwsh"), &Available::default()).unwrap();
        assert_eq!(shell.argv("/s"), ["pwsh", "-command", ". '/s'"]);
        assert!(shell.script("x").starts_with("$ErrorActionPreference"));
    }

    #[test]
    fn unknown_shell_is_an_error() {
        assert!(resolve(Some("fish"), &Available::default()).is_err());
    }

    #[test]
    fn probe_output_is_read() {
        let available = Available::from_probe_output(&["bash".into(), "python3".into()]);
        assert_eq!(
            available,
            Available {
                bash: true,
                python: false,
                python3: true
            }
        );
    }
}
