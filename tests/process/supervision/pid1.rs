//! rodent as PID 1 of a PID namespace (what it is in a container), and as a child subreaper.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal::{SIGHUP, SIGKILL, SIGQUIT, SIGTERM};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::Value;

use kit::namespace::{
    self, Process, as_pid1, members, namespace_of, only_child, run_inside, supervising,
    zombies_reaped_metric,
};
use kit::stalled::{self, Stdout};
use kit::{PATIENCE, TempDir, client, eventually, eventually_async, example, rodent};

const ORPHANS: usize = 200;

#[tokio::test]
async fn orphans_are_reaped_within_a_second_and_counted() {
    if !namespace::available() {
        return;
    }
    let (rodent, init) = as_pid1(rodent(), kit::binary());
    let started = supervising(&rodent);
    assert_eq!(started["mode"], "pid1");
    assert_eq!(started["pid"], 1);
    let namespace = namespace_of(init);

    // Every orphan blocks reading a FIFO. The test holds a writer, so their opens never block,
    // and closing it ends them all at the same moment: a burst of zombies for PID 1.
    let dir = TempDir::new("orphans");
    let gate_path = dir.join("gate");
    nix::unistd::mkfifo(&gate_path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let gate = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&gate_path)
        .unwrap();
    // Each `sh -c '... &'` starts cat in the background and exits at once: cat is orphaned.
    run_inside(
        init,
        &format!(
            r#"i=0; while [ $i -lt {ORPHANS} ]; do sh -c 'cat "$1" > /dev/null &' orphan '{}'; i=$((i+1)); done"#,
            gate_path.display()
        ),
    );
    let orphans: Vec<Pid> = eventually(PATIENCE, || {
        let waiting: Vec<Pid> = members(&namespace)
            .into_iter()
            .filter(|p| p.comm == "cat" && p.ppid == init && p.has_open(&gate_path))
            .map(|p| p.pid)
            .collect();
        match waiting.len() {
            ORPHANS => Ok(waiting),
            n => Err(format!(
                "only {n} of {ORPHANS} orphans are waiting, re-parented to PID 1"
            )),
        }
    });

    // The contract's measure: no orphan is left a zombie a second after it exits. Each is looked
    // up by its own PID, so nothing else that lives in the namespace is counted.
    let released = Instant::now();
    drop(gate);
    let reaped_in = eventually(Duration::from_secs(1), || {
        let left: Vec<Process> = orphans
            .iter()
            .filter_map(|&pid| namespace::process(pid))
            .filter(|p| p.comm == "cat")
            .collect();
        match left.is_empty() {
            true => Ok(released.elapsed()),
            false => Err(format!(
                "{} orphans (alive or zombie) still there after their release: {:?}",
                left.len(),
                &left[..left.len().min(5)]
            )),
        }
    });
    eprintln!(
        "MEASURED: {ORPHANS} orphans exiting at once, all reaped {reaped_in:?} after their \
         release"
    );

    // The count reaches the service's /metrics through the supervisor's pipe.
    eventually_async(PATIENCE, async || {
        match zombies_reaped_metric(&rodent).await {
            counted if counted == ORPHANS as u64 => Ok(()),
            counted => Err(format!(
                "rodent_zombies_reaped_total is {counted}, not {ORPHANS}"
            )),
        }
    })
    .await;
}

