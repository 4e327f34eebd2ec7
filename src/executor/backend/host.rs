//! The host backend: a job's steps run as host processes in a fresh per-task directory
//! (`workspace/`, `temp/`, `tool_cache/`). The environment is explicit: a process gets exactly what
//! the executor passes, built on an allowlist of the runner's own variables (never systemd's
//! `NOTIFY_SOCKET`, `LISTEN_*`, `WATCHDOG_*`, `INVOCATION_ID`, `JOURNAL_STREAM`). Each command runs in
//! its own process group, killed as a whole (SIGTERM, then SIGKILL after a bound) on cancellation or
//! timeout; groups still alive at `cleanup` (background processes a step left) are killed too.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::executor::line_batch::LineBatch;

use super::docker::lines::{MAX_LINE_BYTES, utf8_cut};
use super::tree_copy::copy_entries;
use super::{
    Backend, BackendError, EnvironmentPaths, ExecEnd, ExecRequest, ExitStatus, JobContainers,
    MAX_COMMAND_FILE_BYTES, NewFile, OutputLines, PROXY_VARIABLES, Stream, WorkspaceHasher,
    command_file_too_large,
};

/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long output is still read after the main process exited (a background child may hold the pipe).
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// Runner variables a job process may see (and [`PROXY_VARIABLES`]); everything else is left out
/// on purpose.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs steps as host processes under `<parent>/<random>/`.
#[derive(Debug)]
pub struct HostBackend {
    root: PathBuf,
    paths: EnvironmentPaths,
    base_env: BTreeMap<String, String>,
    /// Process groups started, killed at cleanup in case a step left something running.
    process_groups: Mutex<Vec<i32>>,
}

