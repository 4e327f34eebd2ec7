//! Process entry: takes systemd's inherited fds and environment before the async runtime starts,
//! then hands over to the command line.

fn main() -> std::process::ExitCode {
    // First, while the process has one thread: taking the socket-activated listener edits the
    // environment (listenfd removes LISTEN_PID/LISTEN_FDS), which is only sound single-threaded.
    let inherited = act_runner::systemd::Inherited::capture();
    act_runner::cli::main(inherited)
}
