//! The certificate rotates under a running service: new connections get the new pair, open
//! ones carry on, nothing is dropped; a pair caught between its two writes is read again before
//! it counts; a bad pair is refused and the one in use kept; a session of the old pair is not
//! resumed after the rotation, even one whose handshake straddles it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal::{SIGHUP, SIGKILL, SIGTERM};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, ClientConnection, HandshakeKind};

use super::certs::{Ca, Issued, mv, write};
use super::serving::{metric, rodent_metrics};
use super::{https, serving};
use kit::load::{Counts, Load};
use kit::{KubeletVolume, PATIENCE, TempDir, eventually_async};

/// Waits until new connections to `port` are served `issued`.
async fn served(ca: &Ca, port: u16, issued: &Issued) {
    eventually_async(PATIENCE, || async {
        let (leaf, _) = ca.served(port, &["http/1.1"]).await;
        match leaf == issued.der {
            true => Ok(()),
            false => Err(format!("not yet served {}", issued.name)),
        }
    })
    .await;
}

/// The reload counts and the expiry gauge, once they are `applied`, `rejected` and `expires`.
async fn counted(ca: &Ca, rodent: &kit::Rodent, applied: i64, rejected: i64, expires: i64) {
    eventually_async(PATIENCE, || async {
        let text = rodent_metrics(ca, rodent).await;
        let seen = (
            metric(&text, "rodent_tls_reloads_total{outcome=\"applied\"}"),
            metric(&text, "rodent_tls_reloads_total{outcome=\"rejected\"}"),
            metric(&text, "rodent_tls_certificate_expiration_timestamp_seconds"),
        );
        match seen == (Some(applied), Some(rejected), Some(expires)) {
            true => Ok(()),
            false => Err(format!("{seen:?}")),
        }
    })
    .await;
}

/// `mv` the new certificate, then the new key, over the files in use, while keep-alive HTTPS
/// clients send a steady load; the two moves are a moment apart, so a read between them finds a
/// certificate and a key that do not match. Not one request fails; new connections get the new
/// certificate (reqwest-rustls, a bare handshake, openssl); the connections kept alive from
/// before go on being served. Then the same load against the same instance killed shows the
/// load counts what it loses.
#[test]
fn a_rotation_by_mv_under_keep_alive_load_drops_nothing() {
    let _one_at_a_time = kit::load::one_at_a_time();
    let dir = TempDir::new("tls-rotation");
    let ca = Ca::new();
    let (one, two) = (ca.issue("rodent-one", 2031), ca.issue("rodent-two", 2032));
    let (cert, key) = write(dir.path(), &one);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let rodent = serving(&cert, &key).spawn();
    let port = rodent.addr().port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = https(&rodent, "");
    let client = ca.reqwest(Load::client(), &["http/1.1"]);
    let load = Load::start_with(runtime.handle(), &base, client);
    load.wait_for_successes(Counts::default(), 500);

    let before = load.counts();
    mv(&cert, &two.cert);
    std::thread::sleep(Duration::from_millis(100));
    mv(&key, &two.key);
    rodent.wait_log(|l| l["message"] == "TLS certificate rotated: new connections get the new one");
    runtime.block_on(served(&ca, port, &two));
    runtime.block_on(counted(&ca, &rodent, 1, 0, two.not_after));
    if kit::require_tool("openssl", "apt-get install openssl") {
        let subject = super::certs::openssl_subject(&ca_file, port);
        assert!(subject.contains("rodent-two"), "{subject}");
    }
    load.wait_for_successes(load.counts(), 1_000);
    let during = load.counts().since(before);
    let report = runtime.block_on(load.stop());
    assert_eq!(
        report.counts.failed,
        0,
        "{} of {} requests failed:\n{}",
        report.counts.failed,
        report.counts.sent(),
        report.first_failures(20)
    );
    assert!(during.ok >= 1_000, "{during:?}");

    // The baseline: the same load, and the instance killed under it, loses requests.
    let client = ca.reqwest(Load::client(), &["http/1.1"]);
    let load = Load::start_with(runtime.handle(), &base, client);
    load.wait_for_successes(Counts::default(), 200);
    rodent.signal(SIGKILL);
    kit::eventually(PATIENCE, || match load.counts().failed {
        0 => Err("nothing lost yet"),
        _ => Ok(()),
    });
    let lost = runtime.block_on(load.stop());
    assert!(lost.counts.failed > 0, "the load counts what it loses");
}

