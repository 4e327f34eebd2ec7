//! Process entry: takes systemd's inherited fds and environment before the async runtime starts,
//! then hands over to the command line.

fn main() -> std::process::ExitCode {
    act_runner::cli::main()
}
