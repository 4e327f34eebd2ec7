//! A tiny program for the systemd integration tests: it takes what systemd passed (as `main` of
//! `act_runner` does), answers one connection on the inherited `metrics` listener, and shows what
//! a job process spawned through `child_env::scrub` would see (its environment and open sockets).

use std::io::Write as _;
use std::process::{Command, ExitCode};

use act_runner::systemd::{Inherited, child_env};

fn main() -> ExitCode {
    let inherited = Inherited::capture();
    match inherited.metrics_listener {
        Ok(Some(listener)) => {
            let Ok(address) = listener.local_addr() else {
                return ExitCode::from(3);
            };
            println!("listener: {address}");
            // The listener is non-blocking (ready for tokio); this probe waits with a short spin.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.write_all(b"served by the inherited metrics listener\n");
                        break;
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(e) => {
                        println!("accept error: {e}");
                        return ExitCode::from(4);
                    }
                }
            }
        }
        Ok(None) => println!("listener: none"),
        Err(error) => {
            println!("listener error: {error}");
        }
    }
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("env; for f in /proc/$$/fd/*; do echo \"fd: $(readlink $f)\"; done");
    child_env::scrub(&mut command);
    match command.output() {
        Ok(output) => {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                println!("child: {line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("spawn error: {error}");
            ExitCode::from(5)
        }
    }
}
