//! What a Docker job leaves behind when the daemon stops: nothing after a SIGTERM in any phase
//! of the job, and what a `kill -9` leaves is removed by the next start of the same runner only.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use act_runner::client::Method;
use act_runner::sync::lock;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::daemon_docker::{IMAGE, docker, docker_ready};
use crate::support::fake_gitea::{FakeGitea, Faults, InjectedError, TaskSpec};

/// A runner registered with the Docker label `label`, and its UUID.
async fn docker_runner(gitea: &FakeGitea, label: &str) -> (RunnerDir, String) {
    let dir = RunnerDir::register(gitea, &format!("{label}:docker://{IMAGE}"), "").await;
    let text = std::fs::read_to_string(dir.path().join(".runner")).unwrap();
    let registration: serde_json::Value = serde_json::from_str(&text).unwrap();
    let uuid = registration["uuid"].as_str().unwrap().to_string();
    (dir, uuid)
}

/// Docker's events from its start on, read live (the daemon keeps only the last few hundred for
/// `--since`, which other tests on the machine soon push out): the volumes a runner's containers
/// mounted, since volumes carry no labels.
struct EventWatch {
    lines: Arc<Mutex<Vec<String>>>,
    _child: tokio::process::Child,
}

impl EventWatch {
    async fn start() -> EventWatch {
        let mut child = tokio::process::Command::new("docker")
            .args([
                "events",
                "--format",
                "{{.Type}} {{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}",
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("docker events runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&lines);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lock(&collected).push(line);
            }
        });
        // Events are only streamed once the subscription is in place; a marker shows it is.
        let watch = EventWatch {
            lines,
            _child: child,
        };
        let marker = format!(
            "act-runner-events-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        for _ in 0..100 {
            docker(&["network", "create", &marker]).await;
            docker(&["network", "rm", &marker]).await;
            if lock(&watch.lines).iter().any(|line| line.contains(&marker)) {
                return watch;
            }
        }
        panic!("docker events shows nothing");
    }

    /// The volumes mounted by containers labelled with `uuid`.
    async fn volumes_of(&self, uuid: &str) -> BTreeSet<String> {
        // The stream lags a little behind what it reports.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lines = lock(&self.lines).clone();
        let parsed: Vec<(&str, &str, &str, serde_json::Value)> = lines
            .iter()
            .filter_map(|line| {
                let mut fields = line.splitn(4, ' ');
                let (kind, action, id) = (fields.next()?, fields.next()?, fields.next()?);
                Some((kind, action, id, serde_json::from_str(fields.next()?).ok()?))
            })
            .collect();
        let ours: BTreeSet<&str> = parsed
            .iter()
            .filter(|(kind, _, _, attributes)| {
                *kind == "container" && attributes["com.gitea.runner.uuid"] == uuid
            })
            .map(|(_, _, id, _)| *id)
            .collect();
        parsed
            .iter()
            .filter(|(kind, action, _, attributes)| {
                *kind == "volume"
                    && *action == "mount"
                    && attributes["container"]
                        .as_str()
                        .is_some_and(|id| ours.contains(id))
            })
            .map(|(_, _, id, _)| id.to_string())
            .collect()
    }
}

/// What the runner `uuid` has in Docker: containers, networks, and the volumes its containers
/// mounted while `events` watched.
async fn resources_of(uuid: &str, events: &EventWatch) -> BTreeSet<String> {
    let label = format!("label=com.gitea.runner.uuid={uuid}");
    let mut left = BTreeSet::new();
    for name in docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"])
        .await
        .lines()
    {
        left.insert(format!("container {name}"));
    }
    for name in docker(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"])
        .await
        .lines()
    {
        left.insert(format!("network {name}"));
    }
    for volume in events.volumes_of(uuid).await {
        let filter = format!("name=^{volume}$");
        if !docker(&["volume", "ls", "-q", "--filter", &filter])
            .await
            .is_empty()
        {
            left.insert(format!("volume {volume}"));
        }
    }
    left
}

/// A job with an anonymous volume whose main step sleeps `step_s` and whose `if: always()` step
/// (what runs after a cancel, as post steps do) sleeps `post_s`.
fn workflow(step_s: u32, post_s: u32) -> String {
    format!(
        "on: push\njobs:\n  build:\n    runs-on: docker-test\n    container:\n      image: {IMAGE}\n      volumes: [/scratch]\n    steps:\n      - run: echo step-started; sleep {step_s}\n      - if: always()\n        run: echo post-started; sleep {post_s}\n"
    )
}

/// When the SIGTERM comes, relative to the job.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This long after the task was fetched (prepare: image, network, containers).
    AfterFetch(Duration),
    /// Once the main step runs.
    InStep,
    /// Once the `if: always()` step runs.
    InPostStep,
    /// Once the task is final (the job's cleanup runs).
    AtFinal,
}

