//! The cluster `scripts/kube` runs, found through `scripts/kube env`, and what the tests drive it
//! with: kubectl and helm on the host (through the API server's loopback forwarder), `ctr` for
//! each node's own containerd, and a tokio runtime whose threads live in the client node's network
//! namespace, for traffic to pod and Service addresses, which exist nowhere else. The client node
//! runs no pod, only a kube-proxy: whatever a test sends to a Service from there is routed by
//! rules that no pod's own node wrote, as a client on another node of a real cluster is.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::sched::{CloneFlags, setns};
use serde_json::Value;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/rodent");
pub const ALL_FEATURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/helm/rodent/ci/all-features-values.yaml"
);

pub struct Cluster {
    pub kubeconfig: String,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    pub nodes: Vec<Node>,
    /// The client node's network namespace (`/run/netns/rodent-client`).
    pub client_netns: PathBuf,
    /// The file holding how many milliseconds the client node's kube-proxy learns of every
    /// change late (see [`crate::nodes::Lag`]).
    pub client_lag: PathBuf,
    pub version: String,
    /// How long `scripts/kube up` took, as it recorded it.
    pub start_seconds: String,
}

pub struct Node {
    pub name: String,
    /// Its network namespace.
    pub netns: PathBuf,
    /// Its containerd's socket, for `ctr`.
    pub containerd: String,
}

/// The cluster, or `None` with SKIPPED printed when there is none outside CI. Under CI (`CI`
/// set) a missing cluster or tool fails the test: `.ci/run` starts the cluster first.
pub fn require() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(find) {
        Ok(cluster) => Some(cluster),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {why}; scripts/ci/kube.sh builds and starts the cluster")
        }
        Err(why) => {
            eprintln!("SKIPPED: {why} (scripts/kube up starts a cluster; see the README)");
            None
        }
    }
}

fn find() -> Result<Cluster, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "the cluster tests need root (network namespaces, the node's containerd)".into(),
        );
    }
    let out = Command::new(Path::new(REPO).join("scripts/kube"))
        .arg("env")
        .output()
        .map_err(|e| format!("cannot run scripts/kube: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "no cluster runs: `scripts/kube env` says {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let var = |name: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| format!("`scripts/kube env` gives no {name}"))
    };
    let bin = var("PATH")?
        .split(':')
        .next()
        .map(PathBuf::from)
        .ok_or("`scripts/kube env` gives no kubectl directory")?;
    let helm = on_path("helm").ok_or("helm is not installed (scripts/ci/helm.sh installs it)")?;
    let docker = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if !docker.status.success() {
        return Err(
            "no Docker engine answers, and the images are built with it \
                    (scripts/ci/docker.sh starts one)"
                .into(),
        );
    }
    if on_path("ctr").is_none() {
        return Err("ctr is not installed (Debian's containerd)".into());
    }
    let names = var("RODENT_KUBE_NODES")?;
    let sockets = var("RODENT_KUBE_CONTAINERD_SOCKETS")?;
    let nodes: Vec<Node> = unquote(&names)
        .split_whitespace()
        .zip(unquote(&sockets).split_whitespace())
        .map(|(name, socket)| Node {
            name: name.to_string(),
            netns: Path::new("/run/netns").join(name),
            containerd: socket.to_string(),
        })
        .collect();
    if nodes.is_empty() {
        return Err("`scripts/kube env` lists no node".into());
    }
    Ok(Cluster {
        kubeconfig: var("KUBECONFIG")?,
        kubectl: bin.join("kubectl"),
        helm,
        nodes,
        client_netns: PathBuf::from(var("RODENT_KUBE_CLIENT_NETNS")?),
        client_lag: PathBuf::from(var("RODENT_KUBE_CLIENT_LAG")?),
        version: var("RODENT_KUBE_VERSION")?,
        start_seconds: var("RODENT_KUBE_START_SECONDS")?,
    })
}

fn unquote(value: &str) -> &str {
    value.trim_matches('"')
}

pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The tests share one machine of two cores: they run one at a time, so that none skews another's
/// timing and no test's cordon or slowed kube-proxy changes another's.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(&self.kubectl);
        command.env("KUBECONFIG", &self.kubeconfig);
        command.stdin(Stdio::null());
        command
    }

    /// `kubectl ARGS`, its stdout; panics with its stderr when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.kubectl().args(args).output().expect("kubectl runs");
        assert!(
            out.status.success(),
            "`kubectl {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.run(&args)).expect("kubectl prints JSON")
    }

    /// `kubectl ARGS` with `input` on its standard input.
    pub fn with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("kubectl reads its input");
        child.wait_with_output().expect("kubectl finishes")
    }

    pub fn helm(&self, args: &[&str]) -> Output {
        Command::new(&self.helm)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .expect("helm runs")
    }

    pub fn helm_ok(&self, args: &[&str]) -> String {
        let out = self.helm(args);
        assert!(
            out.status.success(),
            "`helm {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the cluster has at least `n` nodes; when it has fewer (`scripts/kube up` with
    /// `RODENT_KUBE_NODE_COUNT`), says so and returns false, or fails the test under CI.
    pub fn has_nodes(&self, n: usize) -> bool {
        if self.nodes.len() >= n {
            return true;
        }
        let why = format!(
            "the test needs {n} nodes and the cluster has {} (scripts/kube up starts 3 unless \
             RODENT_KUBE_NODE_COUNT says otherwise)",
            self.nodes.len()
        );
        assert!(std::env::var_os("CI").is_none(), "CI is set but {why}");
        eprintln!("SKIPPED: {why}");
        false
    }

    /// `ctr ARGS` against `node`'s containerd.
    pub fn ctr(&self, node: &Node, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .args(["--address", &node.containerd, "--namespace", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr runs");
        assert!(
            out.status.success(),
            "`ctr {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The host PID of a container's first process (rodent, as the container's PID 1), from the
    /// `containerd://ID` in a pod's status: the nodes share the machine's PID namespace.
    pub fn container_pid(&self, container_id: &str) -> i32 {
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or(container_id);
        self.nodes
            .iter()
            .flat_map(|node| {
                self.ctr(node, &["tasks", "ls"])
                    .lines()
                    .filter_map(|line| {
                        let mut fields = line.split_whitespace();
                        Some((fields.next()?.to_string(), fields.next()?.parse().ok()?))
                    })
                    .collect::<Vec<(String, i32)>>()
            })
            .find(|(task, _)| task == id)
            .map(|(_, pid)| pid)
            .unwrap_or_else(|| panic!("no node's containerd runs a task {id}"))
    }

    /// A multi-threaded tokio runtime whose every thread is in the client node's network
    /// namespace.
    pub fn runtime(&self) -> tokio::runtime::Runtime {
        let netns = self.client_netns.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                let file = File::open(&netns).expect("the client node's network namespace exists");
                setns(file, CloneFlags::CLONE_NEWNET)
                    .expect("a thread can enter a network namespace");
            })
            .build()
            .expect("the runtime starts")
    }
}

/// Runs `future` on one of `runtime`'s threads (inside the namespace), not on the calling thread,
/// which `block_on` would use and which is outside it.
pub fn inside<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = T> + Send + 'static,
) -> T {
    runtime
        .block_on(runtime.spawn(future))
        .expect("the task does not panic")
}

/// A namespace labelled `pod-security.kubernetes.io/enforce=restricted`, deleted when dropped.
pub struct Namespace<'a> {
    pub name: String,
    cluster: &'a Cluster,
}

impl<'a> Namespace<'a> {
    pub fn restricted(cluster: &'a Cluster, prefix: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
        });
        let out = cluster.with_input(&["create", "-f", "-"], &manifest.to_string());
        assert!(
            out.status.success(),
            "the namespace {name} cannot be created: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { name, cluster }
    }

    /// `kubectl -n NAMESPACE ARGS`.
    pub fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend(args);
        self.cluster.run(&all)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-n", &self.name];
        all.extend(args);
        self.cluster.json(&all)
    }
}

impl Drop for Namespace<'_> {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl()
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .args(["--ignore-not-found"])
            .output();
    }
}

/// A file removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(name: &str, contents: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "rodent-kube-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("the temporary file is written");
        Self(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0).or_else(|_| std::fs::remove_dir_all(&self.0));
    }
}
