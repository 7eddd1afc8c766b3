//! The container image and `compose.yaml`, against a real Docker engine.
//!
//! The image is built once per test run from the Dockerfile's `prebuilt` stage around the very
//! binary these tests were compiled with (static glibc, see `scripts/test`): the same final
//! stage users get from `docker build .`, only the binary is compiled outside Docker, since no
//! image can be pulled here. Every container and compose project has a unique name, publishes
//! its port on a free loopback port and is removed by a guard, so tests run in parallel and
//! leave nothing behind even when they fail.
//!
//! Without a usable engine the tests skip with a message, except in CI (`CI` set), where they
//! fail: `scripts/ci/docker.sh` installs and starts the engine there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kit::try_eventually_async;

const RODENT: &str = env!("CARGO_BIN_EXE_rodent");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// Where the zombie test finds a static shell to `docker exec` (Debian's `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";
/// Short enough to keep the tests quick, long enough to measure.
const DRAIN_DELAY: Duration = Duration::from_millis(500);
/// `docker stop` sends SIGKILL after this; rodent must never need it.
const DOCKER_KILL_AFTER: Duration = Duration::from_secs(10);
/// The image's health check runs every 5 s: the first "healthy" comes after one interval.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

// --- what the tests need ------------------------------------------------------------------------

/// Runs a test only when what it needs is there. In CI a missing piece is a failure (the setup
/// is broken); on a developer machine the test is skipped with a message saying why.
macro_rules! require {
    ($($need:expr),+ $(,)?) => {
        $(
            if !usable($need) {
                return;
            }
        )+
    };
}

fn usable(need: Result<(), String>) -> bool {
    match need {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI is set but {why}"),
        Err(why) => {
            eprintln!("skipping: {why}");
            false
        }
    }
}

/// A Docker engine that answers, and a rodent binary that runs in an empty Linux image.
fn engine() -> Result<(), String> {
    static ENGINE: OnceLock<Result<(), String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            static_linux_binary(Path::new(RODENT))?;
            docker_answers(&["info", "--format", "{{.ServerVersion}}"])
        })
        .clone()
}

fn compose() -> Result<(), String> {
    static COMPOSE: OnceLock<Result<(), String>> = OnceLock::new();
    engine()?;
    COMPOSE
        .get_or_init(|| docker_answers(&["compose", "version"]))
        .clone()
}

/// The static shell the zombie test bind-mounts into the shell-less image.
fn busybox() -> Result<(), String> {
    if Path::new(BUSYBOX).is_file() {
        Ok(())
    } else {
        Err(format!(
            "{BUSYBOX} is missing (Debian's busybox-static; scripts/ci/docker.sh installs it)"
        ))
    }
}

fn docker_answers(args: &[&str]) -> Result<(), String> {
    let why = match Command::new("docker").args(args).output() {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(out) => format!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("cannot run `docker`: {e}"),
    };
    Err(format!(
        "Docker is unusable ({why}); scripts/ci/docker.sh installs and starts it"
    ))
}

/// The image runs the binary these tests were built with: it must be a statically linked
/// Linux ELF (no program interpreter), as `scripts/test` builds it.
fn static_linux_binary(path: &Path) -> Result<(), String> {
    const PT_INTERP: u32 = 3;
    let not_static = || {
        format!(
            "{} is not a static Linux executable, so an empty image cannot run it: \
             run the tests with scripts/test",
            path.display()
        )
    };
    let elf = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // 64-bit little-endian ELF only (x86_64, aarch64): the header fields used below.
    if elf.len() < 0x40 || elf[..6] != *b"\x7fELF\x02\x01" {
        return Err(not_static());
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let program_headers = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (entry_size, entries) = (u16_at(0x36), u16_at(0x38));
    let interpreted = (0..entries).any(|i| {
        let at = program_headers + i * entry_size;
        elf.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) == PT_INTERP)
    });
    if interpreted {
        Err(not_static())
    } else {
        Ok(())
    }
}

// --- running docker ------------------------------------------------------------------------------

/// Runs `docker` without blocking the test's runtime (a request may be in flight meanwhile).
/// A call abandoned by a timeout kills its client.
async fn docker(args: &[&str]) -> Output {
    tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("the docker client runs (engine() checked it)")
}