impl HostBackend {
    /// A backend whose task directory will be created under `parent` (e.g. `host.workdir_parent`,
    /// or the system temp dir).
    pub fn new(parent: &Path) -> HostBackend {
        let root = parent.join(format!("{:016x}", rand::random::<u64>()));
        let paths = EnvironmentPaths {
            workspace: root.join("workspace"),
            temp: root.join("temp"),
            tool_cache: root.join("tool_cache"),
        };
        let mut base_env: BTreeMap<String, String> = std::env::vars()
            .filter(|(key, _)| {
                INHERITED_ENV.contains(&key.as_str())
                    || PROXY_VARIABLES.contains(&key.as_str())
                    || key.starts_with("LC_")
            })
            .collect();
        base_env
            .entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_PATH.to_string());
        HostBackend {
            root,
            paths,
            base_env,
            process_groups: Mutex::new(Vec::new()),
        }
    }

    /// The per-task directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.paths.workspace.join(path)
        }
    }

    fn forget_group(&self, pgid: i32) {
        if let Ok(mut groups) = self.process_groups.lock() {
            groups.retain(|group| *group != pgid);
        }
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> BackendError {
    move |source| BackendError::Io { context, source }
}

impl Backend for HostBackend {
    fn paths(&self) -> &EnvironmentPaths {
        &self.paths
    }

    fn os(&self) -> &str {
        "Linux"
    }

    /// A job that names containers never runs here as if it did not: the caller routes a job
    /// `container:` to Docker when it can, and whatever reaches the host is refused.
    fn configure(&mut self, containers: JobContainers) -> Result<(), BackendError> {
        let mut wanted: Vec<String> = containers
            .job
            .iter()
            .map(|container| format!("`container: {}`", container.image))
            .collect();
        wanted.extend(
            containers
                .services
                .iter()
                .map(|(id, _)| format!("service `{id}`")),
        );
        if wanted.is_empty() {
            return Ok(());
        }
        Err(BackendError::Policy(format!(
            "the job runs on the host, which runs no containers, but it asks for {}; run it on a \
             docker label, or give the runner Docker so that a job `container:` runs there",
            wanted.join(" and ")
        )))
    }

    fn base_env(&self) -> BTreeMap<String, String> {
        self.base_env.clone()
    }

    fn workspace_hasher(&self) -> Option<WorkspaceHasher> {
        let workspace = self.paths.workspace.clone();
        Some(Box::new(move |patterns: &[String]| {
            crate::executor::hash_files::hash_files(&workspace, patterns)
        }))
    }

    async fn prepare(&mut self, _log: &mpsc::Sender<String>) -> Result<(), BackendError> {
        for dir in [
            &self.paths.workspace,
            &self.paths.temp,
            &self.paths.tool_cache,
        ] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
        }
        // The task directory may receive secrets (command files, scripts): owner only.
        set_mode(&self.root, 0o700).await?;
        Ok(())
    }

    async fn exec(
        &self,
        request: ExecRequest,
        output: mpsc::Sender<OutputLines>,
        cancel: CancellationToken,
    ) -> Result<ExecEnd, BackendError> {
        let Some((program, args)) = request.argv.split_first() else {
            return Err(BackendError::Io {
                context: "empty command".into(),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        };
        let working_dir = match &request.working_dir {
            Some(dir) => self.resolve(dir),
            None => self.paths.workspace.clone(),
        };
        self.write_files(request.files).await?;
        let (output_reader, stdout, stderr) =
            output_pipe().map_err(io_error(String::from("cannot create the output pipe")))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(&request.env)
            .current_dir(&working_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true);
        let spawned = command.spawn();
        // The command holds the pipe's write ends: the output ends only once it lets them go.
        drop(command);
        let mut child = spawned.map_err(io_error(format!(
            "cannot start `{program}` in {}",
            working_dir.display()
        )))?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        if let (Some(pgid), Ok(mut groups)) = (pgid, self.process_groups.lock()) {
            groups.push(pgid);
        }

        let readers = forward_lines(Some(output_reader), Stream::Stdout, &output);
        tokio::pin!(readers);
        let mut readers_done = false;

        let deadline = async {
            match request.timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);

        let ended = loop {
            tokio::select! {
                status = child.wait() => break Ok(status),
                _ = &mut readers, if !readers_done => readers_done = true,
                () = &mut deadline => break Err(ExitStatus::TimedOut),
                () = cancel.cancelled() => break Err(ExitStatus::Cancelled),
            }
        };
        match ended {
            Ok(status) => {
                if !readers_done {
                    let _ = tokio::time::timeout(OUTPUT_DRAIN_LIMIT, &mut readers).await;
                }
                let status = status.map_err(io_error(format!("waiting for `{program}`")))?;
                let code = status.code().map(i64::from).unwrap_or_else(|| {
                    // Killed by a signal: report it the way shells do.
                    use std::os::unix::process::ExitStatusExt;
                    128 + i64::from(status.signal().unwrap_or(0))
                });
                // The command files are plain files here: reading them back costs nothing.
                Ok(ExitStatus::Exited(code).into())
            }
            Err(reason) => {
                if let Some(pgid) = pgid {
                    kill_group(pgid, &mut child).await;
                    self.forget_group(pgid);
                }
                let _ = tokio::time::timeout(OUTPUT_DRAIN_LIMIT, &mut readers).await;
                Ok(reason.into())
            }
        }
    }

    async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), BackendError> {
        let path = self.resolve(path);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io_error(format!("cannot create {}", parent.display())))?;
        }
        tokio::fs::write(&path, contents)
            .await
            .map_err(io_error(format!("cannot write {}", path.display())))?;
        set_mode(&path, mode).await
    }

    async fn write_files(&self, files: Vec<NewFile>) -> Result<(), BackendError> {
        for file in files {
            self.write_file(&file.path, &file.contents, file.mode)
                .await?;
        }
        Ok(())
    }

    async fn read_dir_files(&self, dir: &str) -> Result<BTreeMap<String, Vec<u8>>, BackendError> {
        let dir = self.resolve(dir);
        let mut files = BTreeMap::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(source) => {
                return Err(BackendError::Io {
                    context: format!("cannot list {}", dir.display()),
                    source,
                });
            }
        };
        let listing = |source| BackendError::Io {
            context: format!("cannot list {}", dir.display()),
            source,
        };
        while let Some(entry) = entries.next_entry().await.map_err(listing)? {
            if !entry.file_type().await.map_err(listing)?.is_file() {
                continue;
            }
            let path = entry.path();
            let read_error = |source| BackendError::Io {
                context: format!("cannot read {}", path.display()),
                source,
            };
            let mut contents = Vec::new();
            let file = tokio::fs::File::open(&path).await.map_err(read_error)?;
            // At most one byte past the bound is read, whatever the step keeps writing.
            file.take(MAX_COMMAND_FILE_BYTES + 1)
                .read_to_end(&mut contents)
                .await
                .map_err(read_error)?;
            if contents.len() as u64 > MAX_COMMAND_FILE_BYTES {
                return Err(command_file_too_large(&path.to_string_lossy()));
            }
            files.insert(entry.file_name().to_string_lossy().into_owned(), contents);
        }
        Ok(files)
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let path = self.resolve(path);
        match tokio::fs::read(&path).await {
            Ok(contents) => Ok(Some(contents)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BackendError::Io {
                context: format!("cannot read {}", path.display()),
                source,
            }),
        }
    }

    /// A remote action runs from its checkout in the action cache: nothing to copy.
    async fn import_dir(&self, host_dir: &Path, _path: &str) -> Result<String, BackendError> {
        Ok(host_dir.to_string_lossy().into_owned())
    }

    async fn import_files(
        &self,
        root: &Path,
        relative: Vec<PathBuf>,
        path: &str,
    ) -> Result<(), BackendError> {
        let source = root.to_path_buf();
        let dest = self.resolve(path);
        tokio::task::spawn_blocking(move || copy_entries(&source, &relative, &dest))
            .await
            .map_err(|error| BackendError::Io {
                context: format!("copying {}", root.display()),
                source: std::io::Error::other(error.to_string()),
            })?
    }

    async fn cleanup(&mut self) -> Result<(), BackendError> {
        let groups = self
            .process_groups
            .lock()
            .map(|mut groups| std::mem::take(&mut *groups))
            .unwrap_or_default();
        for pgid in groups {
            // The leader has exited; what is left are processes a step put in the background.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        match tokio::fs::remove_dir_all(&self.root).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(BackendError::Io {
                context: format!("cannot remove {}", self.root.display()),
                source,
            }),
        }
    }
}

