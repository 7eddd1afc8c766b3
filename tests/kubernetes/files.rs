//! Files that change under running pods, as they change in a cluster: the chart's `config`
//! ConfigMap edited (helm upgrade), and the TLS Secret rotated (as cert-manager renews it),
//! under keep-alive HTTPS load. The kubelet swaps the mounted files (`..data`); rodent applies
//! them without a restart and without dropping a request.
//!
//! How soon the kubelet swaps the files is its sync period (`syncFrequency`), which
//! `scripts/cluster/config.sh` shortens to 10 s in the test cluster (the default is a minute):
//! the waits below allow for either.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

use crate::cluster::{Cluster, Namespace, TempFile, inside};
use crate::images::images;
use crate::release::{Release, install, values};
use crate::watch::{restart_count, uid};
use kit::load::{Counts, Load};

/// The kubelet's sync period at its default, its jitter, and its cache: long enough for a
/// cluster that keeps the default.
const KUBELET_SWAP: Duration = Duration::from_secs(150);

/// What identifies the pods that ran: their UIDs, with their restart counts.
fn pods_and_restarts(release: &Release) -> Vec<(String, u64)> {
    let mut pods: Vec<_> = release
        .pods()
        .iter()
        .map(|p| (uid(p).to_string(), restart_count(p)))
        .collect();
    pods.sort();
    pods
}

fn pod_ips(release: &Release) -> Vec<String> {
    release
        .ready_pods()
        .iter()
        .map(|p| p["status"]["podIP"].as_str().expect("a pod IP").to_string())
        .collect()
}

/// A check of one pod, by its IP.
type Check =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Waits until `check`, run from inside the cluster's network, holds for every pod IP.
fn eventually_on_every_pod(
    runtime: &tokio::runtime::Runtime,
    ips: &[String],
    what: &str,
    check: Check,
) {
    kit::eventually(KUBELET_SWAP, || {
        for ip in ips {
            inside(runtime, check(ip.clone())).map_err(|e| format!("{what} on {ip}: {e}"))?;
        }
        Ok::<(), String>(())
    });
}

/// `helm upgrade` changes `config.RODENT_BODY_LIMIT`: the ConfigMap changes, no pod does, and
/// every pod applies the new limit (`POST /echo` of 2000 bytes: 413, then 200) and counts the
/// reload, with restartCount 0.
pub fn a_configmap_edit_is_applied_without_a_restart(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "config");
    let with_limit = |limit: &str| values(image, json!({"config": {"RODENT_BODY_LIMIT": limit}}));
    let release = install(cluster, &namespace, "rodent", &with_limit("1000"));
    let before = pods_and_restarts(&release);
    let ips = pod_ips(&release);
    let runtime = cluster.runtime();
    let echo = |limit_applied: u16| -> Check {
        Arc::new(move |ip: String| {
            Box::pin(async move {
                let status = kit::client()
                    .post(format!("http://{ip}:8080/echo"))
                    .body(vec![b'x'; 2000])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .status()
                    .as_u16();
                if status == limit_applied {
                    Ok(())
                } else {
                    Err(format!("POST /echo answered {status}"))
                }
            })
        })
    };
    eventually_on_every_pod(&runtime, &ips, "the limit of 1000", echo(413));

    let file = TempFile::new("values.json", &with_limit("4000").to_string());
    let edited = std::time::Instant::now();
    cluster.helm_ok(&[
        "upgrade",
        &release.name,
        crate::cluster::CHART,
        "--namespace",
        &namespace.name,
        "--values",
        file.path(),
    ]);
    let map = namespace.json(&["get", "configmap", "rodent-config"]);
    assert!(
        map["data"]["rodent.env"]
            .as_str()
            .is_some_and(|f| f.contains("RODENT_BODY_LIMIT=\"4000\"")),
        "{map}"
    );
    eventually_on_every_pod(&runtime, &ips, "the limit of 4000", echo(200));
    eprintln!(
        "ConfigMap edit applied on every pod {:.1} s after helm upgrade",
        edited.elapsed().as_secs_f64()
    );
    let counted: Check = Arc::new(|ip: String| {
        Box::pin(async move {
            let metrics = kit::client()
                .get(format!("http://{ip}:8080/metrics"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            match metrics.contains("rodent_reloads_total{outcome=\"applied\"} 1") {
                true => Ok(()),
                false => Err("no applied reload counted".into()),
            }
        })
    });
    eventually_on_every_pod(&runtime, &ips, "one applied reload", counted);
    assert_eq!(
        pods_and_restarts(&release),
        before,
        "the same pods, none restarted"
    );
    assert!(before.iter().all(|(_, restarts)| *restarts == 0));
}

/// A CA and server certificates for the Service's name, as cert-manager would issue them.
struct Issuer {
    ca: CertifiedIssuer<'static, KeyPair>,
    name: String,
}

impl Issuer {
    fn new(service_name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "rodent test CA");
        let key = KeyPair::generate().expect("a key pair");
        Self {
            ca: CertifiedIssuer::self_signed(params, key).expect("the CA signs itself"),
            name: service_name.to_string(),
        }
    }

    /// (cert PEM, key PEM, cert DER) for the Service's name.
    fn issue(&self, common_name: &str) -> (String, String, Vec<u8>) {
        let mut params = CertificateParams::new(vec![self.name.clone()]).expect("a valid name");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("a key pair");
        let cert = params.signed_by(&key, &self.ca).expect("the CA signs");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn client_config(&self) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.der().to_vec()))
            .expect("a trust anchor");
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports them")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