/// Runs `docker` and returns its trimmed stdout; panics with stderr when it fails.
async fn docker_ok(args: &[&str]) -> String {
    let out = docker(args).await;
    assert!(
        out.status.success(),
        "`docker {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn unique_name(kind: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "rodent-test-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// --- the image -----------------------------------------------------------------------------------

/// The image under test, built once per test run. Named by its content (`rodent:test-<id>`) so
/// that parallel runs of different builds never retag each other's image.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(build_image)
}

fn build_image() -> String {
    let repo = Path::new(REPO);
    // The documented way: the repository as the build context, the binary at its place under
    // target/ (let through by .dockerignore). A target directory elsewhere gets a context of its
    // own holding just the binary.
    let (context, binary, _scratch) = match Path::new(RODENT).strip_prefix(repo) {
        Ok(relative) => (repo.to_path_buf(), relative.to_path_buf(), None),
        Err(_) => {
            let dir = TempPath(std::env::temp_dir().join(unique_name("context")));
            std::fs::create_dir_all(&dir.0).expect("the temporary directory is writable");
            std::fs::copy(RODENT, dir.0.join("rodent")).expect("the binary can be copied");
            (dir.0.clone(), PathBuf::from("rodent"), Some(dir))
        }
    };
    let iid = std::env::temp_dir().join(format!("{}.iid", unique_name("image")));
    let iid = TempPath(iid);
    let out = Command::new("docker")
        // BuildKit builds only the stages the final one needs: the Rust image is never pulled.
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "--build-arg", "BINARY=prebuilt", "--build-arg"])
        .arg(format!("RODENT_BINARY={}", binary.display()))
        .arg("--iidfile")
        .arg(&iid.0)
        .arg("--file")
        .arg(repo.join("Dockerfile"))
        .arg(&context)
        .output()
        .expect("the docker client runs");
    assert!(
        out.status.success(),
        "docker build failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let id = std::fs::read_to_string(&iid.0).expect("docker build writes --iidfile");
    let id = id.trim().trim_start_matches("sha256:");
    let tag = format!("rodent:test-{}", &id[..12]);
    let out = Command::new("docker")
        .args(["tag", id, &tag])
        .output()
        .expect("the docker client runs");
    assert!(out.status.success(), "docker tag {id} {tag} failed");
    tag
}

/// A file or directory removed when the guard drops.
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

async fn inspect_image(format: &str) -> String {
    docker_ok(&["image", "inspect", "--format", format, image()]).await
}

// --- containers ----------------------------------------------------------------------------------

/// A container of the image under test, removed (forcibly) when dropped.
struct Container {
    name: String,
}

impl Container {
    /// `docker run -d` of the image with `options` before the image and `command` after it;
    /// port 8080 is published on a free loopback port.
    async fn run(options: &[&str], command: &[&str]) -> Self {
        let container = Self {
            name: unique_name("run"),
        };
        let mut args = vec!["run", "--detach", "--name", &container.name];
        args.extend(["--publish", "127.0.0.1::8080"]);
        args.extend(options);
        args.push(image());
        args.extend(command);
        docker_ok(&args).await;
        container
    }

    async fn inspect(&self, format: &str) -> String {
        docker_ok(&["container", "inspect", "--format", format, &self.name]).await
    }

    async fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]).await;
        let mut logs = String::from_utf8_lossy(&out.stdout).into_owned();
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
        logs
    }

    /// The published loopback address of port 8080.
    async fn url(&self) -> String {
        let port = docker_ok(&["port", &self.name, "8080/tcp"]).await;
        loopback_url(&port)
    }

    async fn running(&self) -> bool {
        self.inspect("{{.State.Running}}").await == "true"
    }

    /// Waits until `/readyz` answers 200 and returns the base URL.
    async fn ready(&self) -> String {
        let url = self.url().await;
        let ready = try_eventually_async(Duration::from_secs(20), async || {
            match get_status(&format!("{url}/readyz")).await == Some(200) {
                true => Ok(()),
                false if self.running().await => Err(()),
                // Exited: it will never be ready.
                false => Ok(()),
            }
        })
        .await;
        if ready.is_err() || get_status(&format!("{url}/readyz")).await != Some(200) {
            panic!(
                "{} never became ready at {url}; logs:\n{}",
                self.name,
                self.logs().await
            );
        }
        url
    }

    /// Waits until the container has stopped and returns its exit code.
    async fn wait(&self, within: Duration) -> i32 {
        let waited = tokio::time::timeout(within, docker(&["wait", &self.name])).await;
        let out = waited.unwrap_or_else(|_| panic!("{} still runs after {within:?}", self.name));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("docker wait {} printed no exit code", self.name))
    }

    /// `docker exec` as the image's user.
    async fn exec(&self, command: &[&str]) -> String {
        let mut args = vec!["exec", &self.name];
        args.extend(command);
        docker_ok(&args).await
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.name])
            .output();
    }
}

