//! `docker compose up` on a machine that cannot pull the Rust image: with
//! `RODENT_IMAGE_BINARY=prebuilt`, compose.yaml's own build copies a static binary built
//! beforehand instead of compiling in the Rust image. Here it is the binary under test, so the
//! build must not pull anything (nothing can be pulled here).

use super::*;

/// Where the quick start's `cargo build` leaves the binary, relative to the repository; the
/// binary under test is copied there when it was built elsewhere. Removed when dropped.
struct BinaryInContext {
    relative: PathBuf,
    _copy: Option<TempPath>,
}

impl BinaryInContext {
    fn new() -> Self {
        let repo = Path::new(REPO);
        if let Ok(relative) = Path::new(RODENT).strip_prefix(repo) {
            return Self {
                relative: relative.to_path_buf(),
                _copy: None,
            };
        }
        // `.dockerignore` lets `target/*/release/rodent` into the context.
        let dir = repo.join("target").join(unique_name("compose-binary"));
        let release = dir.join("release");
        std::fs::create_dir_all(&release).expect("target/ is writable");
        std::fs::copy(RODENT, release.join("rodent")).expect("the binary can be copied");
        Self {
            relative: dir
                .strip_prefix(repo)
                .expect("made under the repository")
                .join("release/rodent"),
            _copy: Some(TempPath(dir)),
        }
    }
}

/// A compose project that builds compose.yaml's image (under a name of its own) from the
/// prebuilt binary; `down` and the image's removal run when it drops.
struct Building {
    project: ComposeProject,
    image: String,
    binary: BinaryInContext,
}

impl Building {
    fn new() -> Self {
        let name = unique_name("compose-build");
        let image = format!("{name}:latest");
        let overrides = TempPath(std::env::temp_dir().join(format!("{name}.override.yaml")));
        let text = format!(
            "services:\n  rodent:\n    image: {image}\n    ports: !override\n      - \"127.0.0.1::8080\"\n    environment:\n      RODENT_DRAIN_DELAY: {drain}ms\n",
            drain = DRAIN_DELAY.as_millis()
        );
        std::fs::write(&overrides.0, text).expect("the temporary directory is writable");
        Self {
            project: ComposeProject {
                name,
                overrides,
                profile: None,
            },
            image,
            binary: BinaryInContext::new(),
        }
    }

    /// `docker compose` with the environment the README documents for an offline build.
    async fn run(&self, rest: &[&str]) -> Output {
        tokio::process::Command::new("docker")
            .args(self.project.args(rest))
            .env("RODENT_IMAGE_BINARY", "prebuilt")
            .env("RODENT_IMAGE_BINARY_PATH", &self.binary.relative)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("the docker client runs")
    }
}

impl Drop for Building {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(self.project.args(&["down", "--volumes", "--timeout", "1"]))
            .output();
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", &self.image])
            .output();
    }
}

#[tokio::test]
async fn compose_up_builds_from_a_prebuilt_binary_becomes_healthy_and_stops_inside_the_grace() {
    require!(engine(), compose());
    let building = Building::new();
    let up = tokio::time::timeout(
        Duration::from_secs(180),
        building.run(&["up", "--detach", "--wait", "--build"]),
    )
    .await
    .expect("docker compose up --wait returns within 3 minutes");
    assert!(
        up.status.success(),
        "RODENT_IMAGE_BINARY=prebuilt docker compose up --build --wait failed ({}):\n{}",
        up.status,
        String::from_utf8_lossy(&up.stderr)
    );
    // The image compose built holds the binary under test, byte for byte.
    let size: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", &building.image])
        .await
        .parse()
        .expect("a size");
    let binary = std::fs::metadata(RODENT).expect("the binary exists").len();
    assert!(
        size >= binary && size < binary + 64 * 1024,
        "the image has {size} bytes, the binary {binary}"
    );

    let id = building.run(&["ps", "--quiet", "rodent"]).await;
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
    let port = building.run(&["port", "rodent", "8080"]).await;
    let url = loopback_url(String::from_utf8_lossy(&port.stdout).trim());
    assert_eq!(get_status(&format!("{url}/")).await, Some(200));

    let grace = duration(
        compose_service()["stop_grace_period"]
            .as_str()
            .expect("compose.yaml sets stop_grace_period"),
    );
    let started = Instant::now();
    let stop = building.run(&["stop", "rodent"]).await;
    let took = started.elapsed();
    assert!(
        stop.status.success(),
        "docker compose stop failed: {}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert!(
        took < grace,
        "docker compose stop took {took:?}, over {grace:?}"
    );
    assert_eq!(
        docker_ok(&[
            "container",
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &id
        ])
        .await,
        "0"
    );
}
