//! Shared helpers for the integration tests in `test/`.
//!
//! - [`TestServer`] runs the real `rohrpost` binary on a free port, waits until it answers and
//!   kills it when dropped (also when the test panics).
//! - [`TestServer::request`] and friends send one HTTP request with `awc` and collect the whole
//!   answer into a [`Reply`].
//! - [`BodyStream`] reads a streaming response body frame by frame. A read from the network may
//!   hold half a frame or several, so it accumulates bytes until the expected frame is complete.
//! - [`WsClient`] is a websocket connection with bounded receives.
//! - [`RawConnection`] speaks HTTP/1.x over a plain TCP socket, for checks `awc` would hide:
//!   chunk framing, keep-alive, exact request headers, and aborting a request mid-flight.
//!
//! Every wait is bounded: a server that stops answering fails the test instead of hanging it.

// Each test crate that includes this module uses a different subset of it.
#![allow(dead_code)]

mod body_stream;
mod raw_http;
mod ws_client;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::header::HeaderMap;
use awc::http::Method;

pub use body_stream::BodyStream;
pub use raw_http::{RawConnection, RawHead};
pub use ws_client::{WsClient, WsEvent, WsTransport};

/// The `rohrpost` binary Cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_rohrpost");

/// How long any single step (a response, a frame, a close) may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a freshly started server may take to answer its readiness probe.
const READY_WAIT: Duration = Duration::from_secs(20);

/// Attempts at starting a server, in case another process grabs the free port first.
const START_ATTEMPTS: usize = 3;

/// A port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener
        .local_addr()
        .expect("ephemeral port address")
        .port()
}

/// A fresh, uuid-shaped random session id, so that tests never share a session.
pub fn session_id() -> String {
    let n: u128 = rand::random();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A running `rohrpost` process on 127.0.0.1, killed on drop.
pub struct TestServer {
    child: Child,
    port: u16,
    client: awc::Client,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestServer {
    /// Starts `rohrpost sockjs-test-server`, which serves `/echo`, `/close`,
    /// `/disabled_websocket_echo` and `/cookie_needed_echo`, and waits until `/echo/info` answers.
    pub async fn sockjs() -> TestServer {
        Self::start(&["sockjs-test-server", "--host", "127.0.0.1"], "/echo/info").await
    }

    /// Starts `rohrpost <args> --port <free port>` and polls `ready_path` until it answers 200.
    /// Retries on a new port if the process exits early (someone else took the port).
    pub async fn start(args: &[&str], ready_path: &str) -> TestServer {
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let child = Command::new(BIN)
                .args(args)
                .args(["--port", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn the rohrpost binary");
            let mut server = TestServer {
                child,
                port,
                client: unlimited_client(),
            };
            if server.wait_ready(ready_path).await {
                return server;
            }
        }
        panic!("rohrpost {args:?} did not become ready in {START_ATTEMPTS} attempts");
    }

    /// Polls `path` until it answers 200 (true) or the process exits (false); panics after
    /// [`READY_WAIT`].
    async fn wait_ready(&mut self, path: &str) -> bool {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if let Ok(Some(_status)) = self.child.try_wait() {
                return false;
            }
            let probe = self.client.get(self.url(path)).send().await;
            if probe.is_ok_and(|r| r.status() == 200) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "rohrpost did not answer GET {path} within {READY_WAIT:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// `ws://127.0.0.1:<port><path>`
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    pub fn client(&self) -> &awc::Client {
        &self.client
    }

    /// Sends one request and collects the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut res = self.send(method, path, headers, body).await;
        let body = actix_rt::time::timeout(WAIT, res.body().limit(16 * 1024 * 1024))
            .await
            .unwrap_or_else(|_| panic!("body of {path} not complete within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("reading body of {path}: {e}"));
        Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: body.to_vec(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[], "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.request(Method::POST, path, &[], body).await
    }

    /// Sends one request and returns as soon as the response head is in, for reading a
    /// streaming body with [`BodyStream`].
    pub async fn open_stream(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Reply, BodyStream<awc::ClientResponse>) {
        let res = self.send(method, path, headers, "").await;
        let head = Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: Vec::new(),
        };
        (head, BodyStream::new(res))
    }

    /// Opens a websocket to `path`.
    pub async fn ws(&self, path: &str) -> WsClient<impl WsTransport> {
        let connecting = self.client.ws(self.ws_url(path)).connect();
        let (_res, framed) = actix_rt::time::timeout(WAIT, connecting)
            .await
            .unwrap_or_else(|_| panic!("websocket {path}: no handshake within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("websocket {path}: {e}"));
        WsClient::new(framed)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> awc::ClientResponse {
        let mut req = self.client.request(method.clone(), self.url(path));
        for &(name, value) in headers {
            req = req.insert_header((name, value));
        }
        let sent = if body.is_empty() {
            req.send()
        } else {
            req.send_body(body.to_owned())
        };
        actix_rt::time::timeout(WAIT, sent)
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no response head within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }
}

/// An `awc` client for tests: no timeout of its own (each step is bounded by [`WAIT`]) so
/// that long streaming bodies are not cut off.
fn unlimited_client() -> awc::Client {
    awc::Client::builder().disable_timeout().finish()
}

/// A complete HTTP answer.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of a header, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (panics on invalid UTF-8, which no SockJS answer may contain).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("response body is UTF-8")
    }
}