/// `127.0.0.1:32768` (one line per address family from `docker port`) → `http://127.0.0.1:32768`.
fn loopback_url(published: &str) -> String {
    let address = published
        .lines()
        .find(|line| line.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no loopback address in {published:?}"));
    format!("http://{address}")
}

fn client() -> reqwest::Client {
    kit::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client builds")
}

async fn get_status(url: &str) -> Option<u16> {
    client()
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Whether `condition` holds within `within` (checked again and again until then).
async fn holds_within(within: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    try_eventually_async(within, async || condition().await.then_some(()).ok_or(()))
        .await
        .is_ok()
}

// --- compose.yaml --------------------------------------------------------------------------------

fn compose_file() -> serde_norway::Value {
    let text = std::fs::read_to_string(Path::new(REPO).join("compose.yaml"))
        .expect("compose.yaml is at the top of the repository");
    serde_norway::from_str(&text).expect("compose.yaml is YAML")
}

fn compose_service() -> serde_norway::Value {
    compose_file()["services"]["rodent"].clone()
}

fn strings(value: &serde_norway::Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The `docker run` options that stand for compose.yaml's hardening of the rodent service.
fn compose_hardening() -> Vec<String> {
    let service = compose_service();
    let mut options = Vec::new();
    if service["read_only"].as_bool() == Some(true) {
        options.push("--read-only".to_string());
    }
    for tmpfs in strings(&service["tmpfs"]) {
        options.extend(["--tmpfs".to_string(), tmpfs]);
    }
    for cap in strings(&service["cap_drop"]) {
        options.extend(["--cap-drop".to_string(), cap]);
    }
    for opt in strings(&service["security_opt"]) {
        options.extend(["--security-opt".to_string(), opt]);
    }
    options
}

/// A compose project made of compose.yaml plus an override that swaps in the image under test
/// (never building or pulling), publishes on a free loopback port and shortens the drain.
/// `docker compose down` runs when it drops.
struct ComposeProject {
    name: String,
    overrides: TempPath,
    /// The compose profile every command of the project runs with, `down` included.
    profile: Option<&'static str>,
}

impl ComposeProject {
    fn new() -> Self {
        Self::of(None, &["rodent"])
    }

    /// The same for each of `services`, with `profile` on (compose.yaml's `chain` profile adds
    /// `backend` and `frontend`).
    fn of(profile: Option<&'static str>, services: &[&str]) -> Self {
        let name = unique_name("compose");
        let overrides = TempPath(std::env::temp_dir().join(format!("{name}.override.yaml")));
        let mut text = String::from("services:\n");
        for service in services {
            text.push_str(&format!(
                "  {service}:\n    image: {image}\n    pull_policy: never\n    ports: !override\n      - \"127.0.0.1::8080\"\n    environment:\n      RODENT_DRAIN_DELAY: {drain}ms\n",
                image = image(),
                drain = DRAIN_DELAY.as_millis()
            ));
        }
        std::fs::write(&overrides.0, text).expect("the temporary directory is writable");
        Self {
            name,
            overrides,
            profile,
        }
    }

    fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let overrides = self
            .overrides
            .0
            .to_str()
            .expect("temporary paths are UTF-8");
        let mut args = vec!["compose", "--project-name", &self.name];
        args.extend([
            "--file",
            concat!(env!("CARGO_MANIFEST_DIR"), "/compose.yaml"),
        ]);
        args.extend(["--file", overrides]);
        if let Some(profile) = self.profile {
            args.extend(["--profile", profile]);
        }
        args.extend(rest);
        args
    }

    async fn run(&self, rest: &[&str]) -> Output {
        docker(&self.args(rest)).await
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(self.args(&["down", "--volumes", "--timeout", "1"]))
            .output();
    }
}

/// Now, as `docker events --since/--until` take it.
fn unix_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970");
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// `30s`, `500ms`, `2m` (the forms rodent and compose both accept) → a duration.
fn duration(text: &str) -> Duration {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(0));
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is no duration"));
    match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        _ => panic!("{text:?} has an unknown unit"),
    }
}

