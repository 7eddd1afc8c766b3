//! `serve --detach`: the launcher returns only once the daemon serves, or with its error; and
//! systemd's notifications for a foreground service.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::{SIGHUP, SIGKILL, SIGTERM};
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::support::namespace::{children, process};
use crate::support::{
    BINARY, PATIENCE, Spawn, TempDir, code_of, connect, get_on, require_root, require_tool, rodent,
};

/// A daemon started by a test. Not our child: killed through its PID file if a test fails.
struct Daemon {
    dir: TempDir,
}

impl Daemon {
    fn new(name: &str) -> Self {
        Self {
            dir: TempDir::new(name),
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("rodent.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("rodent.log")
    }

    fn spawn(&self) -> Spawn {
        rodent()
            .env("RODENT_PID_FILE", self.pid_file().to_str().unwrap())
            .env("RODENT_LOG_FILE", self.log_file().to_str().unwrap())
    }

    /// Runs `rodent <args>`; returns (code, stdout, stderr).
    fn run(&self, spawn: &Spawn, args: &[&str]) -> (i32, String, String) {
        let mut command = spawn.command();
        command.args(args);
        let output = command.output().expect("rodent runs");
        (
            code_of(&output),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn written_pid(&self) -> Pid {
        let text = std::fs::read_to_string(self.pid_file()).expect("the PID file exists");
        Pid::from_raw(text.trim().parse().expect("a PID"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Waits for a line with this `message` in the log file (written by a background thread,
    /// so it may land a moment after the event).
    fn wait_log(&self, message: &str) {
        let needle = format!(r#""message":"{message}""#);
        let deadline = Instant::now() + PATIENCE;
        while !self.log().contains(&needle) {
            assert!(
                Instant::now() < deadline,
                "no {message:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.pid_file()) else {
            return;
        };
        if let Ok(pid) = text.trim().parse() {
            let pid = Pid::from_raw(pid);
            for child in children(pid) {
                let _ = kill(child, SIGKILL);
            }
            let _ = kill(pid, SIGKILL);
        }
    }
}

/// `rodent is running (PID N), listening on ADDR` → (N, ADDR).
fn announced(out: &str) -> (Pid, SocketAddr) {
    let rest = out
        .trim()
        .strip_prefix("rodent is running (PID ")
        .unwrap_or_else(|| panic!("unexpected announcement: {out}"));
    let (pid, address) = rest
        .split_once("), listening on ")
        .expect("PID and address");
    (
        Pid::from_raw(pid.parse().unwrap()),
        address.parse().unwrap(),
    )
}

/// Waits until `pid` is gone (a zombie counts: it no longer runs).
fn wait_gone(pid: Pid) {
    let deadline = Instant::now() + PATIENCE;
    while process(pid).is_some_and(|p| !p.is_zombie()) {
        assert!(Instant::now() < deadline, "{pid} is still running");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn field(stat: &str, index_after_comm: usize) -> i32 {
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace()
        .nth(index_after_comm)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn detach_returns_once_the_daemon_serves_and_stop_stops_it() {
    let daemon = Daemon::new("detach");
    let spawn = daemon.spawn();
    let (code, out, err) = daemon.run(&spawn, &["serve", "--detach"]);
    assert_eq!(code, 0, "{out}{err}\nlog:\n{}", daemon.log());
    let (pid, address) = announced(&out);

    // Ready before the launcher returned: no waiting, no retry.
    let mut stream = connect(address);
    assert_eq!(get_on(&mut stream, "/readyz").unwrap().status, 200);

    assert_eq!(
        daemon.written_pid(),
        pid,
        "the PID file holds the daemon's PID"
    );
    let (code, out, _) = daemon.run(&spawn, &["status"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("rodent is running (PID {pid})").as_str())
    );

    // Detached for real: its own session (and not its leader), in /, stdin from /dev/null,
    // output to the log file, umask 027.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let session = field(&stat, 3);
    assert_ne!(session, pid.as_raw(), "not a session leader");
    assert_ne!(
        session,
        nix::unistd::getsid(None).unwrap().as_raw(),
        "a new session"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        PathBuf::from("/")
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(),
        PathBuf::from("/dev/null")
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap(),
        daemon.log_file()
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Umask:\t0027"), "{status}");
    daemon.wait_log("ready");

    let (code, out, err) = daemon.run(&spawn, &["stop"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("rodent stopped (PID {pid})").as_str()),
        "{err}"
    );
    wait_gone(pid);
    assert!(!daemon.pid_file().exists(), "removed on a clean exit");
    daemon.wait_log("stopped");
}

#[test]
fn a_daemon_that_cannot_bind_makes_detach_print_the_bind_error() {
    let daemon = Daemon::new("nobind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spawn = daemon.spawn().env("RODENT_PORT", port.to_string());
    let (code, out, err) = daemon.run(&spawn, &["serve", "--detach"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("in use"),
        "{err}"
    );
    let (code, _, _) = daemon.run(&spawn, &["status"]);
    assert_eq!(code, 3, "nothing is left running");
}

#[test]
fn a_second_daemon_names_the_first_and_exits_75() {
    let daemon = Daemon::new("twice");
    let spawn = daemon.spawn();
    let (code, out, _) = daemon.run(&spawn, &["serve", "--detach"]);
    assert_eq!(code, 0);
    let (pid, _) = announced(&out);

    let (code, _, err) = daemon.run(&spawn, &["serve", "--detach"]);
    assert_eq!(code, 75, "{err}");
    assert_eq!(
        err.trim(),
        format!("rodent: another instance is already running (PID: {pid})")
    );
    let (code, _, _) = daemon.run(&spawn, &["stop"]);
    assert_eq!(code, 0);
}

#[test]
fn an_invalid_configuration_is_refused_by_the_launcher() {
    let daemon = Daemon::new("badconfig");
    let spawn = daemon.spawn().env("RODENT_PORT", "eighty");
    let (code, _, err) = daemon.run(&spawn, &["serve", "--detach"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("RODENT_PORT"), "{err}");
    assert!(!daemon.pid_file().exists());
}

/// `RODENT_INIT=always --detach`: the daemon is a supervisor; the PID file and the announced PID
/// are the supervisor's, and the service (its child) reports readiness in its place.
/// The daemon keeps none of its caller's descriptors: `flock LOCK rodent serve --detach` holds
/// LOCK only until the launcher returns, not for the daemon's life, nor for its successors'.
#[test]
fn the_daemon_keeps_none_of_its_callers_descriptors() {
    if !require_tool("flock", "apt-get install util-linux") {
        return;
    }
    for supervised in [false, true] {
        let daemon = Daemon::new("descriptors");
        let lock = daemon.dir.join("LOCK");
        let init = if supervised { "always" } else { "never" };
        let spawn = || daemon.spawn().env("RODENT_INIT", init);
        let output = spawn()
            .arg("serve")
            .arg("--detach")
            .command_via(&["flock", lock.to_str().unwrap()], Path::new(BINARY))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout);
        assert_eq!(code_of(&output), 0, "{out}\nlog:\n{}", daemon.log());
        let (pid, _) = announced(&out);
        let mut daemons = vec![pid];
        daemons.extend(children(pid));
        for pid in daemons {
            let held: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .flatten()
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to == lock))
                .map(|fd| fd.file_name())
                .collect();
            assert!(
                held.is_empty(),
                "{pid} (supervised: {supervised}) holds LOCK as {held:?}"
            );
        }
        let free = std::process::Command::new("flock")
            .args(["--nonblock", lock.to_str().unwrap(), "true"])
            .status()
            .unwrap();
        assert!(free.success(), "LOCK is free once the launcher returned");
        let (code, out, _) = daemon.run(&spawn(), &["stop"]);
        assert_eq!(code, 0, "{out}");
        wait_gone(pid);
    }
}

/// Forking is sound only from a single-threaded process. Where `/proc` cannot tell how many
/// threads there are, the answer is "not known to be one", and `--detach` refuses to fork.
#[test]
fn detach_is_refused_where_the_threads_cannot_be_counted() {
    if !require_root("hiding /proc needs a mount namespace")
        || !require_tool("unshare", "apt-get install util-linux")
    {
        return;
    }
    let daemon = Daemon::new("no-proc");
    let output = daemon
        .spawn()
        .arg("serve")
        .arg("--detach")
        .command_via(
            &[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                r#"mount -t tmpfs none /proc && exec "$0" "$@""#,
            ],
            Path::new(BINARY),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(code_of(&output), 1, "{err}");
    assert!(
        err.contains("cannot detach: whether other threads run is unknown"),
        "{err}"
    );
    assert!(
        std::fs::metadata(daemon.pid_file()).is_err(),
        "no daemon was started"
    );
}

#[test]
fn a_supervised_daemon_announces_and_stops_through_its_supervisor() {
    let daemon = Daemon::new("supervised");
    let spawn = daemon.spawn().env("RODENT_INIT", "always");
    let (code, out, err) = daemon.run(&spawn, &["serve", "--detach"]);
    assert_eq!(code, 0, "{out}{err}\nlog:\n{}", daemon.log());
    let (pid, address) = announced(&out);
    assert_eq!(daemon.written_pid(), pid);
    let service = match children(pid)[..] {
        [service] => service,
        ref other => panic!("the supervisor should have one child, has {other:?}"),
    };
    let mut stream = connect(address);
    assert_eq!(get_on(&mut stream, "/readyz").unwrap().status, 200);

    let (code, _, _) = daemon.run(&spawn, &["reload"]);
    assert_eq!(code, 0);
    let (code, out, _) = daemon.run(&spawn, &["stop"]);
    assert_eq!(code, 0, "{out}");
    wait_gone(pid);
    wait_gone(service);
    daemon.wait_log("configuration reloaded");
    daemon.wait_log("supervisor exiting");
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let dir = TempDir::new("notify");
    let socket_path = dir.join("notify.sock");
    let manager = UnixDatagram::bind(&socket_path).unwrap();
    manager.set_read_timeout(Some(PATIENCE)).unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("a notification arrives");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };

    let mut rodent = rodent()
        .env("NOTIFY_SOCKET", socket_path.to_str().unwrap())
        .spawn();
    assert_eq!(next(), "READY=1");
    rodent.signal(SIGHUP);
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next(), "READY=1");
    rodent.signal(SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}