async fn set_mode(path: &Path, mode: u32) -> Result<(), BackendError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(io_error(format!(
            "cannot set the mode of {}",
            path.display()
        )))
}

/// One pipe for a process's stdout and stderr (as `2>&1` does): the lines arrive in the order
/// the process wrote them, whichever stream each went to, so an `add-mask` printed on one stream
/// covers a line printed right after it on the other. Two pipes read apart give no such order.
fn output_pipe() -> std::io::Result<(pipe::Receiver, Stdio, Stdio)> {
    let (reader, writer) = std::io::pipe()?;
    let stderr = writer.try_clone()?;
    let reader = pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    Ok((reader, Stdio::from(writer), Stdio::from(stderr)))
}

/// SIGTERM to the whole group, then SIGKILL if the leader is still there after the grace.
async fn kill_group(pgid: i32, child: &mut tokio::process::Child) {
    let group = Pid::from_raw(pgid);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
    }
    // Children that ignored SIGTERM while the leader obeyed it.
    let _ = killpg(group, Signal::SIGKILL);
}

/// Forwards the complete lines of each read as one batch; `\n` ends a line and a `\r` before it is
/// dropped; the unterminated rest is sent when the stream ends, or in pieces of
/// [`MAX_LINE_BYTES`] while it passes that.
async fn forward_lines(
    reader: Option<impl AsyncRead + Unpin>,
    stream: Stream,
    output: &mpsc::Sender<OutputLines>,
) {
    let Some(reader) = reader else { return };
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let available = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(available) => available,
        };
        let n_read = available.len();
        let mut lines = LineBatch::new();
        let mut rest = available;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            if partial.is_empty() {
                push_line(&mut lines, &rest[..pos]);
            } else {
                partial.extend_from_slice(&rest[..pos]);
                push_line(&mut lines, &partial);
                partial.clear();
            }
            rest = &rest[pos + 1..];
        }
        partial.extend_from_slice(rest);
        // An unterminated line past the limit leaves in pieces, as on the Docker side, so output
        // without a newline cannot grow the buffer without end.
        while partial.len() > MAX_LINE_BYTES {
            let cut = utf8_cut(&partial, MAX_LINE_BYTES);
            push_line(&mut lines, &partial[..cut]);
            partial.drain(..cut);
        }
        reader.consume(n_read);
        if !lines.is_empty() && output.send(OutputLines { stream, lines }).await.is_err() {
            return;
        }
    }
    if !partial.is_empty() {
        let mut lines = LineBatch::new();
        push_line(&mut lines, &partial);
        let _ = output.send(OutputLines { stream, lines }).await;
    }
}