// --- the tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn the_image_is_small_runs_as_a_numeric_non_root_user_and_starts_rodent() {
    require!(engine());
    let size: u64 = inspect_image("{{.Size}}").await.parse().expect("a size");
    assert!(size < 10_000_000, "the image has {size} bytes, over 10 MB");

    let user = inspect_image("{{.Config.User}}").await;
    let (uid, gid) = user.split_once(':').unwrap_or((&user, ""));
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("USER {user:?} is not numeric: runAsNonRoot cannot check it"));
    assert_ne!(uid, 0, "the image runs as root");
    assert!(
        gid.is_empty() || gid.parse::<u32>().is_ok(),
        "group of {user:?}"
    );

    assert_eq!(
        inspect_image("{{json .Config.Entrypoint}}").await,
        r#"["/rodent"]"#
    );
    assert_eq!(inspect_image("{{json .Config.Cmd}}").await, "null");
    assert_eq!(inspect_image("{{.Config.StopSignal}}").await, "SIGTERM");
    assert_eq!(
        inspect_image("{{json .Config.ExposedPorts}}").await,
        r#"{"8080/tcp":{}}"#
    );
    let health = inspect_image("{{json .Config.Healthcheck.Test}}").await;
    assert_eq!(health, r#"["CMD","/rodent","probe","ready"]"#);
    let label = |name: &str| inspect_image_label(name.to_string());
    assert_eq!(
        label("org.opencontainers.image.version").await,
        env!("CARGO_PKG_VERSION"),
        "the Dockerfile's RODENT_VERSION must follow Cargo.toml"
    );
    assert_eq!(
        label("org.opencontainers.image.licenses").await,
        env!("CARGO_PKG_LICENSE")
    );
    assert_eq!(
        label("org.opencontainers.image.source").await,
        env!("CARGO_PKG_REPOSITORY")
    );
}

async fn inspect_image_label(name: String) -> String {
    inspect_image(&format!("{{{{index .Config.Labels \"{name}\"}}}}")).await
}

#[tokio::test]
async fn a_container_becomes_ready_and_healthy_with_rodents_supervisor_as_pid_1() {
    require!(engine());
    let container = Container::run(&[], &[]).await;
    let url = container.ready().await;

    let info: serde_json::Value = client()
        .get(format!("{url}/"))
        .send()
        .await
        .expect("GET / answers")
        .json()
        .await
        .expect("GET / is JSON");
    // PID 1 is rodent's supervisor; the service answering is its child (see the supervisor
    // module). Seen from the host: the container's PID 1, its children, and their PIDs in the
    // container's namespace.
    let pid1 = container.inspect("{{.State.Pid}}").await;
    let cmdline = |pid: &str| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        cmdline(&pid1).starts_with(b"/rodent\0"),
        "PID 1 in the container is not rodent"
    );
    let children = std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children")).unwrap();
    let service = children.split_whitespace().find(|child| {
        let status = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
        let in_container = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|pids| pids.split_whitespace().last())
            .and_then(|pid| pid.parse::<i64>().ok());
        in_container == info["pid"].as_i64()
    });
    let service =
        service.unwrap_or_else(|| panic!("the service ({info}) is not PID 1's child: {children}"));
    // The service says what it is, and has the supervisor's name, not `exe`.
    assert!(
        cmdline(service).starts_with(b"rodent: service\0"),
        "{:?}",
        String::from_utf8_lossy(&cmdline(service))
    );
    let comm = std::fs::read_to_string(format!("/proc/{service}/comm")).unwrap_or_default();
    assert_eq!(comm.trim_end(), "rodent");
    assert_ne!(
        info["pid"], 1,
        "the service itself must not be PID 1: {info}"
    );

    let healthy = holds_within(HEALTHY_WITHIN, async || {
        container.inspect("{{.State.Health.Status}}").await == "healthy"
    })
    .await;
    assert!(
        healthy,
        "health status is {:?} after {HEALTHY_WITHIN:?}; logs:\n{}",
        container.inspect("{{json .State.Health}}").await,
        container.logs().await
    );
}

