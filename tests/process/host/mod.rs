//! rodent on a host, without an orchestrator in front: systemd socket activation
//! (`LISTEN_FDS`), replacements on a listening socket held by someone else, and `rodent
//! restart` for daemon mode. The promise is Kubernetes' one: no request is lost while the
//! process is replaced.
//!
//! Run with `--nocapture` to see the figures.

mod activation;
mod handover;
mod restart;
mod units;

use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use kit::Spawn;

/// Where a socket-activated service finds its first descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// The command that starts rodent the way a service manager starts a socket-activated service:
/// `fd` as descriptor 3, `LISTEN_FDS=1`, and `LISTEN_PID` naming the process itself. The PID is
/// only known once the process exists, so a shell sets it and then `exec`s rodent, which keeps
/// the shell's PID (systemd does the same between its fork and its exec).
fn activated_command(spawn: &Spawn, fd: RawFd) -> Command {
    let mut command = spawn.command_via(
        &["sh", "-c", r#"export LISTEN_PID=$$; exec "$0" "$@""#],
        kit::binary(),
    );
    command.env("LISTEN_FDS", "1");
    inherit_as_first_fd(&mut command, fd);
    command
}

/// rodent started on `listener` as a socket-activated service would be.
fn on_socket(spawn: &Spawn, listener: &TcpListener) -> Command {
    activated_command(spawn, listener.as_raw_fd())
}

/// Makes `fd` descriptor 3 of the process `command` starts, open across its exec.
fn inherit_as_first_fd(command: &mut Command, fd: RawFd) {
    // SAFETY: dup2 and fcntl are async-signal-safe, and `fd` is open in the parent (the caller
    // holds it), so in the child too.
    unsafe {
        command.pre_exec(move || {
            if fd == FIRST_FD {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, FIRST_FD) != FIRST_FD {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A listening socket on loopback that the test holds, as systemd holds a `.socket` unit's.
fn held_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("the OS picks a free port")
}

/// The environment variables a process started with, from `/proc/<pid>/environ`.
fn environ_of(pid: nix::unistd::Pid) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("the process exists");
    raw.split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The socket activation variables among `environ`.
fn activation_variables(environ: &[String]) -> Vec<&String> {
    environ
        .iter()
        .filter(|v| v.starts_with("LISTEN_"))
        .collect()
}
