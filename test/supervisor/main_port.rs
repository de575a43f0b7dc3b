//! The main port as the tests read it: `/health` and `/connect` typed, and any answer as it
//! is (status, headers, body) where the headers matter.

use std::time::Duration;

use awc::http::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use crate::client::http;
use crate::common::WAIT;
use crate::process::{Supervisor, API_KEY};

/// A worker slot's state, as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    Ready,
    Draining,
    Down,
    Failed,
}

/// One worker slot in `/health`.
#[derive(Debug, Clone, Deserialize)]
pub struct Worker {
    pub index: usize,
    pub port: u16,
    pub state: State,
    pub sessions: usize,
    pub pid: Option<u32>,
    pub generation: u64,
}

/// The supervisor's own counters in `/health`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Counters {
    pub restarts: u64,
    pub crashes: u64,
    pub drains: u64,
    pub rolls: u64,
}

/// `GET /health`, typed.
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub workers: Vec<Worker>,
    pub counters: Counters,
    pub rolling: bool,
}

impl Health {
    pub fn ready(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.state == State::Ready)
            .count()
    }

    /// Every worker ready and of generation `generation`.
    pub fn all_ready_in(&self, generation: u64) -> bool {
        self.workers
            .iter()
            .all(|w| w.state == State::Ready && w.generation == generation)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.pid).collect()
    }
}

/// What `GET /connect` with `Accept: application/json` answers.
#[derive(Debug, Clone, Deserialize)]
pub struct Handout {
    pub url: String,
    pub worker: Option<usize>,
    pub sessions: usize,
}

impl Handout {
    /// The raw-websocket URL of the handed-out worker.
    pub fn ws_url(&self) -> String {
        format!("{}/websocket", self.url.replacen("http://", "ws://", 1))
    }
}

/// `GET /connect` on `main_port` as JSON: the handout, or the HTTP status when there is none.
pub async fn handout(main_port: u16) -> Result<Handout, String> {
    let url = format!("http://127.0.0.1:{main_port}/connect");
    let sent = http()
        .get(&url)
        .insert_header(("Accept", "application/json"))
        .send();
    let mut res = actix_rt::time::timeout(WAIT, sent)
        .await
        .map_err(|_| format!("GET {url}: no answer within {WAIT:?}"))?
        .map_err(|e| format!("GET {url}: {e}"))?;
    if res.status() != 200 {
        return Err(format!("GET {url}: status {}", res.status()));
    }
    actix_rt::time::timeout(WAIT, res.json::<Handout>())
        .await
        .map_err(|_| format!("GET {url}: no body within {WAIT:?}"))?
        .map_err(|e| format!("GET {url}: {e}"))
}

/// The raw-websocket URL of the worker on `port`.
pub fn worker_ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/rohrpost/websocket")
}

/// `POST /api/restart` with an optional `Authorization` header; the status.
pub async fn api_restart(sup: &Supervisor, authorization: Option<&str>) -> u16 {
    let mut request = http().post(sup.url("/api/restart"));
    if let Some(value) = authorization {
        request = request.insert_header(("Authorization", value));
    }
    let res = actix_rt::time::timeout(WAIT, request.send())
        .await
        .expect("/api/restart answers in time")
        .expect("/api/restart answers");
    res.status().as_u16()
}

/// What the server API answered: the status, and the body as JSON (`Null` when it is not).
#[allow(dead_code)] // used by test/delivery.rs
#[derive(Debug, Clone)]
pub struct ApiAnswer {
    pub status: u16,
    pub body: Value,
}

/// `POST <path>` with `body` on the server API on `main_port`, with the test key; an error when
/// no answer comes within [`WAIT`].
#[allow(dead_code)] // used by test/delivery.rs
pub async fn api_post(main_port: u16, path: &str, body: &Value) -> Result<ApiAnswer, String> {
    let url = format!("http://127.0.0.1:{main_port}{path}");
    let sent = http()
        .post(&url)
        .insert_header(("Authorization", format!("Bearer {API_KEY}")))
        .send_json(body);
    let mut res = actix_rt::time::timeout(WAIT, sent)
        .await
        .map_err(|_| format!("POST {url}: no answer within {WAIT:?}"))?
        .map_err(|e| format!("POST {url}: {e}"))?;
    let bytes = actix_rt::time::timeout(WAIT, res.body())
        .await
        .map_err(|_| format!("POST {url}: no body within {WAIT:?}"))?
        .map_err(|e| format!("POST {url}: {e}"))?;
    Ok(ApiAnswer {
        status: res.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

/// `GET url`, optionally with an `Accept` header: status, headers and body.
pub async fn get(url: &str, accept: Option<&str>) -> (u16, HeaderMap, String) {
    let mut request = http().get(url);
    if let Some(accept) = accept {
        request = request.insert_header(("Accept", accept));
    }
    let mut res = actix_rt::time::timeout(WAIT, request.send())
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no answer within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = actix_rt::time::timeout(WAIT, res.body())
        .await
        .unwrap_or_else(|_| panic!("GET {url}: no body within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = String::from_utf8(body.to_vec()).expect("a text body");
    (res.status().as_u16(), res.headers().clone(), body)
}

/// The `Access-Control-Allow-Origin` header.
pub fn cors(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

/// A counter of `/metrics` with a `reason` label (0 when absent).
pub async fn counter(sup: &Supervisor, family: &str, reason: &str) -> u64 {
    let (_, _, body) = get(&sup.url("/metrics"), None).await;
    let prefix = format!("{family}{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) until the counter reads `expected`, as of the workers' next reports.
pub async fn wait_counter(sup: &Supervisor, family: &str, reason: &str, expected: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = counter(sup, family, reason).await;
        if n == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{family}{{reason={reason}}} is {n}, expected {expected}"
        );
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}
