//! `rodent restart`: the instance holding the PID file starts its successor on its own listening
//! socket, waits for it to be ready, hands it the PID file, then drains. Under constant
//! keep-alive load nothing is lost, and `rodent status` names a running instance throughout. A
//! successor that cannot start changes nothing.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::sys::signal::Signal::SIGTERM;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::{activation_variables, environ_of, held_listener, on_socket};
use kit::load::{Counts, Load};
use kit::namespace::{self, as_pid1, process, wait_gone};
use kit::{PATIENCE, PidFile, Spawn, code_of, connect, get_on};

const RESTARTS: usize = 5;

/// An instance's PID file, log file and env file (a [`PidFile`], which kills what it names
/// when a test fails), and the instances started on them.
struct Host {
    pid_file: PidFile,
}

impl Host {
    fn new(name: &str) -> Self {
        let host = Self {
            pid_file: PidFile::new(name),
        };
        host.env_file("");
        host
    }

    fn env_path(&self) -> PathBuf {
        self.pid_file.dir().join("rodent.env")
    }

    /// Replaces the env file, which the successor of a restart reads.
    fn env_file(&self, contents: &str) {
        std::fs::write(self.env_path(), contents).expect("the env file is written");
    }

    fn spawn(&self) -> Spawn {
        self.pid_file
            .daemon()
            .env("RODENT_ENV_FILE", self.env_path().to_str().unwrap())
            .env("RODENT_DRAIN_DELAY", "300ms")
            .env("RODENT_LOG", "info,rodent::access=warn")
    }

    /// Runs `rodent <args>`; returns (code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.spawn().run(args)
    }

    /// Starts a daemon; returns its PID and address.
    fn detach(&self) -> (Pid, SocketAddr) {
        self.detach_with(self.spawn())
    }

    fn detach_with(&self, spawn: Spawn) -> (Pid, SocketAddr) {
        let (code, out, err) = spawn.run(&["serve", "--detach"]);
        assert_eq!(code, 0, "{out}{err}\nlog:\n{}", self.log());
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

    fn status(&self) -> (i32, String) {
        let (code, out, _) = self.run(&["status"]);
        (code, out.trim().to_string())
    }

    fn log(&self) -> String {
        self.pid_file.log()
    }
}

/// `rodent restarted (PID O -> S), listening on ADDR` → (O, S, ADDR).
fn restarted(out: &str) -> (Pid, Pid, SocketAddr) {
    let rest = out
        .trim()
        .strip_prefix("rodent restarted (PID ")
        .unwrap_or_else(|| panic!("unexpected report: {out}"));
    let (pids, address) = rest
        .split_once("), listening on ")
        .expect("PIDs and address");
    let (old, new) = pids.split_once(" -> ").expect("two PIDs");
    (
        Pid::from_raw(old.parse().unwrap()),
        Pid::from_raw(new.parse().unwrap()),
        address.parse().unwrap(),
    )
}

fn is_gone(pid: Pid) -> bool {
    process(pid).is_none_or(|p| p.is_zombie())
}

/// `rodent status`, run over and over on a thread of its own until stopped: every answer.
struct StatusWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(i32, String)>>,
}

impl StatusWatch {
    fn start(host: &Host) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let spawn = host.spawn();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let (code, out, _) = spawn.run(&["status"]);
                seen.push((code, out.trim().to_string()));
            }
            seen
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<(i32, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("the status thread does not panic")
    }
}

