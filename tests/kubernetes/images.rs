//! The images the cluster runs, built once per test run the way the container tests build theirs
//! (the Dockerfile's `prebuilt` stage around the static binaries `scripts/test` compiled) and
//! imported into every node's containerd, since the cluster can pull from nowhere.
//!
//! The baseline image is the very same Dockerfile around `examples/baseline.rs`: same user,
//! same scratch base, same entrypoint path, so the two differ only in the program.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::cluster::{Cluster, REPO, TempFile};
use kit::baseline_binary;

/// An image in the node's containerd: the chart's `image.repository` and `image.tag`.
#[derive(Clone, Debug)]
pub struct Image {
    pub repository: String,
    pub tag: String,
}

pub struct Images {
    pub rodent: Image,
    pub baseline: Image,
    /// The bare tonic server (`examples/grpc_baseline.rs`) the gRPC scenarios compare with.
    pub grpc_baseline: Image,
}

pub fn images(cluster: &Cluster) -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| Images {
        rodent: build_and_import(cluster, "rodent", kit::binary()),
        baseline: build_and_import(cluster, "rodent-baseline", &baseline_binary()),
        grpc_baseline: build_and_import(
            cluster,
            "rodent-grpc-baseline",
            &kit::example("grpc_baseline"),
        ),
    })
}

fn build_and_import(cluster: &Cluster, repository: &str, binary: &Path) -> Image {
    assert_static(binary);
    // A context of its own holding just the binary, as the container tests do for a target
    // directory outside the repository.
    let context = TempFile(std::env::temp_dir().join(format!(
        "rodent-kube-context-{repository}-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&context.0).expect("the build context can be made");
    std::fs::copy(binary, context.0.join("rodent")).expect("the binary can be copied");
    let iid = TempFile::new("iid", "");
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "--quiet", "--build-arg", "BINARY=prebuilt"])
        .args([
            "--build-arg",
            "RODENT_BINARY=rodent",
            "--iidfile",
            iid.path(),
        ])
        .arg("--file")
        .arg(Path::new(REPO).join("Dockerfile"))
        .arg(&context.0)
        .output()
        .expect("the docker client runs");
    assert!(
        out.status.success(),
        "docker build of {repository} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let id = std::fs::read_to_string(&iid.0).expect("docker build writes --iidfile");
    let id = id.trim().trim_start_matches("sha256:").to_string();
    let tag = format!("kube-{}", &id[..12]);
    let reference = format!("{repository}:{tag}");
    docker(&["tag", &id, &reference]);
    let archive = TempFile::new("image.tar", "");
    docker(&["save", "--output", archive.path(), &reference]);
    std::thread::scope(|scope| {
        for node in &cluster.nodes {
            let (archive, reference) = (&archive, &reference);
            scope.spawn(move || {
                cluster.ctr(node, &["images", "import", archive.path()]);
                let listed = cluster.ctr(node, &["images", "ls", "--quiet"]);
                assert!(
                    listed.lines().any(|l| l.ends_with(reference.as_str())),
                    "{reference} is not in {}'s containerd after the import:\n{listed}",
                    node.name
                );
            });
        }
    });
    Image {
        repository: repository.to_string(),
        tag,
    }
}

fn docker(args: &[&str]) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker client runs");
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// An empty image can run only a static binary (no program interpreter): what `scripts/test`
/// builds.
fn assert_static(path: &Path) {
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        elf.len() >= 0x40 && elf[..6] == *b"\x7fELF\x02\x01",
        "{} is not a 64-bit little-endian ELF",
        path.display()
    );
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let headers = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    let interpreted = (0..count).any(|i| {
        let at = headers + i * size;
        elf.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) == PT_INTERP)
    });
    assert!(
        !interpreted,
        "{} is not statically linked, so an empty image cannot run it: run the tests with \
         scripts/test",
        path.display()
    );
}
