//! `serve --detach`: the launcher returns only once the daemon serves, or with its error; and
//! systemd's notifications for a foreground service.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use nix::sys::signal::Signal::{SIGHUP, SIGTERM};
use nix::unistd::Pid;

use kit::namespace::{children, wait_gone};
use kit::{
    PATIENCE, PidFile, TempDir, code_of, connect, get_on, require_root, require_tool, rodent,
};

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
    let daemon = PidFile::new("detach");
    let spawn = daemon.daemon();
    let (code, out, err) = spawn.run(&["serve", "--detach"]);
    assert_eq!(code, 0, "{out}{err}\nlog:\n{}", daemon.log());
    let (pid, address) = announced(&out);

    // Ready before the launcher returned: no waiting, no retry.
    let mut stream = connect(address);
    assert_eq!(get_on(&mut stream, "/readyz").unwrap().status, 200);

    assert_eq!(daemon.pid(), pid, "the PID file holds the daemon's PID");
    let (code, out, _) = spawn.run(&["status"]);
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

    let (code, out, err) = spawn.run(&["stop"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("rodent stopped (PID {pid})").as_str()),
        "{err}"
    );
    wait_gone(pid);
    assert!(!daemon.path().exists(), "removed on a clean exit");
    daemon.wait_log("stopped");
}

#[test]
fn a_daemon_that_cannot_bind_makes_detach_print_the_bind_error() {
    let daemon = PidFile::new("nobind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spawn = daemon.daemon().env("RODENT_PORT", port.to_string());
    let (code, out, err) = spawn.run(&["serve", "--detach"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("in use"),
        "{err}"
    );
    let (code, _, _) = spawn.run(&["status"]);
    assert_eq!(code, 3, "nothing is left running");
}

#[test]
fn a_second_daemon_names_the_first_and_exits_75() {
    let daemon = PidFile::new("twice");
    let spawn = daemon.daemon();
    let (code, out, _) = spawn.run(&["serve", "--detach"]);
    assert_eq!(code, 0);
    let (pid, _) = announced(&out);

    let (code, _, err) = spawn.run(&["serve", "--detach"]);
    assert_eq!(code, 75, "{err}");
    assert_eq!(
        err.trim(),
        format!("rodent: another instance is already running (PID: {pid})")
    );
    let (code, _, _) = spawn.run(&["stop"]);
    assert_eq!(code, 0);
}

#[test]
fn an_invalid_configuration_is_refused_by_the_launcher() {
    let daemon = PidFile::new("badconfig");
    let spawn = daemon.daemon().env("RODENT_PORT", "eighty");
    let (code, _, err) = spawn.run(&["serve", "--detach"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("RODENT_PORT"), "{err}");
    assert!(!daemon.path().exists());
}

/// The daemon keeps none of its caller's descriptors: `flock LOCK rodent serve --detach` holds
/// LOCK only until the launcher returns, not for the daemon's life, nor for its successors'.
#[test]
fn the_daemon_keeps_none_of_its_callers_descriptors() {
    if !require_tool("flock", "apt-get install util-linux") {
        return;
    }
    for supervised in [false, true] {
        let daemon = PidFile::new("descriptors");
        let lock = daemon.dir().join("LOCK");
        let init = if supervised { "always" } else { "never" };
        let spawn = || daemon.daemon().env("RODENT_INIT", init);
        let output = spawn()
            .arg("serve")
            .arg("--detach")
            .command_via(&["flock", lock.to_str().unwrap()], kit::binary())
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
        let (code, out, _) = spawn().run(&["stop"]);
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
    let daemon = PidFile::new("no-proc");
    let output = daemon
        .daemon()
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
            kit::binary(),
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
        std::fs::metadata(daemon.path()).is_err(),
        "no daemon was started"
    );
}

/// `RODENT_INIT=always --detach`: the daemon is a supervisor; the PID file and the announced PID
/// are the supervisor's, and the service (its child) reports readiness in its place.
#[test]
fn a_supervised_daemon_announces_and_stops_through_its_supervisor() {
    let daemon = PidFile::new("supervised");
    let spawn = daemon.daemon().env("RODENT_INIT", "always");
    let (code, out, err) = spawn.run(&["serve", "--detach"]);
    assert_eq!(code, 0, "{out}{err}\nlog:\n{}", daemon.log());
    let (pid, address) = announced(&out);
    assert_eq!(daemon.pid(), pid);
    let service = match children(pid)[..] {
        [service] => service,
        ref other => panic!("the supervisor should have one child, has {other:?}"),
    };
    let mut stream = connect(address);
    assert_eq!(get_on(&mut stream, "/readyz").unwrap().status, 200);

    let (code, _, _) = spawn.run(&["reload"]);
    assert_eq!(code, 0);
    let (code, out, _) = spawn.run(&["stop"]);
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
