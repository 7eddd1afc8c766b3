//! rodent's probes under a real kubelet: what the kubelet, the EndpointSlice controller and the
//! admin API make of `/readyz` and `/healthz` while a pod drains or is taken out of rotation.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::cluster::{Cluster, Namespace, inside};
use crate::deletion::unix_seconds;
use crate::images::images;
use crate::release::{Release, install, values};
use crate::watch::{Watch, endpoint_conditions, name, pod_ready, restart_count, summary, uid};

/// The chart's default drain delay: the window in which rodent still serves after SIGTERM, and so
/// the generous bound for everything that must happen before traffic stops arriving.
const DRAIN_DELAY: Duration = Duration::from_secs(5);
/// The chart's readiness probe: every second, one failure marks the pod unready.
const READINESS_PERIOD: Duration = Duration::from_secs(1);

pub fn watches(cluster: &Cluster, release: &Release) -> (Watch, Watch) {
    let namespace = &release.namespace.name;
    let pods = Watch::start(
        cluster,
        &["pods", "-n", namespace, "-l", &release.selector()],
    );
    let service = format!("kubernetes.io/service-name={}", release.fullname);
    let slices = Watch::start(
        cluster,
        &["endpointslices", "-n", namespace, "-l", &service],
    );
    (pods, slices)
}

pub fn condition(conditions: &Value, name: &str) -> Option<bool> {
    conditions[name].as_bool()
}

/// Events the kubelet recorded about a pod whose message starts with `prefix`.
pub fn probe_events(namespace: &Namespace, pod: &str, prefix: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={pod}");
    let events = namespace.json(&["get", "events", "--field-selector", &selector]);
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// `kubectl delete pod`: the kubelet sends SIGTERM; rodent's `/readyz` fails at once, so the pod
/// turns unready at the next readiness probe, while the EndpointSlice marks the endpoint
/// terminating as soon as the pod is deleted.
pub fn readiness_after_deletion(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "probes-delete");
    let release = install(cluster, &namespace, "rodent", &values(image, json!({})));
    let pod = release.ready_pods().remove(0);
    let (pod_name, pod_uid) = (name(&pod).to_string(), uid(&pod).to_string());
    let (pods, slices) = watches(cluster, &release);

    let deleted = Instant::now();
    namespace.run(&["delete", "pod", &pod_name, "--wait=false"]);

    let terminating = slices.wait_for(DRAIN_DELAY * 3, "the endpoint terminating", |e| {
        endpoint_conditions(&e.object, &pod_uid).is_some_and(|c| {
            condition(&c, "terminating") == Some(true) && condition(&c, "ready") == Some(false)
        })
    });
    let unready = pods.wait_for(DRAIN_DELAY * 3, "the pod unready", |e| {
        uid(&e.object) == pod_uid && pod_ready(&e.object) == Some(false)
    });
    let not_serving = slices.wait_for(DRAIN_DELAY * 3, "the endpoint not serving", |e| {
        endpoint_conditions(&e.object, &pod_uid)
            .is_some_and(|c| condition(&c, "serving") == Some(false))
    });
    pods.wait_for(Duration::from_secs(60), "the pod gone", |e| {
        uid(&e.object) == pod_uid && e.kind == "DELETED"
    });
    let since = |at: Instant| at.duration_since(deleted);
    eprintln!(
        "after kubectl delete pod: endpoint ready:false terminating:true after {:?}, pod Ready \
         false after {:?}, endpoint serving:false after {:?} (readiness period {READINESS_PERIOD:?}, \
         drain delay {DRAIN_DELAY:?})",
        since(terminating.at),
        since(unready.at),
        since(not_serving.at),
    );
    // Generous bounds (the readiness period is 1 s): all of it must happen while rodent still
    // serves everything, inside its drain delay.
    for (what, at) in [
        ("the endpoint terminating", terminating.at),
        ("the pod unready", unready.at),
        ("the endpoint not serving", not_serving.at),
    ] {
        assert!(
            since(at) < DRAIN_DELAY,
            "{what} only after {:?}, past the drain delay",
            since(at)
        );
    }
    for event in pods.events().iter().filter(|e| uid(&e.object) == pod_uid) {
        assert_eq!(
            restart_count(&event.object),
            0,
            "the container restarted during the drain: {}",
            summary(&event.object)
        );
    }
    let liveness = probe_events(&namespace, &pod_name, "Liveness probe failed");
    assert!(liveness.is_empty(), "liveness failed: {liveness:?}");
}

