//! `kubectl delete pod`: the container must exit 0 (the kubelet says Completed) by itself, before
//! `terminationGracePeriodSeconds`, never by the SIGKILL that ends the grace (137); also with a
//! preStop sleep, which runs before SIGTERM and inside the same grace period.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cluster::{Cluster, Namespace};
use crate::images::images;
use crate::release::{install, values};
use crate::watch::{Watch, name, uid};

/// The chart's default grace budget (`shutdown.gracePeriodSeconds`).
const GRACE_SECONDS: u64 = 30;

/// What one deletion measured.
pub struct Deletion {
    pub to_exit: Duration,
    pub to_sigterm: Option<Duration>,
    pub grace: Duration,
}

pub fn delete_pod(cluster: &Cluster, pre_stop_seconds: u64) -> Deletion {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "delete");
    let release = install(
        cluster,
        &namespace,
        "rodent",
        &values(
            image,
            json!({"shutdown": {"preStopSleepSeconds": pre_stop_seconds}}),
        ),
    );
    let pod = release.ready_pods().remove(0);
    let (pod_name, pod_uid) = (name(&pod).to_string(), uid(&pod).to_string());
    let grace = Duration::from_secs(
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("the chart sets terminationGracePeriodSeconds"),
    );
    assert_eq!(
        grace.as_secs(),
        GRACE_SECONDS + pre_stop_seconds,
        "the chart adds the preStop sleep to the grace period"
    );
    let container = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .expect("a running container has an ID")
        .to_string();
    let pid = cluster.container_pid(&container);
    let pods = Watch::start(
        cluster,
        &["pods", "-n", &namespace.name, "-l", &release.selector()],
    );
    let log = follow_log(cluster, &namespace, &pod_name);

    let deleted_wall = SystemTime::now();
    let deleted = Instant::now();
    namespace.run(&["delete", "pod", &pod_name, "--wait=false"]);
    // The container's first process (rodent, PID 1 in it) gone: the exit, to within a few
    // milliseconds.
    let exited = loop {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break deleted.elapsed();
        }
        assert!(
            deleted.elapsed() < grace + Duration::from_secs(30),
            "the container still runs {:?} after the deletion",
            deleted.elapsed()
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let exit = pods.wait_for(
        Duration::from_secs(60),
        "the container's exit status",
        |e| uid(&e.object) == pod_uid && terminated(&e.object).is_some(),
    );
    let state = terminated(&exit.object).expect("matched above");
    let to_sigterm = sigterm_after(&log, deleted_wall);
    eprintln!(
        "kubectl delete pod (preStop sleep {pre_stop_seconds} s): exit {} ({}) {exited:?} after \
         the deletion, SIGTERM {to_sigterm:?} after it; terminationGracePeriodSeconds {}",
        state["exitCode"],
        state["reason"].as_str().unwrap_or("?"),
        grace.as_secs()
    );
    assert_eq!(state["exitCode"], 0, "the container's exit: {state}");
    assert_ne!(
        state["exitCode"], 137,
        "the container needed the SIGKILL: {state}"
    );
    assert_eq!(
        state["reason"], "Completed",
        "the container's exit: {state}"
    );
    assert!(
        exited < grace,
        "the container exited {exited:?} after the deletion, past the grace period {grace:?}"
    );
    if pre_stop_seconds > 0 {
        let sleep = Duration::from_secs(pre_stop_seconds);
        assert!(
            exited >= sleep,
            "the container exited {exited:?} after the deletion, before the preStop sleep of \
             {sleep:?} was over"
        );
        if let Some(to_sigterm) = to_sigterm {
            assert!(
                to_sigterm >= sleep - Duration::from_millis(100),
                "SIGTERM came {to_sigterm:?} after the deletion, inside the preStop sleep"
            );
        }
    }
    Deletion {
        to_exit: exited,
        to_sigterm,
        grace,
    }
}

/// `kubectl logs -f`, collected in the background until the container ends.
fn follow_log(cluster: &Cluster, namespace: &Namespace, pod: &str) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut child = cluster
        .kubectl()
        .args(["logs", "-f", "-n", &namespace.name, pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl runs");
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn({
        let lines = lines.clone();
        move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
            let _ = child.wait();
        }
    });
    // The stream is open once the lines already written (rodent's start) have come.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    lines
}

/// When rodent logged `draining` (the SIGTERM's arrival), after `since`.
fn sigterm_after(log: &Arc<Mutex<Vec<String>>>, since: SystemTime) -> Option<Duration> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == "draining")
            .and_then(|l| unix_seconds(l["timestamp"].as_str()?));
        if let Some(at) = found {
            let since = since.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
            return Some(Duration::from_secs_f64((at - since).max(0.0)));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `2026-12-01T21:30:00.123456Z` as seconds since the epoch (rodent logs UTC).
pub fn unix_seconds(timestamp: &str) -> Option<f64> {
    let (date, time) = timestamp.strip_suffix('Z')?.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.split(':');
    let (h, min) = (
        hms.next()?.parse::<f64>().ok()?,
        hms.next()?.parse::<f64>().ok()?,
    );
    let s = hms.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3_600.0 + min * 60.0 + s)
}

/// The terminated state of the pod's container, once the kubelet has reported it.
fn terminated(pod: &Value) -> Option<Value> {
    let state = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    state.is_object().then(|| state.clone())
}