#[tokio::test]
async fn docker_stop_returns_after_the_drain_delay_with_exit_code_0() {
    require!(engine());
    let drain = format!("RODENT_DRAIN_DELAY={}ms", DRAIN_DELAY.as_millis());
    let container = Container::run(&["--env", &drain], &[]).await;
    container.ready().await;

    let started = Instant::now();
    docker_ok(&["stop", &container.name]).await;
    let took = started.elapsed();
    eprintln!("docker stop took {took:?} with a drain delay of {DRAIN_DELAY:?}");

    assert!(
        took >= DRAIN_DELAY,
        "stopped after {took:?}, before the drain delay"
    );
    assert!(
        took < DOCKER_KILL_AFTER / 2,
        "docker stop took {took:?}: nearly Docker's SIGKILL at {DOCKER_KILL_AFTER:?}"
    );
    let code = container.inspect("{{.State.ExitCode}}").await;
    assert_eq!(code, "0", "logs:\n{}", container.logs().await);
    assert_eq!(container.inspect("{{.State.OOMKilled}}").await, "false");
}

#[tokio::test]
async fn a_request_in_flight_when_docker_stop_starts_completes() {
    require!(engine());
    let drain = format!("RODENT_DRAIN_DELAY={}ms", DRAIN_DELAY.as_millis());
    let container = Container::run(&["--env", &drain], &[]).await;
    let url = container.ready().await;

    // Longer than the drain delay: the listener closes while this request is still running.
    let slow = tokio::spawn({
        let url = format!("{url}/delay/2000");
        async move { client().get(url).send().await }
    });
    let metrics = format!("{url}/metrics");
    let in_flight = holds_within(Duration::from_secs(5), async || {
        let Ok(response) = client().get(&metrics).send().await else {
            return false;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with("rodent_http_requests_in_flight{route=\"/delay/{ms}\"} 1"))
    })
    .await;
    assert!(in_flight, "the slow request never showed up as in flight");

    let started = Instant::now();
    docker_ok(&["stop", &container.name]).await;
    let took = started.elapsed();

    let response = slow
        .await
        .expect("the request task does not panic")
        .expect("the in-flight request completes instead of being cut");
    assert_eq!(response.status(), 200);
    assert!(took < DOCKER_KILL_AFTER / 2, "docker stop took {took:?}");
    assert_eq!(
        container.inspect("{{.State.ExitCode}}").await,
        "0",
        "logs:\n{}",
        container.logs().await
    );
}

#[tokio::test]
async fn a_read_only_root_filesystem_with_the_compose_settings_works() {
    require!(engine(), busybox());
    let hardening = compose_hardening();
    assert!(
        hardening.iter().any(|o| o == "--read-only"),
        "compose.yaml sets no read_only: true"
    );
    let busybox = format!("{BUSYBOX}:/busybox:ro");
    let mut options: Vec<&str> = hardening.iter().map(String::as_str).collect();
    options.extend(["--volume", &busybox]);
    let container = Container::run(&options, &[]).await;
    let url = container.ready().await;
    assert_eq!(get_status(&format!("{url}/healthz")).await, Some(200));

    // The PID file's directory is writable by the image's user; the rest is not.
    let pid_file = compose_service()["environment"]["RODENT_PID_FILE"]
        .as_str()
        .expect("compose.yaml sets RODENT_PID_FILE")
        .to_string();
    let pid_dir = Path::new(&pid_file).parent().expect("an absolute path");
    let probe = pid_dir.join("write-test");
    let probe = probe.to_str().expect("UTF-8");
    container.exec(&["/busybox", "touch", probe]).await;
    container.exec(&["/busybox", "rm", probe]).await;
    let root = docker(&["exec", &container.name, "/busybox", "touch", "/write-test"]).await;
    assert!(!root.status.success(), "the root filesystem is writable");

    docker_ok(&["stop", &container.name]).await;
    assert_eq!(
        container.inspect("{{.State.ExitCode}}").await,
        "0",
        "logs:\n{}",
        container.logs().await
    );
}