#[tokio::test]
async fn a_route_that_runs_a_child_process_gets_its_real_exit_status() {
    if !namespace::available() {
        return;
    }
    let (mut rodent, init) = as_pid1(rodent(), &example("embed"));
    supervising(&rodent);
    let client = client();
    for (path, succeeds) in [("/", true), ("/no/such/filesystem", false)] {
        let answer: Value = client
            .get(rodent.url(&format!("/disk?path={path}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = answer["exit_status"]
            .as_i64()
            .unwrap_or_else(|| panic!("df's exit status was lost: {answer}"));
        assert_eq!(status == 0, succeeds, "df {path}: {answer}");
    }
    kill(init, SIGTERM).unwrap();
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[test]
fn signals_sent_to_pid1_reach_the_service() {
    if !namespace::available() {
        return;
    }
    let (mut rodent, init) = as_pid1(rodent(), kit::binary());
    supervising(&rodent);

    kill(init, SIGHUP).unwrap();
    rodent.wait_log(|l| l["message"] == "configuration reloaded");
    kill(init, SIGQUIT).unwrap();
    let dump = rodent.wait_log(|l| l["message"] == "state dump");
    assert_eq!(dump["state"], "ready");
    kill(init, SIGTERM).unwrap();
    rodent.wait_log(|l| l["message"] == "draining" && l["signal"] == "SIGTERM");

    assert_eq!(
        rodent.exit_code(PATIENCE),
        0,
        "the namespace exits as the service did"
    );
    let exiting = rodent.wait_log(|l| l["message"] == "supervisor exiting");
    assert_eq!(exiting["exit_code"], 0);
}

#[tokio::test]
async fn the_deadline_exit_code_is_the_namespaces() {
    if !namespace::available() {
        return;
    }
    let spawn = rodent()
        .env("RODENT_SHUTDOWN_GRACE", "2s")
        .env("RODENT_REQUEST_TIMEOUT", "1s");
    let (mut rodent, init) = as_pid1(spawn, kit::binary());
    let mut stream = client()
        .get(rodent.url("/stream/60000?drain=ignore"))
        .send()
        .await
        .unwrap();
    assert!(
        stream.chunk().await.unwrap().is_some(),
        "the stream started"
    );
    kill(init, SIGTERM).unwrap();
    assert_eq!(
        rodent.exit_code(PATIENCE),
        124,
        "the deadline code passes through"
    );
}

#[test]
fn a_killed_service_takes_the_whole_namespace_down_with_128_plus_9() {
    if !namespace::available() {
        return;
    }
    let (mut rodent, init) = as_pid1(rodent(), kit::binary());
    supervising(&rodent);
    let service = only_child(init);
    let namespace = namespace_of(init);
    // Something else lives in the container too; it must not outlive the service.
    run_inside(init, "sh -c 'sleep 600 > /dev/null 2>&1 &'");
    // Forked, and once it has exec'd, named sleep.
    let bystander = eventually(PATIENCE, || {
        members(&namespace)
            .into_iter()
            .find(|p| p.comm == "sleep")
            .ok_or_else(|| "the bystander never ran".to_string())
    });

    let killed = Instant::now();
    kill(service, SIGKILL).unwrap();
    assert_eq!(rodent.exit_code(PATIENCE), 128 + 9);
    let took = killed.elapsed();
    eprintln!("MEASURED: namespace gone {took:?} after its service was SIGKILLed");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let gone = rodent.wait_log(|l| l["message"] == "service killed by a signal");
    assert_eq!(gone["signal"], "SIGKILL");
    assert!(
        namespace::process(bystander.pid).is_none_or(|p| p.is_zombie()),
        "the bystander outlived PID 1"
    );
}

/// Not PID 1, `RODENT_INIT=always`: a supervisor all the same, as a child subreaper, holding the
/// PID file and forwarding what is sent to it. Needs no privileges.
#[test]
fn init_always_supervises_as_a_subreaper_and_holds_the_pid_file() {
    let dir = TempDir::new("subreaper");
    let pid_file = dir.join("rodent.pid");
    let mut rodent = rodent()
        .env("RODENT_INIT", "always")
        .env("RODENT_PID_FILE", pid_file.to_str().unwrap())
        .spawn();
    let started = supervising(&rodent);
    assert_eq!(started["mode"], "subreaper");
    let supervisor = rodent.pid();
    assert_eq!(started["pid"], supervisor.as_raw());
    let service = only_child(supervisor);
    assert_eq!(started["service_pid"], service.as_raw());
    let status = std::fs::read_to_string(format!("/proc/{supervisor}/status")).unwrap();
    assert!(
        status.contains("Threads:\t1\n"),
        "the supervisor has no threads:\n{status}"
    );

    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        supervisor.to_string(),
        "the PID file names the process that signals go to"
    );
    rodent.signal(SIGHUP);
    rodent.wait_log(|l| l["message"] == "configuration reloaded");
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(!pid_file.exists(), "the supervisor removes its PID file");
}

#[test]
fn ps_tells_the_supervisor_from_the_service() {
    if !namespace::available() {
        return;
    }
    let (mut rodent, init) = as_pid1(rodent(), kit::binary());
    supervising(&rodent);
    let service = only_child(init);
    let read = |pid: nix::unistd::Pid, file: &str| {
        std::fs::read(format!("/proc/{pid}/{file}"))
            .map(|raw| String::from_utf8_lossy(&raw).trim_end().replace('\0', " "))
            .unwrap()
    };
    // Executed through /proc/self/exe, the service would be `exe`; both are rodent, and the
    // service's title says which it is.
    assert_eq!(read(init, "comm"), "rodent");
    assert_eq!(read(service, "comm"), "rodent");
    assert!(
        read(service, "cmdline").starts_with("rodent: service"),
        "{}",
        read(service, "cmdline")
    );
    assert!(!read(init, "cmdline").contains(": service"));
    kill(init, SIGTERM).unwrap();
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

/// The same as `lifecycle::sinks`, with rodent as PID 1: the supervisor and the service
/// share the stuck stdout, and neither its reaping, its forwarding of SIGTERM nor its exit waits
/// on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid1_a_stdout_nobody_reads_does_not_hold_the_exit() {
    if !namespace::available() {
        return;
    }
    let outcome = stalled::run(
        stalled::spawn(),
        namespace::UNSHARE,
        Stdout::Unread,
        only_child,
    )
    .await;
    stalled::assert_exits_in_time(&outcome, 0);
    eprintln!("as PID 1, stdout unread: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid1_a_closed_stdout_does_not_hold_the_exit() {
    if !namespace::available() {
        return;
    }
    let outcome = stalled::run(
        stalled::spawn(),
        namespace::UNSHARE,
        Stdout::Closed,
        only_child,
    )
    .await;
    stalled::assert_exits_in_time(&outcome, 0);
    eprintln!("as PID 1, stdout closed: {outcome:?}");
}
