//! Serving HTTPS: what clients see, the probes, and a pair that cannot be used.

use std::process::Command;

use nix::sys::signal::Signal::SIGTERM;

use super::certs::{Ca, write};
use super::{https, serving};
use kit::{PATIENCE, TempDir, rodent};

#[tokio::test]
async fn https_speaks_http1_and_http2_by_alpn_to_real_clients() {
    let dir = TempDir::new("tls-serving");
    let ca = Ca::new();
    let one = ca.issue("rodent-one", 2031);
    let (cert, key) = write(dir.path(), &one);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let mut rodent = serving(&cert, &key).spawn();
    let listening = rodent.wait_log(|l| l["message"] == "listening");
    assert_eq!(listening["scheme"], "https");
    let port = rodent.addr().port();

    // ALPN: the server picks h2 when offered, HTTP/1.1 otherwise.
    assert_eq!(
        ca.served(port, &["h2", "http/1.1"]).await.1.as_deref(),
        Some("h2")
    );
    assert_eq!(
        ca.served(port, &["http/1.1"]).await.1.as_deref(),
        Some("http/1.1")
    );
    assert_eq!(
        ca.served(port, &[]).await.0,
        one.der,
        "the certificate from the files"
    );

    for (alpn, version) in [
        (&["h2", "http/1.1"][..], reqwest::Version::HTTP_2),
        (&["http/1.1"][..], reqwest::Version::HTTP_11),
    ] {
        let client = ca.reqwest(kit::client_builder(), alpn);
        let response = client.get(https(&rodent, "/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), version);
        let echoed = client
            .post(https(&rodent, "/echo"))
            .body("over TLS")
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.text().await.unwrap(), "over TLS");
    }

    if kit::require_tool("curl", "apt-get install curl") {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--http2", "--cacert"])
            .arg(&ca_file)
            .args(["--write-out", "\n%{http_version} %{http_code}"])
            .arg(https(&rodent, "/readyz"))
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{printed}{:?}", output.stderr);
        assert!(printed.ends_with("\n2 200"), "{printed}");
    }
    if kit::require_tool("openssl", "apt-get install openssl") {
        let subject = super::certs::openssl_subject(&ca_file, port);
        assert!(
            subject.contains("CN=rodent-one") || subject.contains("CN = rodent-one"),
            "{subject}"
        );
    }

    // The expiry of the certificate in use, and no rotation yet.
    let metrics = rodent_metrics(&ca, &rodent).await;
    assert_eq!(
        metric(
            &metrics,
            "rodent_tls_certificate_expiration_timestamp_seconds"
        ),
        Some(one.not_after),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "rodent_tls_reloads_total{outcome=\"applied\"}"),
        Some(0)
    );
    assert_eq!(
        metric(&metrics, "rodent_tls_reloads_total{outcome=\"rejected\"}"),
        Some(0)
    );

    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain = kit::client().get(rodent.url("/healthz")).send().await;
    assert!(plain.is_err(), "{plain:?}");
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

/// `/metrics` over HTTPS, as text.
pub async fn rodent_metrics(ca: &Ca, rodent: &kit::Rodent) -> String {
    ca.reqwest(kit::client_builder(), &["http/1.1"])
        .get(https(rodent, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn metric(text: &str, series: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The management port stays plain HTTP: the kubelet and Prometheus reach it as before.
#[tokio::test]
async fn the_management_port_stays_plain_http() {
    let dir = TempDir::new("tls-management");
    let ca = Ca::new();
    let (cert, key) = write(dir.path(), &ca.issue("rodent-one", 2031));
    let rodent = serving(&cert, &key)
        .env("RODENT_MANAGEMENT_PORT", "0")
        .spawn();
    let management = rodent.wait_log(|l| l["message"] == "management listening");
    let address = management["address"].as_str().unwrap();
    let answer = kit::client()
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let client = ca.reqwest(kit::client_builder(), &["h2", "http/1.1"]);
    assert_eq!(
        client
            .get(https(&rodent, "/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// `rodent probe` (the image's HEALTHCHECK) trusts the certificate in `RODENT_TLS_CERT` by
/// itself, whatever names it holds; a server that serves another certificate fails it.
#[test]
fn rodent_probe_works_over_https() {
    let dir = TempDir::new("tls-probe");
    let ca = Ca::new();
    let (cert, key) = write(dir.path(), &ca.issue("rodent-one", 2031));
    let mut served = serving(&cert, &key).spawn();
    let port = served.addr().port().to_string();
    let probe = |cert: &std::path::Path, args: &[&str]| {
        serving(cert, &key)
            .env("RODENT_PORT", port.as_str())
            .run(args)
    };
    for kind in ["live", "ready", "grpc"] {
        let (code, out, err) = probe(&cert, &["probe", kind]);
        assert_eq!(code, 0, "probe {kind}: {out}{err}");
    }
    let url = format!("https://127.0.0.1:{port}");
    for kind in ["ready", "grpc"] {
        let (code, out, err) = probe(&cert, &["probe", kind, "--url", &url]);
        assert_eq!(code, 0, "probe {kind} --url {url}: {out}{err}");
    }

    // Another certificate in RODENT_TLS_CERT: the one served is not trusted.
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    let (other_cert, _) = write(&other, &ca.issue("rodent-other", 2031));
    for kind in ["ready", "grpc"] {
        let (code, out, err) = probe(&other_cert, &["probe", kind]);
        assert_eq!(code, 1, "probe {kind}: {out}{err}");
    }
    served.signal(SIGTERM);
    assert_eq!(served.exit_code(PATIENCE), 0);
}

/// A pair that cannot be used is a refused configuration, naming the variable: at start (exit
/// 78, before anything listens) and in `config check`.
#[test]
fn a_pair_that_cannot_be_used_is_refused_at_start_naming_the_variable() {
    let dir = TempDir::new("tls-refused");
    let ca = Ca::new();
    let (cert, key) = write(dir.path(), &ca.issue("rodent-one", 2031));
    let other = ca.issue("rodent-other", 2031);
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, &other.key).unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();

    let cases: [(
        &str,
        Option<&std::path::Path>,
        Option<&std::path::Path>,
        &str,
    ); 4] = [
        (
            "RODENT_TLS_KEY",
            Some(&cert),
            Some(&other_key),
            "it is not the key of the certificate in RODENT_TLS_CERT",
        ),
        (
            "RODENT_TLS_CERT",
            Some(&garbage),
            Some(&key),
            "it holds no PEM certificate",
        ),
        (
            "RODENT_TLS_CERT",
            Some(&cert),
            None,
            "expected to be set together with RODENT_TLS_KEY",
        ),
        (
            "RODENT_TLS_CERT",
            Some(&dir.join("missing.pem")),
            Some(&key),
            "No such file",
        ),
    ];
    for (variable, cert, key, reason) in cases {
        let mut spawn = rodent().no_wait();
        if let Some(cert) = cert {
            spawn = spawn.env("RODENT_TLS_CERT", cert.to_str().unwrap());
        }
        if let Some(key) = key {
            spawn = spawn.env("RODENT_TLS_KEY", key.to_str().unwrap());
        }
        let (code, _, errors) = spawn.run(&["config", "check"]);
        assert_eq!(code, 78, "{variable}: {errors}");
        assert!(
            errors.contains(variable) && errors.contains(reason),
            "{errors}"
        );

        let mut refused = spawn.spawn();
        assert_eq!(refused.exit_code(PATIENCE), 78, "{variable}");
        let error = refused.wait_log(|l| l["message"] == "invalid configuration");
        assert_eq!(error["variable"], variable);
        assert!(error["error"].as_str().unwrap().contains(reason), "{error}");
        assert!(
            !refused
                .json_lines()
                .iter()
                .any(|l| l["message"] == "listening"),
            "nothing listens with a refused pair"
        );
    }
    // The key's text is never shown, whatever went wrong with it.
    let (_, _, errors) = rodent()
        .env("RODENT_TLS_CERT", key.to_str().unwrap())
        .env("RODENT_TLS_KEY", cert.to_str().unwrap())
        .run(&["config", "check"]);
    assert!(!errors.contains("PRIVATE KEY"), "{errors}");
}