impl Moment {
    fn workflow(self) -> String {
        match self {
            Moment::AfterFetch(_) | Moment::InStep => workflow(30, 0),
            Moment::InPostStep => workflow(0, 30),
            Moment::AtFinal => workflow(0, 0),
        }
    }

    async fn wait(self, gitea: &FakeGitea, task_id: i64) {
        let has_row = |row: &'static str| {
            move |gitea: &FakeGitea| gitea.task_log_lines(task_id).iter().any(|line| line == row)
        };
        let limit = Duration::from_secs(60);
        let reached = match self {
            Moment::AfterFetch(delay) => {
                let fetched = gitea
                    .wait_until(limit, |gitea| {
                        gitea
                            .task_state(task_id)
                            .is_some_and(|task| task.runner_id.is_some())
                    })
                    .await;
                tokio::time::sleep(delay).await;
                fetched
            }
            Moment::InStep => gitea.wait_until(limit, has_row("step-started")).await,
            Moment::InPostStep => gitea.wait_until(limit, has_row("post-started")).await,
            Moment::AtFinal => gitea.wait_task_final(task_id, limit).await.is_some(),
        };
        assert!(reached, "{self:?} never came");
    }
}

/// Removes what a failing test found, so it does not stay on the machine.
async fn remove_all(resources: &BTreeSet<String>) {
    for resource in resources {
        match resource.split_once(' ') {
            Some(("container", name)) => docker(&["rm", "-f", "-v", name]).await,
            Some((kind, name)) => docker(&[kind, "rm", "-f", name]).await,
            None => String::new(),
        };
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_in_any_phase_of_a_docker_job_leaves_nothing() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let (dir, uuid) = docker_runner(&gitea, "docker-test").await;
        let mut moments: Vec<Moment> = [0, 10, 25, 50, 75, 100, 150, 200, 300]
            .into_iter()
            .map(|ms| Moment::AfterFetch(Duration::from_millis(ms)))
            .collect();
        moments.extend([Moment::InStep, Moment::InPostStep, Moment::AtFinal]);
        let mut left_behind = Vec::new();
        for moment in moments {
            let events = EventWatch::start().await;
            let task_id = gitea.enqueue_task(TaskSpec::from_workflow(&moment.workflow()).unwrap());
            let mut daemon = Daemon::start(&dir, &[]).await;
            moment.wait(&gitea, task_id).await;
            daemon.signal(Signal::SIGTERM);
            let status = daemon.wait_exit(Duration::from_secs(60)).await;
            assert_eq!(status, Some(0), "{moment:?}: {}", daemon.log());
            // Checked before the next start, whose start-up sweep would hide a leftover.
            let left = resources_of(&uuid, &events).await;
            if !left.is_empty() {
                left_behind.push(format!("{moment:?}: {left:?}"));
                remove_all(&left).await;
            }
        }
        assert!(
            left_behind.is_empty(),
            "left behind:\n{}",
            left_behind.join("\n")
        );
    })
    .await;
}

/// Creates a container and a network labelled as a job of `uuid` made them; their names.
async fn job_leftovers(uuid: &str) -> BTreeSet<String> {
    let name = format!(
        "act-runner-leftover-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let labels = [
        format!("com.gitea.runner.uuid={uuid}"),
        String::from("act-runner.task-id=999999"),
    ];
    let network = format!("{name}-network");
    docker(&[
        "network", "create", "--label", &labels[0], "--label", &labels[1], &network,
    ])
    .await;
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &network,
        "-v",
        "/scratch",
        "--label",
        &labels[0],
        "--label",
        &labels[1],
        IMAGE,
        "sleep",
        "300",
    ])
    .await;
    BTreeSet::from([format!("container {name}"), format!("network {network}")])
}

/// Waits until the only daemon polling `gitea` so far polls, which it does after its start-up sweep.
async fn wait_past_start_sweep(gitea: &FakeGitea, daemon: &Daemon) {
    let polling = gitea
        .wait_until(Duration::from_secs(30), |gitea| {
            gitea.rpc_count(Method::FetchTask) > 0
        })
        .await;
    assert!(polling, "{}", daemon.log());
}

