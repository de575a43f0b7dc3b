//! TLS: a worker with `tls.enabled` serves HTTPS and WSS with rustls from the configured PEM
//! files, using a development certificate made by `rohrpost gen-cert`. (The worker's broker is
//! the Redis on 127.0.0.1:6379.)

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::ws;
use futures_util::{SinkExt, StreamExt};

const BIN: &str = env!("CARGO_BIN_EXE_rohrpost");

/// A TLS worker process, killed on drop, with a client that trusts its certificate.
struct TlsWorker {
    child: Child,
    port: u16,
    client: awc::Client,
    _dir: tempfile::TempDir,
}

impl Drop for TlsWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn start_tls_worker() -> TlsWorker {
    start_tls(false).await
}

/// Starts a TLS worker, or (`supervisor`) a TLS supervisor with one worker whose main port is
/// the returned port.
async fn start_tls(supervisor: bool) -> TlsWorker {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let status = Command::new(BIN)
        .args(["gen-cert", "--dir", keys.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let port = free_port();
    let mut command = Command::new(BIN);
    if supervisor {
        command
            .env("ROHRPOST__HTTP__MAIN_PORT", port.to_string())
            .env("ROHRPOST__HTTP__WORKER_BASE_PORT", free_port().to_string())
            .env("ROHRPOST__HTTP__HOST_EXTERNAL", "127.0.0.1")
            .env("ROHRPOST__HTTP__STATIC_DIR", "")
            .env("ROHRPOST__WORKERS__COUNT", "1");
    } else {
        command.args(["worker", "--port", &port.to_string()]);
    }
    let ready_path = if supervisor {
        "/health"
    } else {
        "/rohrpost/info"
    };
    let child = command
        .current_dir(dir.path())
        .env_remove("ROHRPOST_CONFIG")
        .env("ROHRPOST__HTTP__HOST", "127.0.0.1")
        .env("ROHRPOST__SESSIONS__SECRET", "tls-test-secret")
        .env("ROHRPOST__BROKER__KIND", "redis")
        .env("ROHRPOST__TLS__ENABLED", "true")
        .env("ROHRPOST__TLS__CERT", keys.join("cert.pem"))
        .env("ROHRPOST__TLS__KEY", keys.join("key.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let pem = std::fs::read(keys.join("cert.pem")).unwrap();
    let client = trusting_client(&pem);
    let worker = TlsWorker {
        child,
        port,
        client,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = worker
            .client
            .get(worker.url(ready_path))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "TLS worker did not become ready");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    worker
}

impl TlsWorker {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{}", self.port, path)
    }
}

fn trusting_client(cert_pem: &[u8]) -> awc::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(config)))
        .timeout(Duration::from_secs(10))
        .finish()
}

#[actix_rt::test]
async fn info_is_served_over_https() {
    let worker = start_tls_worker().await;
    let mut res = worker
        .client
        .get(worker.url("/rohrpost/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let info: serde_json::Value = res.json().await.unwrap();
    assert_eq!(info["websocket"], true);
}

#[actix_rt::test]
async fn framed_websocket_works_over_wss() {
    let worker = start_tls_worker().await;
    let url = worker.url("/rohrpost/000/tls-session/websocket");
    let (_res, mut conn) = worker.client.ws(url).connect().await.expect("wss connects");
    let first = actix_rt::time::timeout(Duration::from_secs(5), conn.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, ws::Frame::Text("o".into()));
    // The Rohrpost handshake, as a framed SockJS message.
    conn.send(ws::Message::Text(r#"["{\"hello\":1}"]"#.into()))
        .await
        .unwrap();
    let frame = actix_rt::time::timeout(Duration::from_secs(5), conn.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ws::Frame::Text(text) = frame else {
        panic!("expected a text frame, got {frame:?}");
    };
    let text = std::str::from_utf8(&text).unwrap();
    let messages: Vec<String> = serde_json::from_str(&text[1..]).expect("a[...] frame");
    let welcome: serde_json::Value = serde_json::from_str(&messages[0]).unwrap();
    assert_eq!(welcome["topic"], "rohrpost.welcome");
    assert_eq!(welcome["data"]["resumed"], false);
}

#[actix_rt::test]
async fn xhr_streaming_works_over_https() {
    let worker = start_tls_worker().await;
    let mut res = worker
        .client
        .post(worker.url("/rohrpost/000/tls-stream/xhr_streaming"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut received = Vec::new();
    let expected_prelude = 2049;
    while received.len() < expected_prelude + 2 {
        let chunk = actix_rt::time::timeout(Duration::from_secs(5), res.next())
            .await
            .expect("frame in time")
            .expect("stream open")
            .unwrap();
        received.extend_from_slice(&chunk);
    }
    assert!(received[..2048].iter().all(|&b| b == b'h'));
    assert_eq!(&received[2048..], b"\no\n");
}

#[actix_rt::test]
async fn plain_http_to_a_tls_port_gets_no_answer() {
    let worker = start_tls_worker().await;
    let plain = awc::Client::builder()
        .timeout(Duration::from_secs(3))
        .finish();
    let res = plain
        .get(format!("http://127.0.0.1:{}/rohrpost/info", worker.port))
        .send()
        .await;
    assert!(res.is_err() || !res.unwrap().status().is_success());
}

#[actix_rt::test]
async fn main_port_serves_https_and_hands_out_https_workers() {
    let supervisor = start_tls(true).await;
    let mut res = supervisor
        .client
        .get(supervisor.url("/connect"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let url = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // The worker it names answers over TLS too.
    let mut info = supervisor
        .client
        .get(format!("{url}/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let info: serde_json::Value = info.json().await.unwrap();
    assert_eq!(info["websocket"], true);
}