#[test]
fn five_restarts_under_load_lose_nothing_and_status_always_finds_an_instance() {
    let host = Host::new("restart-load");
    let (first, address) = host.detach();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the load runtime starts");
    let load = Load::start(runtime.handle(), &format!("http://{address}"));
    load.wait_for_successes(Counts::default(), 500);
    let watch = StatusWatch::start(&host);

    let mut current = first;
    let mut took = Vec::new();
    for _ in 0..RESTARTS {
        let started = Instant::now();
        let (code, out, err) = host.run(&["restart"]);
        took.push(started.elapsed());
        assert_eq!(code, 0, "{out}{err}\nlog:\n{}", host.log());
        let (old, new, at) = restarted(&out);
        assert_eq!((old, at), (current, address), "{out}");
        assert_ne!(new, old);
        assert!(
            is_gone(old),
            "the old instance had exited when restart returned"
        );
        assert_eq!(
            host.status(),
            (0, format!("rodent is running (PID {new})")),
            "the PID file names the successor"
        );
        current = new;
        load.wait_for_successes(load.counts(), 100);
    }
    let statuses = watch.stop();
    let report = runtime.block_on(load.stop());
    let durations: Vec<String> = took
        .iter()
        .map(|d| format!("{} ms", d.as_millis()))
        .collect();
    eprintln!(
        "rodent restart ×{RESTARTS}: {} requests in {:.1} s, {} failed, {} instances served; \
         each restart took {}; `rodent status` ran {} times",
        report.counts.sent(),
        report.elapsed.as_secs_f64(),
        report.counts.failed,
        report.pids.len(),
        durations.join(", "),
        statuses.len()
    );
    let not_running: Vec<_> = statuses.iter().filter(|(code, _)| *code != 0).collect();
    assert!(
        not_running.is_empty(),
        "status found no running instance {} times out of {}: {:?}",
        not_running.len(),
        statuses.len(),
        not_running.first()
    );
    assert_eq!(report.pids.len(), RESTARTS + 1, "every instance served");
    assert_eq!(
        report.counts.failed,
        0,
        "requests were lost: {:?}",
        report.failure_kinds()
    );
    // Each old instance drained because its successor took over, and says which one: no
    // signal asked it to stop.
    let drains: Vec<serde_json::Value> = host
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == "draining")
        .collect();
    assert_eq!(drains.len(), RESTARTS, "one drain per restart");
    for drain in &drains {
        assert_eq!(drain["reason"], "handover", "{drain}");
        assert!(drain["successor_pid"].as_i64().is_some(), "{drain}");
        assert!(drain.get("signal").is_none(), "no signal was sent: {drain}");
    }
    let (code, _, _) = host.run(&["stop"]);
    assert_eq!(code, 0);
}

#[test]
fn a_successor_that_cannot_start_leaves_the_old_instance_serving_untouched() {
    let host = Host::new("restart-fails");
    let (pid, address) = host.detach();
    // The successor reads the env file afresh; the running instance does not (no SIGHUP). The
    // operator's shell does not know the file (with it, the command itself would refuse the
    // configuration, exit 78, before signalling anything).
    host.env_file("RODENT_LOG_FORMAT=xml\n");
    let operator = || host.spawn().without_env("RODENT_ENV_FILE");
    let (code, out, err) = operator().run(&["restart"]);
    assert_eq!(code, 78, "the successor's own exit code: {out}{err}");
    assert!(
        err.contains("RODENT_LOG_FORMAT") && err.contains("xml"),
        "the successor's error is printed: {err}"
    );
    assert!(
        err.contains(&format!("rodent (PID {pid}) is still serving")),
        "{err}"
    );
    let (code, out, _) = operator().run(&["status"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("rodent is running (PID {pid})").as_str())
    );
    let mut stream = connect(address);
    let answer = get_on(&mut stream, "/").unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json()["pid"],
        pid.as_raw(),
        "still the same instance"
    );
    assert_eq!(answer.json()["state"], "ready");

    // An env file the successor cannot parse: the outcome says where, and shows no value.
    host.env_file("RODENT_ADMIN_TOKEN='hunter2\n");
    let (code, out, err) = operator().run(&["restart"]);
    assert_eq!(code, 78, "{out}{err}");
    assert!(
        err.contains("line 1 (RODENT_ADMIN_TOKEN) cannot be parsed"),
        "{err}"
    );
    let outcome = std::fs::read_to_string(host.pid_file.dir().join("rodent.pid.restart")).unwrap();
    assert!(
        !format!("{err}{outcome}").contains("hunter2"),
        "{err}{outcome}"
    );

    // Once the configuration is fixed, the same command works.
    host.env_file("");
    let (code, out, err) = host.run(&["restart"]);
    assert_eq!(code, 0, "{out}{err}");
    let (old, _, _) = restarted(&out);
    assert_eq!(old, pid);
    let (code, _, _) = host.run(&["stop"]);
    assert_eq!(code, 0);
}