#[tokio::test]
async fn an_invalid_variable_exits_78_and_is_named_in_the_logs() {
    require!(engine());
    let container = Container::run(&["--env", "RODENT_PORT=abc"], &[]).await;
    let code = container.wait(Duration::from_secs(20)).await;
    let logs = container.logs().await;
    assert_eq!(code, 78, "logs:\n{logs}");
    assert!(
        logs.contains("RODENT_PORT"),
        "the logs do not name RODENT_PORT:\n{logs}"
    );
}

#[tokio::test]
async fn a_service_name_resolves_from_the_scratch_image() {
    require!(engine());
    // glibc linked statically still resolves through Docker's embedded DNS: what an OTLP
    // endpoint such as http://collector:4318 needs.
    let network = Network::create().await;
    let alias = "rodent-upstream";
    let server = Container::run(&["--network", &network.name, "--network-alias", alias], &[]).await;
    server.ready().await;
    let url = format!("http://{alias}:8080");
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        &network.name,
        image(),
        "probe",
        "ready",
        "--url",
        &url,
    ])
    .await;
    assert!(
        out.status.success(),
        "rodent probe --url {url} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user-defined network (the kind with Docker's embedded DNS), removed when dropped.
struct Network {
    name: String,
}

impl Network {
    async fn create() -> Self {
        let network = Self {
            name: unique_name("net"),
        };
        docker_ok(&["network", "create", &network.name]).await;
        network
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Containers are dropped first (declared later), so the network is free by now.
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

#[tokio::test]
async fn orphans_in_the_container_are_reaped() {
    require!(engine(), busybox());
    let busybox = format!("{BUSYBOX}:/busybox:ro");
    let container = Container::run(&["--volume", &busybox], &[]).await;
    container.ready().await;

    // The shell exits at once; its three children are orphaned to PID 1 (rodent), and exit
    // two seconds later. Their stdio is detached so that `docker exec` does not wait for them.
    let orphan = "/busybox sleep 2 </dev/null >/dev/null 2>&1 &";
    container
        .exec(&[
            "/busybox",
            "sh",
            "-c",
            &format!("{orphan} {orphan} {orphan} exit 0"),
        ])
        .await;
    let orphans: Vec<Process> = processes(&container)
        .await
        .into_iter()
        .filter(|p| p.parent == 1 && p.command.contains("sleep"))
        .collect();
    assert_eq!(
        orphans.len(),
        3,
        "expected three orphans adopted by PID 1: {orphans:?}"
    );

    // Gone from the process table, not just exited: a zombie keeps its /proc entry.
    // They exit after 2 s; no zombie may outlive them by more than a second (plus slack).
    let reaped = holds_within(Duration::from_secs(5), async || {
        let now = processes(&container).await;
        orphans.iter().all(|o| !now.iter().any(|p| p.pid == o.pid))
    })
    .await;
    let left = processes(&container).await;
    assert!(
        reaped,
        "orphans not reaped by PID 1 within 5 s: {:?}",
        left.iter()
            .filter(|p| orphans.iter().any(|o| o.pid == p.pid))
            .collect::<Vec<_>>()
    );
    assert!(
        !left.iter().any(|p| p.state == 'Z'),
        "zombies left: {left:?}"
    );
}

#[derive(Debug)]
struct Process {
    pid: u32,
    parent: u32,
    state: char,
    command: String,
}

/// The container's process table, read through its /proc with busybox: per process one line of
/// `stat`, a tab, and the command line (empty for a zombie; NULs and newlines made spaces).
async fn processes(container: &Container) -> Vec<Process> {
    let script = r#"for p in /proc/[0-9]*; do s=$(/busybox cat "$p/stat" 2>/dev/null) || continue; c=$(/busybox tr '\0\n' '  ' < "$p/cmdline" 2>/dev/null); /busybox printf '%s\t%s\n' "$s" "$c"; done"#;
    let out = container.exec(&["/busybox", "sh", "-c", script]).await;
    out.lines()
        .filter_map(|line| {
            let (stat, command) = line.split_once('\t').unwrap_or((line, ""));
            // The command name in parentheses may itself hold spaces: split after the last ')'.
            let (head, tail) = stat.rsplit_once(')')?;
            let pid = head.split_whitespace().next()?.parse().ok()?;
            let mut fields = tail.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let parent = fields.next()?.parse().ok()?;
            Some(Process {
                pid,
                parent,
                state,
                command: command.trim().to_string(),
            })
        })
        .collect()
}

#[tokio::test]
async fn compose_yaml_keeps_the_grace_periods_equal_and_the_service_hardened() {
    let service = compose_service();
    let env = &service["environment"];
    let grace = env["RODENT_SHUTDOWN_GRACE"]
        .as_str()
        .expect("compose.yaml sets RODENT_SHUTDOWN_GRACE");
    let stop = service["stop_grace_period"]
        .as_str()
        .expect("compose.yaml sets stop_grace_period");
    assert_eq!(
        duration(grace),
        duration(stop),
        "stop_grace_period must equal RODENT_SHUTDOWN_GRACE"
    );
    for variable in [
        "RODENT_DRAIN_DELAY",
        "RODENT_REQUEST_TIMEOUT",
        "RODENT_PID_FILE",
    ] {
        assert!(
            env[variable].is_string(),
            "compose.yaml does not show {variable}"
        );
    }
    assert_eq!(
        strings(&service["healthcheck"]["test"]),
        ["CMD", "/rodent", "probe", "ready"]
    );
    assert_eq!(service["read_only"].as_bool(), Some(true));
    let pid_dir = Path::new(env["RODENT_PID_FILE"].as_str().expect("a path"))
        .parent()
        .expect("an absolute path")
        .to_str()
        .expect("UTF-8")
        .to_string();
    assert!(
        strings(&service["tmpfs"])
            .iter()
            .any(|t| t.split(':').next() == Some(pid_dir.as_str())),
        "no tmpfs at {pid_dir}, where the PID file goes"
    );
    assert_eq!(strings(&service["cap_drop"]), ["ALL"]);
    assert_eq!(
        strings(&service["security_opt"]),
        ["no-new-privileges:true"]
    );
    assert!(service["restart"].is_string(), "no restart policy");
    assert!(
        strings(&service["ports"])
            .iter()
            .any(|p| p.ends_with(":8080")),
        "port 8080 is not published"
    );
    assert!(service["build"].is_mapping() || service["build"].is_string());
}

#[tokio::test]
async fn compose_up_wait_is_healthy_serves_and_compose_down_stops_cleanly() {
    require!(engine(), compose());
    let project = ComposeProject::new();
    let up = tokio::time::timeout(
        Duration::from_secs(120),
        project.run(&["up", "--detach", "--wait"]),
    )
    .await
    .expect("docker compose up --wait returns within 2 minutes");
    assert!(
        up.status.success(),
        "docker compose up --wait failed ({}):\n{}",
        up.status,
        String::from_utf8_lossy(&up.stderr)
    );
    let port = project.run(&["port", "rodent", "8080"]).await;
    let url = loopback_url(String::from_utf8_lossy(&port.stdout).trim());
    assert_eq!(get_status(&format!("{url}/readyz")).await, Some(200));
    assert_eq!(get_status(&format!("{url}/")).await, Some(200));

    let id = project.run(&["ps", "--quiet", "rodent"]).await;
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    assert!(!id.is_empty(), "compose lists no rodent container");
    assert_eq!(
        docker_ok(&[
            "container",
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            &id
        ])
        .await,
        "healthy"
    );

    let grace = duration(
        compose_service()["stop_grace_period"]
            .as_str()
            .expect("compose.yaml sets stop_grace_period"),
    );
    let since = unix_time();
    let started = Instant::now();
    let down = project.run(&["down"]).await;
    let took = started.elapsed();
    eprintln!("docker compose down took {took:?} with a drain delay of {DRAIN_DELAY:?}");
    assert!(
        down.status.success(),
        "docker compose down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(
        took < grace,
        "docker compose down took {took:?}, over {grace:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "docker compose down took {took:?}"
    );
    // The container is gone; the engine's event log still has how it died.
    let until = unix_time();
    let exit_codes = docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={id}"),
        "--filter",
        "event=die",
        "--format",
        "{{index .Actor.Attributes \"exitCode\"}}",
    ])
    .await;
    assert_eq!(exit_codes, "0", "the service did not exit 0 once");
}

#[path = "container/hardened.rs"]
mod hardened;
#[path = "container/offline_compose.rs"]
mod offline_compose;
#[path = "container/tls.rs"]
mod tls;
#[path = "container/two_tier_compose.rs"]
mod two_tier_compose;
