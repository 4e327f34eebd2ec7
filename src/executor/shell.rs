//! Shells of `run:` steps: turning `shell:` (or its absence) into a command template whose `{0}` is the
//! script path, plus the script's file extension and the wrapping some shells need.

use super::backend::RunningContainers;
use super::model::{Job, Located, Pos, RunDefaults, Workflow};

/// The default shell: `bash -e {0}`, or `sh -e {0}` where there is no bash. The choice is made
/// by `sh` inside the job at the step's own start, so no separate probe exec delays the first step.
const DEFAULT_DISPATCH: &str =
    "if command -v bash >/dev/null 2>&1; then exec bash -e \"$0\"; fi; exec sh -e \"$0\"";
/// `shell: python`: `python {0}`, or `python3 {0}` where there is no `python`.
const PYTHON_DISPATCH: &str =
    "if command -v python >/dev/null 2>&1; then exec python \"$0\"; fi; exec python3 \"$0\"";

/// The `defaults.run` of a job's `run:` steps: the job's own, else the workflow's.
pub fn run_defaults(workflow: &Workflow, job: &Job) -> RunDefaults {
    RunDefaults {
        shell: job
            .defaults
            .shell
            .clone()
            .or_else(|| workflow.defaults.shell.clone()),
        working_directory: job
            .defaults
            .working_directory
            .clone()
            .or_else(|| workflow.defaults.working_directory.clone()),
    }
}

/// In a job's `container:` a `run:` step without `shell:` runs `sh -e {0}`, as on GitHub
/// (actions/runner#1533); elsewhere (the host, which runs no container, or the runner's own
/// image) the default stays `bash -e {0}` with its `sh` fallback.
pub fn container_default(defaults: &mut RunDefaults, job: &Job, running: &RunningContainers) {
    if job.container.is_some() && running.job.is_some() {
        defaults.shell.get_or_insert_with(|| Located {
            value: String::from("sh"),
            at: Pos::default(),
        });
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
pub fn resolve(shell: Option<&str>) -> Result<ShellCommand, String> {
    let Some(shell) = shell.map(str::trim).filter(|shell| !shell.is_empty()) else {
        return Ok(ShellCommand::plain(
            &["sh", "-c", DEFAULT_DISPATCH, "{0}"],
            ".sh",
        ));
    };
    Ok(match shell {
        "bash" => ShellCommand::plain(
            &["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
            ".sh",
        ),
        "sh" => ShellCommand::plain(&["sh", "-e", "{0}"], ".sh"),
        "python" => ShellCommand::plain(&["sh", "-c", PYTHON_DISPATCH, "{0}"], ".py"),
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
    use std::path::Path;
    use std::process::Command;

    use super::*;

    fn argv(shell: Option<&str>) -> Vec<String> {
        resolve(shell).unwrap().argv("/s")
    }

    /// Runs `shell` on `script` with only the named programs on PATH (linked into a temp dir).
    fn run_with_only(shell: Option<&str>, programs: &[&str], script: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for program in programs {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|dir| Path::new(dir).join(program))
                .find(|path| path.exists())
                .unwrap_or_else(|| panic!("{program} is needed on this host"));
            std::os::unix::fs::symlink(found, bin.join(program)).unwrap();
        }
        let script_path = dir.path().join("script");
        std::fs::write(&script_path, script).unwrap();
        let argv = resolve(shell).unwrap().argv(script_path.to_str().unwrap());
        let output = Command::new(bin.join(&argv[0]))
            .args(&argv[1..])
            .env_clear()
            .env("PATH", &bin)
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn default_is_bash_without_pipefail() {
        let script = "echo \"bash=${BASH_VERSION:+yes}\"; set -o | grep -E '^(errexit|pipefail)' | tr -s ' \\t' ' '\n";
        assert_eq!(
            run_with_only(None, &["sh", "bash", "grep", "tr"], script),
            "bash=yes\nerrexit on\npipefail off\n"
        );
    }

    #[test]
    fn default_falls_back_to_sh_with_errexit() {
        let script = "echo \"bash=${BASH_VERSION:+yes}\"; false; echo not reached\n";
        assert_eq!(run_with_only(None, &["sh"], script), "bash=\n");
    }

    #[test]
    fn explicit_bash_has_pipefail() {
        assert_eq!(
            argv(Some("bash")),
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "/s"]
        );
    }

    #[test]
    fn python_falls_back_to_python3() {
        let script = "import sys, os; print(os.path.basename(sys.argv[0]) != '', os.path.basename(sys.executable))\n";
        assert_eq!(
            run_with_only(Some("python"), &["sh", "python3"], script),
            "True python3\n"
        );
    }

    #[test]
    fn custom_template_is_split_like_a_shell() {
        assert_eq!(argv(Some("perl -w '{0}' x")), ["perl", "-w", "/s", "x"]);
    }

    #[test]
    fn pwsh_wraps_the_script() {
        let shell = resolve(Some("pwsh")).unwrap();
        assert_eq!(shell.argv("/s"), ["pwsh", "-command", ". '/s'"]);
        assert!(shell.script("x").starts_with("$ErrorActionPreference"));
    }

    #[test]
    fn a_job_container_defaults_to_sh_unless_defaults_say_otherwise() {
        let workflow = |defaults: &str| {
            Workflow::parse(&format!(
                "on: push\n{defaults}jobs:\n  c:\n    container: img\n    steps: [{{run: x}}]\n  \
                 plain:\n    steps: [{{run: x}}]\n"
            ))
            .unwrap()
        };
        let in_docker = RunningContainers {
            job: Some(Default::default()),
            services: Vec::new(),
        };
        let default_shell = |workflow: &Workflow, job_id: &str, running: &RunningContainers| {
            let job = &workflow.jobs[job_id];
            let mut defaults = run_defaults(workflow, job);
            container_default(&mut defaults, job, running);
            defaults.shell.map(|shell| shell.value)
        };
        let plain = workflow("");
        assert_eq!(
            default_shell(&plain, "c", &in_docker).as_deref(),
            Some("sh")
        );
        assert_eq!(argv(Some("sh")), ["sh", "-e", "/s"]);
        assert_eq!(default_shell(&plain, "plain", &in_docker), None);
        assert_eq!(
            default_shell(&plain, "c", &RunningContainers::default()),
            None,
            "host"
        );
        let configured = workflow("defaults:\n  run:\n    shell: bash\n");
        assert_eq!(
            default_shell(&configured, "c", &in_docker).as_deref(),
            Some("bash")
        );
    }

    #[test]
    fn unknown_shell_is_an_error() {
        assert!(resolve(Some("fish")).is_err());
    }
}