/// The supervisor holds the PID file and the socket: the service refuses to be replaced on its
/// own, and says so to the command, which does not wait for an outcome that cannot come.
#[test]
fn under_the_supervisor_restart_is_refused_and_the_instance_serves_on() {
    let host = Host::new("restart-supervised");
    let supervised = || host.spawn().env("RODENT_INIT", "always");
    let (supervisor, address) = host.detach_with(supervised());
    let started = Instant::now();
    let (code, out, err) = supervised().run(&["restart"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        started.elapsed() < PATIENCE,
        "the refusal came at once, not after a timeout"
    );
    assert!(
        err.contains("not available under the PID 1 supervisor"),
        "the reason is printed: {err}"
    );
    assert!(
        err.contains(&format!("rodent (PID {supervisor}) is still serving")),
        "{err}"
    );
    assert_eq!(
        host.status(),
        (0, format!("rodent is running (PID {supervisor})"))
    );
    let mut stream = connect(address);
    assert_eq!(get_on(&mut stream, "/").unwrap().status, 200);
    let (code, _, _) = host.run(&["stop"]);
    assert_eq!(code, 0);
}

/// As PID 1 without the supervisor (`RODENT_INIT=never`, a container's first process), the
/// successor would be killed by the kernel as soon as the old PID 1 exits, and the container
/// with it: the instance refuses, says why, and serves on.
#[test]
fn as_pid1_without_the_supervisor_restart_is_refused_and_the_instance_serves_on() {
    if !namespace::available() {
        return;
    }
    let host = Host::new("restart-pid1");
    let pid1 = || host.spawn().env("RODENT_INIT", "never");
    let (rodent, init) = as_pid1(pid1(), kit::binary());
    assert!(
        namespace::children(init).is_empty(),
        "no supervisor: rodent itself is PID 1"
    );
    // `rodent restart` as `docker exec` or `kubectl exec` runs it: inside the namespace.
    let inside = [
        "nsenter",
        "--target",
        &init.to_string(),
        "--pid",
        "--mount",
        "--",
    ];
    let started = Instant::now();
    let output = pid1()
        .arg("restart")
        .command_via(&inside, kit::binary())
        .output()
        .expect("nsenter runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(code_of(&output), 1, "{err}");
    assert!(
        started.elapsed() < PATIENCE,
        "the refusal came at once, not after a timeout"
    );
    assert!(
        err.contains("not available as PID 1 without the supervisor"),
        "the reason is printed: {err}"
    );
    assert!(err.contains("rodent (PID 1) is still serving"), "{err}");
    assert!(
        namespace::children(init).is_empty(),
        "no successor was started"
    );
    let mut stream = connect(rodent.addr());
    let answer = get_on(&mut stream, "/").unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["pid"], 1, "still the same instance");
}

/// The outcome is written to `<pid file>.restart.<pid>`, then renamed over `<pid file>.restart`:
/// a symlink planted at the first name (in a directory others can write to) is removed, never
/// followed, and the file it points at is left as it was.
#[test]
fn the_restart_outcome_is_never_written_through_a_symlink() {
    let host = Host::new("restart-symlink");
    let (pid, _) = host.detach();
    let victim = host.pid_file.dir().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let planted = host
        .pid_file
        .dir()
        .join(&format!("rodent.pid.restart.{pid}"));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    // A successor that cannot start: the outcome is a failure, recorded by the instance.
    host.env_file("RODENT_LOG_FORMAT=xml\n");
    let operator = || host.spawn().without_env("RODENT_ENV_FILE");
    let (code, out, err) = operator().run(&["restart"]);
    assert_eq!(code, 78, "the outcome was recorded and read: {out}{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let outcome = host.pid_file.dir().join("rodent.pid.restart");
    assert!(
        !std::fs::symlink_metadata(&outcome).unwrap().is_symlink(),
        "the outcome is a file of its own"
    );
    assert!(
        std::fs::read_to_string(&outcome)
            .unwrap()
            .starts_with(&format!("{pid} failed 78 ")),
        "{}",
        std::fs::read_to_string(&outcome).unwrap()
    );
    assert!(
        std::fs::symlink_metadata(&planted).is_err(),
        "the link is gone"
    );
    let (code, _, _) = operator().run(&["stop"]);
    assert_eq!(code, 0);
}

/// Under systemd (`NOTIFY_SOCKET`) the old process's exit would be taken for the service's:
/// the instance refuses, and points at `systemctl restart`.
#[tokio::test]
async fn under_systemd_restart_is_refused_and_the_instance_serves_on() {
    let host = Host::new("restart-systemd");
    let notify = host.pid_file.dir().join("notify.sock");
    let _manager = UnixDatagram::bind(&notify).expect("the notification socket binds");
    let mut instance = host
        .spawn()
        .without_env("RODENT_LOG_FILE")
        .env("NOTIFY_SOCKET", notify.to_str().unwrap())
        .spawn();
    let (code, out, err) = host.run(&["restart"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("not available under systemd") && err.contains("systemctl restart"),
        "the reason is printed: {err}"
    );
    let info: serde_json::Value = instance.get("/").await.json().await.unwrap();
    assert_eq!(
        info["pid"],
        instance.pid().as_raw(),
        "still the same instance"
    );
    assert_eq!(info["state"], "ready");
    instance.signal(SIGTERM);
    assert_eq!(instance.exit_code(PATIENCE), 0);
}

#[test]
fn restart_with_nothing_running_says_so() {
    let host = Host::new("restart-none");
    let (code, out, _) = host.run(&["restart"]);
    assert_eq!((code, out.trim()), (3, "rodent is not running"));
}

/// A socket-activated instance in the foreground: its successor serves the same socket, and
/// neither it nor anything it starts sees the activation variables.
#[tokio::test]
async fn the_successor_of_a_socket_activated_instance_keeps_the_socket_not_the_variables() {
    let host = Host::new("restart-activated");
    let listener = held_listener();
    let spawn = host.spawn().without_env("RODENT_LOG_FILE");
    let command = on_socket(&spawn, &listener);
    let mut first = spawn.spawn_command(command);
    assert_eq!(first.addr(), listener.local_addr().unwrap());

    let (code, out, err) = host.run(&["restart"]);
    assert_eq!(code, 0, "{out}{err}");
    let (old, new, address) = restarted(&out);
    assert_eq!((old, address), (first.pid(), first.addr()));
    assert_eq!(first.exit_code(PATIENCE), 0, "the old instance drained");
    assert_eq!(
        activation_variables(&environ_of(new)),
        Vec::<&String>::new(),
        "the successor was started without the variables"
    );
    let answer = first.get("/").await;
    let info: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(info["pid"], new.as_raw(), "the successor serves the socket");
    kill(new, SIGTERM).unwrap();
    wait_gone(new);
}

/// The management port's socket goes to the successor with the main one: the successor could
/// not bind it while this instance holds it, and the probes never find it closed.
#[test]
fn a_restart_hands_the_management_port_to_the_successor() {
    let host = Host::new("restart-management");
    let port = kit::free_port();
    let managed = || host.spawn().env("RODENT_MANAGEMENT_PORT", port.to_string());
    let (old, _) = host.detach_with(managed());
    let management = SocketAddr::from(([127, 0, 0, 1], port));
    let probing = Arc::new(AtomicBool::new(true));
    let probes = {
        let probing = probing.clone();
        std::thread::spawn(move || {
            let (mut answered, mut refused) = (0, Vec::new());
            while probing.load(Ordering::Relaxed) {
                match std::net::TcpStream::connect(management) {
                    Ok(mut stream) => {
                        stream.set_read_timeout(Some(PATIENCE)).unwrap();
                        match get_on(&mut stream, "/healthz") {
                            Ok(answer) if answer.status == 200 => answered += 1,
                            other => refused.push(format!("{other:?}")),
                        }
                    }
                    Err(e) => refused.push(e.to_string()),
                }
            }
            (answered, refused)
        })
    };
    let (code, out, err) = managed().run(&["restart"]);
    assert_eq!(code, 0, "{out}{err}\nlog:\n{}", host.log());
    let (was, new, _) = restarted(&out);
    assert_eq!(was, old);
    assert!(
        is_gone(old),
        "the old instance had exited when restart returned"
    );
    probing.store(false, Ordering::Relaxed);
    let (answered, refused) = probes.join().unwrap();
    assert!(answered > 0);
    assert!(
        refused.is_empty(),
        "probes failed during the restart: {refused:?}"
    );
    // The successor answers on it now.
    let mut stream = connect(management);
    assert_eq!(get_on(&mut stream, "/readyz").unwrap().status, 200);
    assert_eq!(host.status(), (0, format!("rodent is running (PID {new})")));
    let (code, _, _) = managed().run(&["stop"]);
    assert_eq!(code, 0);
}