#[tokio::test]
async fn a_pair_caught_between_its_writes_is_read_again_and_a_bad_one_is_refused() {
    let dir = TempDir::new("tls-mismatch");
    let ca = Ca::new();
    let (one, two, three) = (
        ca.issue("rodent-one", 2031),
        ca.issue("rodent-two", 2032),
        ca.issue("rodent-three", 2033),
    );
    let (cert, key) = write(dir.path(), &one);
    let mut rodent = serving(&cert, &key).spawn();
    let port = rodent.addr().port();

    // The certificate now, its key 600 ms later: well past the watch's quiet time, so the
    // pair is read while it does not match, and again until it does.
    mv(&cert, &two.cert);
    tokio::time::sleep(Duration::from_millis(600)).await;
    mv(&key, &two.key);
    served(&ca, port, &two).await;
    counted(&ca, &rodent, 1, 0, two.not_after).await;
    assert!(
        !rodent
            .json_lines()
            .iter()
            .any(|l| l["message"] == "TLS certificate and key refused; the ones in use are kept"),
        "a rotation between its two writes is not a refusal"
    );

    // A key that stays wrong: refused after the retries, the pair in use kept.
    mv(&cert, &three.cert);
    let refused = rodent
        .wait_log(|l| l["message"] == "TLS certificate and key refused; the ones in use are kept");
    assert_eq!(refused["variable"], "RODENT_TLS_KEY");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("it is not the key of the certificate in RODENT_TLS_CERT"),
        "{refused}"
    );
    counted(&ca, &rodent, 1, 1, two.not_after).await;
    assert_eq!(
        ca.served(port, &[]).await.0,
        two.der,
        "the pair in use is kept"
    );

    // Fixed: applied.
    mv(&key, &three.key);
    served(&ca, port, &three).await;
    counted(&ca, &rodent, 2, 1, three.not_after).await;

    // SIGHUP reads the files again too.
    rodent.signal(SIGHUP);
    rodent
        .wait_log(|l| l["message"] == "TLS files read again: the certificate in use is unchanged");
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

/// The Secret cert-manager renews, mounted as a volume: the kubelet swaps both files at once.
#[tokio::test]
async fn the_kubelets_swap_of_a_secret_rotates_the_certificate() {
    let dir = TempDir::new("tls-kubelet");
    let ca = Ca::new();
    let (one, two) = (ca.issue("rodent-one", 2031), ca.issue("rodent-two", 2032));
    let pair = |issued: &Issued| {
        [
            ("tls.crt", issued.cert.clone()),
            ("tls.key", issued.key.clone()),
            ("ca.crt", ca.pem()),
        ]
    };
    let mut volume = KubeletVolume::new(dir.path(), &pair(&one));
    let rodent = serving(&volume.path("tls.crt"), &volume.path("tls.key")).spawn();
    let port = rodent.addr().port();
    // A connection kept alive from before the swap.
    let kept = ca.reqwest(kit::client_builder(), &["h2"]);
    assert_eq!(
        kept.get(https(&rodent, "/")).send().await.unwrap().status(),
        200
    );

    // A client that resumes sessions: one begun under the old certificate is not resumed after
    // the rotation, so its next connection shakes hands with the new one.
    let resuming = Arc::new(ca.client_config(&["http/1.1"]));
    let (before, _) = super::certs::served_with(resuming.clone(), port, true).await;
    assert_eq!(before, one.der);

    volume.update(&pair(&two));
    served(&ca, port, &two).await;
    let (after, _) = super::certs::served_with(resuming, port, true).await;
    assert_eq!(
        after, two.der,
        "a session of the old certificate was resumed"
    );
    counted(&ca, &rodent, 1, 0, two.not_after).await;
    // The HTTP/2 connection opened on the old certificate carries on.
    assert_eq!(
        kept.get(https(&rodent, "/")).send().await.unwrap().status(),
        200
    );
}