/// `kubectl apply` of the `kubernetes.io/tls` Secret `name` with this pair, as cert-manager
/// writes it.
fn apply_secret(cluster: &Cluster, namespace: &Namespace, name: &str, cert: &str, key: &str) {
    let (cert, key) = (
        TempFile::new("tls.crt", cert),
        TempFile::new("tls.key", key),
    );
    let secret = cluster.run(&[
        "create",
        "secret",
        "tls",
        name,
        "--namespace",
        &namespace.name,
        "--cert",
        cert.path(),
        "--key",
        key.path(),
        "--dry-run=client",
        "--output=json",
    ]);
    let out = cluster.with_input(
        &["apply", "--namespace", &namespace.name, "-f", "-"],
        &secret,
    );
    assert!(
        out.status.success(),
        "the Secret cannot be applied: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The certificate a fresh TLS handshake with `ip:8080` is served.
async fn served(config: ClientConfig, ip: String, name: String) -> Result<Vec<u8>, String> {
    let tcp = tokio::net::TcpStream::connect((ip.as_str(), 8080))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.to_vec())
        .ok_or_else(|| "no certificate".to_string())
}

/// The chart with `tls.secretName` serves HTTPS from the Secret; the Secret is replaced (a
/// renewal) while keep-alive HTTPS clients load the Service: every pod's new connections get the
/// new certificate, not one request fails, no pod restarts.
pub fn a_tls_secret_rotation_under_keep_alive_https_load_drops_nothing(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "tls");
    let service_name = format!("rodent.{}.svc", namespace.name);
    let issuer = Issuer::new(&service_name);
    let (cert, key, _) = issuer.issue("rodent-one");
    apply_secret(cluster, &namespace, "rodent-tls", &cert, &key);
    let release = install(
        cluster,
        &namespace,
        "rodent",
        &values(image, json!({"tls": {"secretName": "rodent-tls"}})),
    );
    let before = pods_and_restarts(&release);
    let ips = pod_ips(&release);
    let service: Value = namespace.json(&["get", "service", "rodent"]);
    let cluster_ip = service["spec"]["clusterIP"]
        .as_str()
        .expect("an IP")
        .to_string();
    let runtime = cluster.runtime();

    // Keep-alive HTTPS through kube-proxy, the Service's name resolved to its cluster IP and
    // checked against the certificate.
    let client = {
        let _inside = runtime.enter();
        Load::client()
            .tls_backend_preconfigured(issuer.client_config())
            .resolve(&service_name, format!("{cluster_ip}:80").parse().unwrap())
            .build()
            .expect("the client builds")
    };
    let load = Load::start_with(runtime.handle(), &format!("https://{service_name}"), client);
    load.wait_for_successes(Counts::default(), 1000);

    let (cert, key, renewed) = issuer.issue("rodent-two");
    let rotated = std::time::Instant::now();
    apply_secret(cluster, &namespace, "rodent-tls", &cert, &key);
    let config = issuer.client_config();
    let name = service_name.clone();
    let renewed_served: Check = Arc::new(move |ip| {
        let (config, name, renewed) = (config.clone(), name.clone(), renewed.clone());
        Box::pin(async move {
            match served(config, ip, name).await? == renewed {
                true => Ok(()),
                false => Err("still the old certificate".into()),
            }
        })
    });
    eventually_on_every_pod(&runtime, &ips, "the renewed certificate", renewed_served);
    eprintln!(
        "renewed certificate served by every pod {:.1} s after the Secret changed",
        rotated.elapsed().as_secs_f64()
    );
    load.wait_for_successes(load.counts(), 1000);
    let report = runtime.block_on(load.stop());
    eprintln!(
        "HTTPS through kube-proxy across the rotation: {} requests, {} failed",
        report.counts.sent(),
        report.counts.failed
    );
    assert_eq!(
        report.counts.failed,
        0,
        "requests failed across the rotation:\n{}",
        report.first_failures(20)
    );
    assert_eq!(
        pods_and_restarts(&release),
        before,
        "the same pods, none restarted"
    );
    assert!(before.iter().all(|(_, restarts)| *restarts == 0));
}
