//! The cluster's nodes as the scenarios use them: which node a pod runs on, nodes cordoned for the
//! length of a test, the client node's kube-proxy slowed down, and the rules each node's
//! kube-proxy has written for a Service, read from inside its network namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use serde_json::Value;

use crate::cluster::Cluster;

/// The node a pod was scheduled to.
pub fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

/// How many distinct nodes `pods` run on.
pub fn spread(pods: &[Value]) -> usize {
    pods.iter().map(node_of).collect::<BTreeSet<_>>().len()
}

/// Nodes cordoned for as long as this lives: uncordoned when dropped, so a failing test never
/// leaves a node unschedulable.
pub struct Cordon<'a> {
    cluster: &'a Cluster,
    nodes: Vec<String>,
}

impl<'a> Cordon<'a> {
    pub fn new(cluster: &'a Cluster, nodes: &[&str]) -> Self {
        for node in nodes {
            cluster.run(&["cordon", node]);
        }
        Self::after(cluster, nodes)
    }

    /// Only the uncordon, for nodes something else cordons (`kubectl drain`).
    pub fn after(cluster: &'a Cluster, nodes: &[&str]) -> Self {
        Self {
            cluster,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        }
    }
}

impl Drop for Cordon<'_> {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = self.cluster.kubectl().args(["uncordon", node]).output();
        }
    }
}

/// The client node's kube-proxy learns of every change `lag` late for as long as this lives: the
/// relay between it and the API server holds back what the server sends (scripts/kube). Applies
/// to everything the server sends from the moment it is set.
pub struct Lag<'a>(&'a Cluster);

impl<'a> Lag<'a> {
    pub fn set(cluster: &'a Cluster, lag: Duration) -> Self {
        std::fs::write(&cluster.client_lag, lag.as_millis().to_string())
            .expect("the client node's lag file is writable");
        Self(cluster)
    }
}

impl Drop for Lag<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0.client_lag, "0");
    }
}

/// How often [`Rules`] reads each namespace's rules: the resolution of the lags it measures.
const RULES_EVERY: Duration = Duration::from_millis(100);

/// The endpoints a Service's cluster-IP rules send to, as `iptables` lists them in each of some
/// network namespaces, read every [`RULES_EVERY`] from a thread in each, with when each reading
/// was made. This is what a node's kube-proxy really did, whatever the API says.
pub struct Rules {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<Vec<Reading>>)>,
    /// Each namespace's latest reading.
    latest: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

/// One reading: when, and the endpoints (`IP:port`) listed then.
pub type Reading = (Instant, BTreeSet<String>);

impl Rules {
    /// Starts reading, in every node's namespace and the client node's, the rules for the
    /// Service port `service` (`namespace/name:port-name`, as kube-proxy names it).
    pub fn watch(cluster: &Cluster, service: &str) -> Self {
        let mut namespaces: Vec<(String, PathBuf)> = cluster
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.netns.clone()))
            .collect();
        namespaces.push(("client".into(), cluster.client_netns.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let latest = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = namespaces
            .into_iter()
            .enumerate()
            .map(|(i, (name, netns))| {
                let (stop, service, latest) = (stop.clone(), service.to_string(), latest.clone());
                // Staggered, so the readings of the namespaces do not all land at once.
                let offset = RULES_EVERY * i as u32 / 4;
                let key = name.clone();
                let thread = std::thread::spawn(move || {
                    read_rules(&netns, &service, offset, &stop, |endpoints| {
                        latest
                            .lock()
                            .unwrap()
                            .insert(key.clone(), endpoints.clone());
                    })
                });
                (name, thread)
            })
            .collect();
        Self {
            stop,
            threads,
            latest,
        }
    }

    /// Blocks until every namespace's rules send to exactly `endpoints`: every kube-proxy has
    /// caught up. Panics with what each lists when that takes longer than `within`.
    pub fn wait_for(&self, endpoints: &BTreeSet<String>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let latest = self.latest.lock().unwrap().clone();
            if latest.len() == self.threads.len() && latest.values().all(|e| e == endpoints) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the kube-proxies did not all send to {endpoints:?} within {within:?}: {latest:?}"
            );
            std::thread::sleep(RULES_EVERY);
        }
    }

    /// Stops reading; every namespace's readings.
    pub fn stop(self) -> BTreeMap<String, Vec<Reading>> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(name, thread)| (name, thread.join().expect("the rule reader does not panic")))
            .collect()
    }
}

fn read_rules(
    netns: &PathBuf,
    service: &str,
    offset: Duration,
    stop: &AtomicBool,
    latest: impl Fn(&BTreeSet<String>),
) -> Vec<Reading> {
    let file = File::open(netns).expect("the node's network namespace exists");
    // This thread, and the iptables it runs, in that namespace.
    setns(file, CloneFlags::CLONE_NEWNET).expect("a thread can enter a network namespace");
    std::thread::sleep(offset);
    let mut readings = Vec::new();
    let mut chain = None;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if chain.is_none() {
            chain = service_chain(service);
        }
        if let Some(chain) = &chain {
            let at = Instant::now();
            let endpoints = endpoints(chain, service);
            latest(&endpoints);
            readings.push((at, endpoints));
        }
        next += RULES_EVERY;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    readings
}

fn iptables(args: &[&str]) -> String {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat"])
        .args(args)
        .output()
        .expect("iptables runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `KUBE-SVC-…` chain of the Service port's cluster IP, from its jump in `KUBE-SERVICES`
/// (`--comment "ns/name:port cluster IP" … -j KUBE-SVC-…`).
fn service_chain(service: &str) -> Option<String> {
    let comment = format!("\"{service} cluster IP\"");
    iptables(&["-S", "KUBE-SERVICES"])
        .lines()
        .find(|line| line.contains(&comment))
        .and_then(|line| line.split(" -j ").nth(1))
        .map(|chain| chain.trim().to_string())
}

/// The endpoints the chain sends to: its rules carry `--comment "ns/name:port -> IP:PORT"`.
fn endpoints(chain: &str, service: &str) -> BTreeSet<String> {
    let marker = format!("{service} -> ");
    iptables(&["-S", chain])
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(&marker)? + marker.len()..];
            Some(rest.split('"').next()?.to_string())
        })
        .collect()
}

/// When an endpoint first left the readings after having been in them.
pub fn left_at(readings: &[Reading], endpoint: &str) -> Option<Instant> {
    let mut seen = false;
    for (at, endpoints) in readings {
        if endpoints.contains(endpoint) {
            seen = true;
        } else if seen {
            return Some(*at);
        }
    }
    None
}
