//! HAProxy in front of the backends, started by the test with a generated configuration and
//! killed when dropped, so a failing test leaves no load balancer behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kit::{PATIENCE, TempDir, eventually, free_port};

/// How often HAProxy asks each backend's `/readyz`.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(300);

/// The longest a backend that started failing `/readyz` can still be sent new requests: the
/// check that will fail starts at most one interval after readiness flips (`fall 1`: that single
/// failure takes the server out), and it fails at the latest when it times out. Requests
/// HAProxy dispatched just before are in flight on open connections and finish normally.
pub const TIME_TO_MARK_DOWN: Duration =
    Duration::from_millis(CHECK_INTERVAL.as_millis() as u64 + CHECK_TIMEOUT.as_millis() as u64);

pub struct HaProxy {
    child: Child,
    port: u16,
    dir: TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl HaProxy {
    /// Starts HAProxy with one server per backend port and waits until every server is UP.
    pub fn start(backends: &[u16]) -> Self {
        let dir = TempDir::new("haproxy");
        let port = free_port();
        std::fs::write(dir.join("haproxy.cfg"), config(port, &dir, backends))
            .expect("the configuration is written");
        let mut child = Command::new("haproxy")
            // -db: stay in the foreground, attached to the test; logs go to stdout.
            .args(["-db", "-f"])
            .arg(dir.join("haproxy.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haproxy starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout is piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr is piped")),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line);
                }
            });
        }
        let haproxy = Self {
            child,
            port,
            dir,
            log,
        };
        for server in 0..backends.len() {
            haproxy.wait_for(server, "UP");
        }
        haproxy
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything HAProxy wrote: its warnings and one line per request that failed.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Each server's check status (`UP`, `DOWN`, ...), by index, from the runtime API.
    pub fn statuses(&self) -> Option<Vec<String>> {
        let mut socket = UnixStream::connect(self.dir.join("admin.sock")).ok()?;
        socket.set_read_timeout(Some(PATIENCE)).ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut csv = String::new();
        socket.read_to_string(&mut csv).ok()?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (proxy, server, status) = (column("pxname")?, column("svname")?, column("status")?);
        let mut statuses = Vec::new();
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.get(proxy) == Some(&"backends")
                && fields.get(server).is_some_and(|s| s.starts_with('b'))
            {
                statuses.push(fields.get(status)?.to_string());
            }
        }
        Some(statuses)
    }

    /// Waits until HAProxy reports `server` with `status`.
    pub fn wait_for(&self, server: usize, status: &str) {
        eventually(PATIENCE, || {
            let statuses = self.statuses();
            match statuses
                .as_ref()
                .and_then(|s| s.get(server))
                .is_some_and(|s| s == status)
            {
                true => Ok(()),
                false => Err(format!(
                    "HAProxy never reported server b{server} {status} (statuses: {statuses:?}); its log:\n{}",
                    self.log().join("\n")
                )),
            }
        });
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration the issue asks for: active `GET /readyz` checks every few hundred
/// milliseconds, one failure marks a server down, no retries and no redispatch (a request sent
/// to a server that cannot take it fails, visibly), and keep-alive on both sides.
fn config(port: u16, dir: &TempDir, backends: &[u16]) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, port)| format!("    server b{i} 127.0.0.1:{port}\n"))
        .collect();
    format!(
        "\
global
    stats socket {socket} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    # Log only what went wrong: errors and non-2xx/3xx answers.
    option dontlog-normal
    option http-keep-alive
    http-reuse safe
    retries 0
    no option redispatch
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    timeout check {check_timeout}ms

frontend load
    bind 127.0.0.1:{port}
    default_backend backends

backend backends
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host rolling
    http-check expect status 200
    default-server check inter {inter}ms fall 1 rise 1
{servers}",
        socket = dir.join("admin.sock").display(),
        check_timeout = CHECK_TIMEOUT.as_millis(),
        inter = CHECK_INTERVAL.as_millis(),
    )
}