fn push_line(lines: &mut LineBatch, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    lines.push(&String::from_utf8_lossy(line));
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        backend: &HostBackend,
        script: &str,
        timeout: Option<Duration>,
        cancel: CancellationToken,
    ) -> (ExitStatus, Vec<String>) {
        let (tx, mut rx) = mpsc::channel(64);
        let request = ExecRequest {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: backend.base_env(),
            working_dir: None,
            timeout,
            files: Vec::new(),
            command_dir: None,
        };
        let status =
            tokio::time::timeout(Duration::from_secs(20), backend.exec(request, tx, cancel))
                .await
                .unwrap()
                .unwrap()
                .status;
        let mut lines = Vec::new();
        while let Ok(Some(output)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            let output: OutputLines = output;
            lines.extend(output.lines.iter().map(String::from));
        }
        (status, lines)
    }

    async fn prepared() -> (tempfile::TempDir, HostBackend) {
        let parent = tempfile::tempdir().unwrap();
        let mut backend = HostBackend::new(parent.path());
        let (tx, _rx) = mpsc::channel(8);
        backend.prepare(&tx).await.unwrap();
        (parent, backend)
    }

    #[tokio::test]
    async fn output_and_exit_code_are_reported() {
        let (_parent, backend) = prepared().await;
        let (status, lines) = run(
            &backend,
            "echo one; echo two >&2; exit 3",
            None,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status, ExitStatus::Exited(3));
        assert!(lines.contains(&"one".to_string()) && lines.contains(&"two".to_string()));
    }

    #[tokio::test]
    async fn environment_is_explicit() {
        let (_parent, backend) = prepared().await;
        let (_, lines) = run(
            &backend,
            "echo \"[$NOTIFY_SOCKET][$INVOCATION_ID]\"",
            None,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(lines, ["[][]"]);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let (_parent, backend) = prepared().await;
        let marker = backend.paths().temp.join("alive");
        let script = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let started = tokio::time::Instant::now();
        let (status, _) = run(
            &backend,
            &script,
            Some(Duration::from_millis(300)),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status, ExitStatus::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!marker.exists(), "the background child survived the kill");
    }

    #[tokio::test]
    async fn cancellation_stops_the_command() {
        let (_parent, backend) = prepared().await;
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let (status, _) = run(&backend, "sleep 30", None, cancel).await;
        assert_eq!(status, ExitStatus::Cancelled);
    }

    #[tokio::test]
    async fn background_process_does_not_hold_the_step() {
        let (_parent, backend) = prepared().await;
        let started = tokio::time::Instant::now();
        let (status, _) = run(
            &backend,
            "sleep 20 & echo started",
            None,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status, ExitStatus::Exited(0));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn files_round_trip_and_cleanup_removes_the_directory() {
        let (_parent, mut backend) = prepared().await;
        let path = backend.paths().temp.join("x/y.txt");
        backend
            .write_file(path.to_str().unwrap(), b"hi", 0o600)
            .await
            .unwrap();
        assert_eq!(
            backend
                .read_file(path.to_str().unwrap())
                .await
                .unwrap()
                .unwrap(),
            b"hi"
        );
        assert_eq!(backend.read_file("missing").await.unwrap(), None);
        let root = backend.root().to_path_buf();
        backend.cleanup().await.unwrap();
        assert!(!root.exists());
    }
}
