//! The one integration test binary (ripgrep's layout): each module is one room's or one
//! feature's tests, in `tests/<name>.rs` (or `tests/<name>/` once split by topic), with what it
//! covers beside it; shared test code lives in `tests/support/`.

mod artifacts; // artifacts v4 through the fake Gitea and `runner.patch_actions`, end to end
mod cache; // the cache engine over loopback: v1 REST, v2 twirp, blob PUTs, grants, eviction, faults
mod cache_e2e; // `actions/cache` itself through the daemon and the fake Gitea
mod cli; // the binary: exit codes and messages, `generate-config`, `register` input
mod client; // the runner API client over Connect and gRPC, one conformance suite
mod config; // `config.yaml` loading: the example, valid and invalid files, defaults, warnings
mod config_cmd; // `config get|set|add|remove`: output, exit codes, what an edit keeps and refuses
mod config_keys; // no key is accepted and ignored: read where it acts, or listed as not acted on
mod daemon; // the daemon as a process against the fake Gitea (host backend)
mod daemon_docker; // the daemon with the Docker backend against the real engine
mod daemon_docker_leftovers; // what a stopped or killed daemon leaves in Docker, and the start-up sweep
mod daemon_faults; // delivery through failing and silent calls and an outage, rows exactly once
mod daemon_host_processes; // what host jobs leave behind: detached processes, a crash, inherited fds
mod daemon_hostile; // a hostile or broken server: bad payloads fail the task, not the runner
mod daemon_job_values; // what a daemon job sees of its task and of the runner's settings
mod daemon_reload; // SIGHUP: what applies at once, what is refused, what needs a restart
mod daemon_scripts; // keys that write files or run scripts: `log.job.*`, post-task script, hooks
mod daemon_step_keys; // keys that change how steps run: pty, tool cache, bound workdir
mod docker_backend; // the Docker backend against the real engine (shared Docker helpers here)
mod docker_network_pool; // the pool of pre-created job networks
mod docker_step_container; // step containers (docker actions): workspace, network, cancellation
mod exec_workflows; // every workflow under `tests/workflows/` through `act_runner exec`
mod executor; // `run_job`'s event contract on the host backend: order, masking, cancellation
mod executor_semantics; // workflow semantics that must match GitHub's, through `run_job`
mod expr; // the expression language: the conformance table, parser snapshots, fuzzing
mod instance_actions; // actions from the task's own Gitea, fetched with the task token only
mod job_summaries; // step summaries sent to the fake Gitea after the steps
mod metrics; // the metrics server: endpoints, labels, Slowloris, promtool and Prometheus
mod register; // `act_runner register` over Connect and gRPC
mod remote_actions; // remote actions from local git repositories, no internet
mod support; // shared test code: the fake Gitea, the Docker test images, running the binary
mod systemd; // notify, watchdog, socket activation, journald, credentials
mod tidy; // the house rules: module docs, room imports, file length, no ignored tests
mod wire; // wire compatibility: hand-written golden bytes decode and re-encode