/// What a job's cleanup missed (its drain given up on, a failed removal) is removed at exit.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_removes_what_the_runners_jobs_left_in_docker() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let (dir, uuid) = docker_runner(&gitea, "docker-test").await;
        let events = EventWatch::start().await;
        let mut daemon = Daemon::start(&dir, &[]).await;
        wait_past_start_sweep(&gitea, &daemon).await;
        let made = job_leftovers(&uuid).await;
        assert!(made.is_subset(&resources_of(&uuid, &events).await));
        daemon.signal(Signal::SIGTERM);
        assert_eq!(
            daemon.wait_exit(Duration::from_secs(60)).await,
            Some(0),
            "{}",
            daemon.log()
        );
        let left = resources_of(&uuid, &events).await;
        remove_all(&left).await;
        assert!(left.is_empty(), "left at exit: {left:?}\n{}", daemon.log());
    })
    .await;
}

/// A `kill -9` mid-step leaves the job's containers, networks and volume and the pool's spares;
/// the next start of the same runner removes them, and leaves a second runner's alone.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_kill_9_mid_step_the_next_start_removes_only_this_runners_leftovers() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let (dir, uuid) = docker_runner(&gitea, "docker-test").await;
        // Another label, so that it does not take the task.
        let (other_dir, other_uuid) = docker_runner(&gitea, "other-test").await;
        let events = EventWatch::start().await;
        let other = Daemon::start(&other_dir, &[]).await;
        wait_past_start_sweep(&gitea, &other).await;
        let other_made = job_leftovers(&other_uuid).await;

        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(&workflow(120, 0)).unwrap());
        let daemon = Daemon::start(&dir, &[]).await;
        Moment::InStep.wait(&gitea, task_id).await;
        // The replacement spare (with its sandbox, the image now known) is made once the job runs.
        let spare_ready =
            |left: &BTreeSet<String>| left.iter().any(|name| name.ends_with("-sandbox"));
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while !spare_ready(&resources_of(&uuid, &events).await)
            && std::time::Instant::now() < give_up
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        daemon.kill_hard().await;
        let killed_left = resources_of(&uuid, &events).await;
        // Checked at the end, after the clean-up.
        let killed_left_all = killed_left.iter().any(|name| name.starts_with("volume"))
            && killed_left.iter().any(|name| name.ends_with("-sandbox"));

        let restarted = Daemon::start(&dir, &[]).await;
        // The new daemon's own spares carry the same UUID; none of the old names may remain.
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        let still_there = loop {
            let now = resources_of(&uuid, &events).await;
            let still_there: BTreeSet<String> = now.intersection(&killed_left).cloned().collect();
            if still_there.is_empty() || std::time::Instant::now() > give_up {
                break still_there;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let other_left = resources_of(&other_uuid, &events).await;
        let log = restarted.log();
        restarted.stop().await;
        other.stop().await;
        remove_all(&still_there).await;
        remove_all(&other_made).await;
        assert!(killed_left_all, "{killed_left:?}");
        assert!(
            still_there.is_empty(),
            "not removed: {still_there:?}\n{log}"
        );
        assert!(
            other_made.is_subset(&other_left),
            "another runner's were removed: {other_left:?}"
        );
        assert!(
            log.contains("removed orphaned job containers and networks"),
            "{log}"
        );
    })
    .await;
}

/// The start-up sweep does not wait for Gitea: a daemon that cannot Declare (and exits to be
/// restarted) has removed what a killed one left.
#[tokio::test(flavor = "multi_thread")]
async fn the_start_up_sweep_runs_while_gitea_cannot_be_reached() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let (dir, uuid) = docker_runner(&gitea, "docker-test").await;
        let events = EventWatch::start().await;
        let made = job_leftovers(&uuid).await;
        gitea.set_faults(Method::Declare, Faults::always(InjectedError::Unavailable));
        let mut daemon = Daemon::start(&dir, &[]).await;
        let status = daemon.wait_exit(Duration::from_secs(60)).await;
        let left = resources_of(&uuid, &events).await;
        remove_all(&left).await;
        assert_eq!(status, Some(1), "{}", daemon.log());
        assert!(
            left.is_empty(),
            "not removed: {left:?} of {made:?}\n{}",
            daemon.log()
        );
    })
    .await;
}