/// SIGTERM sent on the node to the container's process, with no deletion: the kubelet goes on
/// probing liveness through the whole drain (it stops probing liveness of pods being deleted), so
/// this is where `/healthz` must stay 200 while `/readyz` fails. Liveness is made strict (every
/// second, two failures in a row restart: one could land in the moment between the listener's
/// closing and the exit, when nothing can answer). When the drain is over rodent exits 0, and the kubelet restarts
/// the container because it exited, not because a probe failed.
pub fn liveness_through_a_drain_signalled_on_the_node(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "probes-signal");
    let strict_liveness = json!({
        "probes": {"liveness": {"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2}},
        // Probes are logged at debug: the kubelet's probes during the drain can be read back.
        "env": [{"name": "RODENT_LOG", "value": "info,rodent::access=debug"}],
    });
    let release = install(
        cluster,
        &namespace,
        "rodent",
        &values(image, strict_liveness),
    );
    let pod = release.ready_pods().remove(0);
    let (pod_name, pod_uid) = (name(&pod).to_string(), uid(&pod).to_string());
    let container = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .expect("a running container has an ID")
        .to_string();
    let (pods, slices) = watches(cluster, &release);

    let signalled = Instant::now();
    let pid = cluster.container_pid(&container);
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM reaches the container");

    let unready = pods.wait_for(DRAIN_DELAY * 3, "the pod unready", |e| {
        uid(&e.object) == pod_uid && pod_ready(&e.object) == Some(false)
    });
    let out_of_rotation = slices.wait_for(DRAIN_DELAY * 3, "the endpoint not ready", |e| {
        endpoint_conditions(&e.object, &pod_uid).is_some_and(|c| {
            condition(&c, "ready") == Some(false)
                && condition(&c, "serving") == Some(false)
                && condition(&c, "terminating") != Some(true)
        })
    });
    let restarted = pods.wait_for(Duration::from_secs(60), "the container restarted", |e| {
        uid(&e.object) == pod_uid && restart_count(&e.object) == 1
    });
    let back = pods.wait_for(Duration::from_secs(60), "the pod ready again", |e| {
        uid(&e.object) == pod_uid
            && restart_count(&e.object) == 1
            && pod_ready(&e.object) == Some(true)
    });
    let since = |at: Instant| at.duration_since(signalled);
    eprintln!(
        "after SIGTERM on the node: pod Ready false after {:?}, endpoint out of rotation after \
         {:?}, the container exited and restarted after {:?}, ready again after {:?}",
        since(unready.at),
        since(out_of_rotation.at),
        since(restarted.at),
        since(back.at)
    );
    assert!(
        since(unready.at) < DRAIN_DELAY,
        "unready only after {:?}",
        since(unready.at)
    );
    assert!(
        since(restarted.at) >= DRAIN_DELAY,
        "the container ended after {:?}, before the drain delay was over",
        since(restarted.at)
    );
    let last = &restarted.object["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 0, "the drained container's exit: {last}");
    assert_eq!(
        last["reason"], "Completed",
        "the drained container's exit: {last}"
    );
    for event in pods.events().iter().filter(|e| uid(&e.object) == pod_uid) {
        if event.at < restarted.at {
            assert_eq!(
                restart_count(&event.object),
                0,
                "{}",
                summary(&event.object)
            );
        }
    }
    // The previous container's log: the kubelet's /healthz probes while it drained, all 200.
    let log = namespace.run(&["logs", &pod_name, "--previous"]);
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let at = |message: &str| {
        lines
            .iter()
            .position(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("the previous container never logged {message:?}:\n{log}"))
    };
    let (draining, closed, stopped) = (at("draining"), at("listener closed"), at("stopped"));
    let time_of = |i: usize| {
        lines[i]["timestamp"]
            .as_str()
            .and_then(unix_seconds)
            .expect("rodent's log lines have RFC 3339 timestamps")
    };
    let probes: Vec<&Value> = lines[draining..closed]
        .iter()
        .filter(|l| l["route"] == "/healthz")
        .collect();
    eprintln!(
        "liveness probes answered while draining: {} ({:?}); listener closed {:.0} ms before \
         the process stopped",
        probes.len(),
        probes
            .iter()
            .map(|l| l["status"].clone())
            .collect::<Vec<_>>(),
        (time_of(stopped) - time_of(closed)) * 1000.0
    );
    assert!(
        probes.len() >= 2,
        "the kubelet probed /healthz {} times in a {DRAIN_DELAY:?} drain:\n{log}",
        probes.len()
    );
    assert!(
        probes.iter().all(|l| l["status"] == 200),
        "a liveness probe failed while draining:\n{log}"
    );
    // Once the drain delay is over the listener closes, and a probe that lands between that
    // and the exit is refused: with this strict probe (one failure) the kubelet may record it.
    // That is the process stopping, not liveness failing during the drain; the restart above is
    // the exit's (0, Completed), not a kill.
    for (message, seconds) in probe_failures(&namespace, &pod_name, "Liveness probe failed") {
        let second = seconds.unwrap_or_else(|| panic!("an event without a time: {message}"));
        assert!(
            second >= time_of(closed).floor(),
            "liveness failed during the drain, before the listener closed: {message}"
        );
        eprintln!("after the listener closed: {message}");
    }
    // The kubelet notices the exit at its next relist (about a second, more on a busy node); its
    // liveness probes meanwhile meet a closed port, and it may decide to restart a container that
    // has already exited 0. Any such decision must come after rodent stopped by itself.
    let killing = probe_failures(
        &namespace,
        &pod_name,
        "Container rodent failed liveness probe",
    );
    for (message, seconds) in killing {
        let second = seconds.unwrap_or_else(|| panic!("an event without a time: {message}"));
        assert!(
            second >= time_of(stopped).floor(),
            "the kubelet killed the container before it stopped by itself: {message}"
        );
        eprintln!("after the process had stopped: {message}");
    }
}

/// Like [`probe_events`], with each event's last time (whole seconds since the epoch).
fn probe_failures(namespace: &Namespace, pod: &str, prefix: &str) -> Vec<(String, Option<f64>)> {
    let selector = format!("involvedObject.name={pod}");
    let events = namespace.json(&["get", "events", "--field-selector", &selector]);
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .map(|e| {
            let time = e["lastTimestamp"]
                .as_str()
                .or(e["eventTime"].as_str())
                .and_then(|t| unix_seconds(&format!("{}Z", t.trim_end_matches('Z'))));
            (e["message"].as_str().unwrap_or_default().to_string(), time)
        })
        .collect()
}

/// `POST /admin/readiness/disable` takes a pod out of the Service's endpoints (without the pod
/// terminating), traffic through the Service goes to the other pod only, and `enable` brings it
/// back.
pub fn admin_api_takes_a_pod_out_of_rotation(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "probes-admin");
    let token = random_token();
    let release = install(
        cluster,
        &namespace,
        "rodent",
        &values(image, json!({"adminToken": {"value": token}})),
    );
    let pod = release.ready_pods().remove(0);
    let (pod_name, pod_uid) = (name(&pod).to_string(), uid(&pod).to_string());
    let pod_url = format!(
        "http://{}:8080",
        pod["status"]["podIP"]
            .as_str()
            .expect("a running pod has an IP")
    );
    let service = release.service_url();
    let (pods, slices) = watches(cluster, &release);
    let runtime = cluster.runtime();

    let switched = Instant::now();
    let status = inside(
        &runtime,
        admin(format!("{pod_url}/admin/readiness/disable"), token.clone()),
    );
    assert!((200..300).contains(&status), "disable answered {status}");
    let unready = pods.wait_for(DRAIN_DELAY * 3, "the pod unready", |e| {
        uid(&e.object) == pod_uid && pod_ready(&e.object) == Some(false)
    });
    slices.wait_for(DRAIN_DELAY * 3, "the endpoint not ready", |e| {
        endpoint_conditions(&e.object, &pod_uid).is_some_and(|c| {
            condition(&c, "ready") == Some(false) && condition(&c, "terminating") != Some(true)
        })
    });
    eprintln!(
        "readiness disabled: pod Ready false after {:?}",
        unready.at.duration_since(switched)
    );
    // kube-proxy follows: fresh connections to the Service reach only the other pod.
    let answered_by_others = inside(&runtime, answered_only_by_others(service, pod_name.clone()));
    assert!(
        answered_by_others,
        "{pod_name} still answered through the Service after it left the endpoints"
    );

    let switched = Instant::now();
    let status = inside(
        &runtime,
        admin(format!("{pod_url}/admin/readiness/enable"), token),
    );
    assert!((200..300).contains(&status), "enable answered {status}");
    let ready = pods.wait_for(DRAIN_DELAY * 3, "the pod ready again", |e| {
        e.at > switched && uid(&e.object) == pod_uid && pod_ready(&e.object) == Some(true)
    });
    slices.wait_for(DRAIN_DELAY * 3, "the endpoint ready again", |e| {
        e.at > switched
            && endpoint_conditions(&e.object, &pod_uid)
                .is_some_and(|c| condition(&c, "ready") == Some(true))
    });
    eprintln!(
        "readiness enabled: pod Ready true after {:?}",
        ready.at.duration_since(switched)
    );
    for event in pods.events().iter().filter(|e| uid(&e.object) == pod_uid) {
        assert_eq!(
            restart_count(&event.object),
            0,
            "{}",
            summary(&event.object)
        );
    }
}

fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom gives bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn admin(url: String, token: String) -> u16 {
    kit::client()
        .post(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .status()
        .as_u16()
}

/// Whether, within a deadline, twenty fresh connections in a row to the Service are all
/// answered by pods other than `excluded` (kube-proxy applies an endpoint change within about a
/// second).
async fn answered_only_by_others(service: String, excluded: String) -> bool {
    let client = kit::client();
    let deadline = Instant::now() + DRAIN_DELAY * 2;
    let mut in_a_row = 0;
    while Instant::now() < deadline {
        let answer = client.get(format!("{service}/")).send().await;
        let instance = match answer {
            Ok(response) => response
                .json::<Value>()
                .await
                .ok()
                .map(|v| v["instance"].clone()),
            Err(_) => None,
        };
        match instance.as_ref().and_then(Value::as_str) {
            Some(i) if i != excluded => in_a_row += 1,
            _ => in_a_row = 0,
        }
        if in_a_row >= 20 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