/// A TLS 1.3 handshake on a plain socket, driven by hand so that it can be held at any step.
struct Handshake {
    tls: ClientConnection,
    tcp: TcpStream,
}

impl Handshake {
    /// Sends the ClientHello and reads the server's whole flight; the client's Finished is
    /// queued, not sent.
    fn begin(config: &Arc<ClientConfig>, port: u16) -> Self {
        let name = ServerName::try_from("127.0.0.1").expect("an IP address is a name");
        let mut shake = Self {
            tls: ClientConnection::new(config.clone(), name).expect("a client connection"),
            tcp: TcpStream::connect(("127.0.0.1", port)).expect("the port accepts"),
        };
        shake.flush();
        while shake.tls.is_handshaking() {
            shake.receive();
        }
        shake
    }

    /// Sends the Finished (if still held) and `GET /`, and reads the answer, which brings the
    /// session tickets; returns the certificate the session holds and how it was begun.
    fn finish(mut self) -> (Vec<u8>, HandshakeKind) {
        self.tls
            .writer()
            .write_all(b"GET / HTTP/1.1\r\nHost: rodent\r\nConnection: close\r\n\r\n")
            .expect("the request is queued");
        self.flush();
        let mut answer = Vec::new();
        while self.receive() {
            let _ = self.tls.reader().read_to_end(&mut answer);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "GET / answered");
        let leaf = self
            .tls
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("a certificate was served")
            .to_vec();
        (
            leaf,
            self.tls.handshake_kind().expect("the handshake is done"),
        )
    }

    fn flush(&mut self) {
        while self.tls.wants_write() {
            self.tls
                .write_tls(&mut self.tcp)
                .expect("the socket takes it");
        }
    }

    /// Reads what the server sent; false once it has closed.
    fn receive(&mut self) -> bool {
        let read = self.tls.read_tls(&mut self.tcp).expect("the socket reads");
        self.tls
            .process_new_packets()
            .expect("the server speaks TLS");
        read > 0
    }
}

/// A handshake begun under the old pair and finished after the rotation files its session
/// tickets after the rotation: that session is still not resumed by a later connection, which
/// shakes hands with the new certificate. Without a rotation, the same client resumes, so the
/// check can fail.
#[test]
fn a_session_begun_before_a_rotation_and_finished_after_it_is_not_resumed() {
    let dir = TempDir::new("tls-straddle");
    let ca = Ca::new();
    let (one, two) = (ca.issue("rodent-one", 2031), ca.issue("rodent-two", 2032));
    let (cert, key) = write(dir.path(), &one);
    let mut rodent = serving(&cert, &key).spawn();
    let port = rodent.addr().port();

    // Which certificate a session holds, and how it was begun.
    let seen = |(leaf, kind): (Vec<u8>, HandshakeKind)| {
        let name = [&one, &two]
            .into_iter()
            .find(|issued| issued.der == leaf)
            .map_or("another", |issued| issued.name.as_str());
        (name.to_string(), kind)
    };
    let expect = |name: &str, kind| (name.to_string(), kind);

    let resuming = Arc::new(ca.client_config(&["http/1.1"]));
    assert_eq!(
        seen(Handshake::begin(&resuming, port).finish()),
        expect("rodent-one", HandshakeKind::Full)
    );
    assert_eq!(
        seen(Handshake::begin(&resuming, port).finish()),
        expect("rodent-one", HandshakeKind::Resumed),
        "a session is resumed while the pair stays"
    );

    let straddling = Arc::new(ca.client_config(&["http/1.1"]));
    let held = Handshake::begin(&straddling, port);
    mv(&cert, &two.cert);
    mv(&key, &two.key);
    rodent.wait_log(|l| l["message"] == "TLS certificate rotated: new connections get the new one");
    assert_eq!(
        seen(held.finish()),
        expect("rodent-one", HandshakeKind::Full)
    );
    assert_eq!(
        seen(Handshake::begin(&straddling, port).finish()),
        expect("rodent-two", HandshakeKind::Full),
        "a session of the old certificate was resumed after the rotation"
    );
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}
