//! Watches of the API (`kubectl get --watch`), every event stamped with the moment it arrived, so
//! a test can tell when a pod turned unready or an endpoint started terminating, and wait for it
//! with a deadline instead of polling.

use std::io::BufReader;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::Cluster;

#[derive(Clone, Debug)]
pub struct Event {
    pub at: Instant,
    /// ADDED, MODIFIED or DELETED.
    pub kind: String,
    pub object: Value,
}

#[derive(Default)]
struct Events {
    list: Mutex<Vec<Event>>,
    grew: Condvar,
}

pub struct Watch {
    what: String,
    events: Arc<Events>,
    child: Child,
}

impl Watch {
    /// `kubectl get ARGS --watch`, started and read in the background. Returns once the first
    /// event (the initial listing) has arrived, so nothing done after this is missed.
    pub fn start(cluster: &Cluster, args: &[&str]) -> Self {
        let mut child = cluster
            .kubectl()
            .arg("get")
            .args(args)
            .args(["--watch", "--output-watch-events", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl runs");
        let events = Arc::new(Events::default());
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn({
            let events = events.clone();
            move || {
                let stream = serde_json::Deserializer::from_reader(BufReader::new(stdout));
                for value in stream.into_iter::<Value>() {
                    let Ok(value) = value else { break };
                    let event = Event {
                        at: Instant::now(),
                        kind: value["type"].as_str().unwrap_or_default().to_string(),
                        object: value["object"].clone(),
                    };
                    events.list.lock().unwrap().push(event);
                    events.grew.notify_all();
                }
            }
        });
        let watch = Self {
            what: args.join(" "),
            events,
            child,
        };
        watch.wait_for(Duration::from_secs(30), "the initial listing", |_| true);
        watch
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.list.lock().unwrap().clone()
    }

    /// The first event (since the watch started) for which `matches` holds; panics, with every
    /// event seen, when none comes within `within`.
    pub fn wait_for(
        &self,
        within: Duration,
        what: &str,
        matches: impl Fn(&Event) -> bool,
    ) -> Event {
        self.try_wait_for(within, &matches).unwrap_or_else(|| {
            let seen: Vec<String> = self
                .events()
                .iter()
                .map(|e| format!("{} {}", e.kind, summary(&e.object)))
                .collect();
            panic!(
                "watching `{}`: {what} did not happen within {within:?}; events:\n{}",
                self.what,
                seen.join("\n")
            )
        })
    }

    pub fn try_wait_for(
        &self,
        within: Duration,
        matches: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + within;
        let mut list = self.events.list.lock().unwrap();
        let mut seen = 0;
        loop {
            if let Some(event) = list[seen..].iter().find(|e| matches(e)) {
                return Some(event.clone());
            }
            seen = list.len();
            let left = deadline.checked_duration_since(Instant::now())?;
            list = self.events.grew.wait_timeout(list, left).unwrap().0;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line about an object, for failure messages: a pod's readiness and container state, an
/// EndpointSlice's endpoints and their conditions.
pub fn summary(object: &Value) -> String {
    let name = object["metadata"]["name"].as_str().unwrap_or("?");
    match object["kind"].as_str() {
        Some("Pod") => format!(
            "pod {name}: phase {}, ready {:?}, restarts {}, deleting {}, state {}",
            object["status"]["phase"].as_str().unwrap_or("?"),
            pod_ready(object),
            restart_count(object),
            object["metadata"]["deletionTimestamp"].is_string(),
            object["status"]["containerStatuses"][0]["state"]
        ),
        Some("EndpointSlice") => {
            let endpoints: Vec<String> = object["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["targetRef"]["name"].as_str().unwrap_or("?"),
                        e["conditions"]
                    )
                })
                .collect();
            format!("endpointslice {name}: {}", endpoints.join("; "))
        }
        _ => format!("{} {name}", object["kind"]),
    }
}

/// The pod's Ready condition.
pub fn pod_ready(pod: &Value) -> Option<bool> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"] == "True")
}

pub fn restart_count(pod: &Value) -> u64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["restartCount"].as_u64().unwrap_or(0))
        .sum()
}

pub fn uid(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap_or_default()
}

pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// The conditions (`ready`, `serving`, `terminating`) of the endpoint of the pod `pod_uid` in an
/// EndpointSlice, when it lists that pod.
pub fn endpoint_conditions(slice: &Value, pod_uid: &str) -> Option<Value> {
    slice["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["targetRef"]["uid"] == pod_uid)
        .map(|e| e["conditions"].clone())
}
