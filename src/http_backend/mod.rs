//! The HTTP backend actor: client messages on `[[http_topics]]` topics become HTTP requests.
//!
//! A session that receives a client message looks the topic up with [`rule_for`]; when a rule
//! matches, it sends an [`HttpCall`] to its worker's [`HttpBackend`] and relays the answer (or
//! the error's [`HttpBackendError::code`]) to the client:
//!
//! ```text
//! session ──HttpCall{rule, topic, payload}──▶ HttpBackend ──POST {url}/{topic}──▶ backend
//!         ◀── Ok(Some(object)) | Ok(None) | Err(HttpBackendError) ──┘
//! ```
//!
//! There is one `HttpBackend` per worker process, living on one thread. It owns one `awc`
//! client, so connections to each backend are kept alive and reused by every session of the
//! worker. Everything is bounded:
//!
//! - at most `http.max_in_flight` requests are open at once; one more is answered with
//!   [`HttpBackendError::Busy`] at once, never queued;
//! - each request, reading the answer included, ends within its rule's `timeout`;
//! - an answer body is read up to [`MAX_ANSWER_BYTES`].
//!
//! The topic travels as one percent-encoded path segment (`a/b c` → `{url}/a%2Fb%20c`), the
//! payload as the request body (`Content-Type: application/json`), the rule's `headers` as
//! request headers (they may replace `Content-Type`). Redirects are not followed (a 3xx is an
//! error); `https` backends are verified against the system's CA bundle. A 2xx answer is either empty (nothing to tell the client) or a JSON object;
//! anything else is an error. Header values never reach the log: they often hold tokens.
//!
//! Rohrpost's own hooks (the connect hook) send a [`Post`] to the same actor: one client, one
//! pool, one `http.max_in_flight` bound and one TLS trust for every request a worker makes.

use std::cell::Cell;
use std::future::ready;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::header;
use awc::http::StatusCode;
use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{Map, Value};

use crate::config::HttpTopicRule;
use crate::topics::Topic;

/// Largest answer body read from a backend; a larger one is [`HttpBackendError::NotJson`].
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Longest wait for a TCP connection (and, for `https`, the TLS handshake) to a backend. A
/// rule's own, shorter `timeout` still wins: it bounds the whole request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `User-Agent` of every request Rohrpost makes to a backend or hook (a rule's `headers`
/// may replace it).
const USER_AGENT: &str = concat!("rohrpost/", env!("CARGO_PKG_VERSION"));

/// Characters of a topic sent as they are; every other byte is percent-encoded, so the topic
/// is always exactly one path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the trusted CA certificates for `https` backends are looked for when `SSL_CERT_FILE`
/// does not name a file (Debian/Ubuntu/Alpine, Fedora/RHEL, openSUSE, macOS/BSD).
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Index of the first rule (config order) whose pattern matches `topic`.
///
/// Rules are tried in the order of the config file, so a specific rule placed before a
/// catch-all one wins.
pub fn rule_for(rules: &[HttpTopicRule], topic: &Topic) -> Option<usize> {
    rules
        .iter()
        .position(|rule| rule.pattern.matches(topic.as_str()))
}

/// One client message for an HTTP rule. `payload` is the JSON body to POST, already encoded.
///
/// Sent by a session to its worker's [`HttpBackend`] after [`rule_for`] found `rule`. The
/// answer is the backend's JSON object (`Some`), nothing to relay (`None`), or why there is no
/// answer.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<serde_json::Map<String, serde_json::Value>>, HttpBackendError>")]
pub struct HttpCall {
    /// Index into the rules the backend was made with (from [`rule_for`]).
    pub rule: usize,
    pub topic: Topic,
    pub payload: Bytes,
}

/// Asks for the number of requests open right now (for tests and metrics).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "usize")]
pub struct InFlight;

/// Why an [`HttpCall`] has no answer. The client sees only [`HttpBackendError::code`]; the
/// message is for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpBackendError {
    /// `http.max_in_flight` requests are already open in this worker.
    #[error("backend busy: {limit} requests already open (raise `http.max_in_flight`?)")]
    Busy { limit: usize },
    /// The backend cannot be reached: connection refused or reset, DNS or TLS failure.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// No complete answer (status, headers and body) within the rule's timeout.
    #[error("backend gave no complete answer within {0:?} (the rule's `timeout`, or `hooks.connect_timeout`)")]
    Timeout(Duration),
    /// The backend answered with a status other than 2xx.
    #[error("backend answered with HTTP status {0}")]
    Status(u16),
    /// The backend answered 2xx with a body that is neither empty nor a JSON object.
    #[error("backend answer is not a JSON object: {0}")]
    NotJson(String),
}

impl HttpBackendError {
    /// Client-facing error code: "backend_unavailable" (Busy, Unavailable), "backend_timeout",
    /// "backend_error" (Status, NotJson).
    pub fn code(&self) -> &'static str {
        match self {
            HttpBackendError::Busy { .. } | HttpBackendError::Unavailable(_) => {
                "backend_unavailable"
            }
            HttpBackendError::Timeout(_) => "backend_timeout",
            HttpBackendError::Status(_) | HttpBackendError::NotJson(_) => "backend_error",
        }
    }
}

/// The HTTP backend actor of one worker process; see the module docs.
///
/// Lives on the worker's thread (its `awc` client cannot move between threads): make it where
/// it runs, e.g. `HttpBackend::new(rules, max_in_flight).start()` inside the worker's system.
pub struct HttpBackend {
    rules: Arc<Vec<HttpTopicRule>>,
    targets: Vec<Target>,
    max_in_flight: usize,
    in_flight: Rc<Cell<usize>>,
    client: awc::Client,
}

/// A rule's URL, split once so that the topic segment can be put before any query string.
struct Target {
    /// Scheme, authority and path, without the query.
    base: String,
    /// `?…` including the question mark, or empty.
    query: String,
    /// `base` without user info, for log lines.
    shown: String,
}

impl Target {
    fn new(url: &str) -> Target {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base.trim_end_matches('/'), format!("?{query}")),
            None => (url.trim_end_matches('/'), String::new()),
        };
        Target {
            base: base.to_string(),
            query,
            shown: without_user_info(base),
        }
    }
}

/// `scheme://user:pass@host/path` → `scheme://host/path`: passwords stay out of the log.
pub(crate) fn without_user_info(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

impl HttpBackend {
    /// A backend for `rules` (the validated `[[http_topics]]`) allowing `max_in_flight` open
    /// requests; `https` backends are verified against the system's CA bundle.
    pub fn new(rules: Arc<Vec<HttpTopicRule>>, max_in_flight: usize) -> Self {
        let roots = system_roots(rules.iter().any(|r| r.url.starts_with("https:")));
        Self::with_roots(rules, max_in_flight, roots)
    }

    /// A client for one of Rohrpost's own hooks at `url` (no `[[http_topics]]` rules), e.g. the
    /// supervisor's session event hook.
    pub fn for_hook(url: &str, max_in_flight: usize) -> Self {
        let roots = system_roots(url.starts_with("https:"));
        Self::with_roots(Arc::new(Vec::new()), max_in_flight, roots)
    }

    /// As [`HttpBackend::new`], trusting exactly `roots` for `https` backends.
    fn with_roots(
        rules: Arc<Vec<HttpTopicRule>>,
        max_in_flight: usize,
        roots: rustls::RootCertStore,
    ) -> Self {
        let targets = rules.iter().map(|r| Target::new(&r.url)).collect();
        HttpBackend {
            rules,
            targets,
            max_in_flight,
            in_flight: Rc::new(Cell::new(0)),
            client: build_client(max_in_flight, roots),
        }
    }
}

fn build_client(max_in_flight: usize, roots: rustls::RootCertStore) -> awc::Client {
    // The pool holds at most as many connections as requests may be open, so it never queues
    // a request behind `max_in_flight` (awc reads 0 as "no limit", which also never queues).
    // Idle connections are dropped after 4 s, before the 5 s idle timeout of common backend
    // servers (Node's http, actix-web) closes them under a request sent at that moment.
    let mut connector = awc::Connector::new()
        .timeout(CONNECT_TIMEOUT)
        .handshake_timeout(CONNECT_TIMEOUT)
        .conn_keep_alive(Duration::from_secs(4))
        .limit(max_in_flight);
    match tls_client_config(roots) {
        Ok(config) => connector = connector.rustls_0_23(Arc::new(config)),
        Err(e) => log::warn!("http backend: https disabled, TLS setup failed error={e}"),
    }
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .finish()
}

fn tls_client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The CA certificates of `$SSL_CERT_FILE` or the first system bundle found. When none is
/// found the store is empty (every `https` backend then fails its TLS handshake), which is
/// logged if `needed`.
fn system_roots(needed: bool) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(CA_BUNDLES.iter().map(PathBuf::from));
    for path in candidates {
        let Ok(certs) = CertificateDer::pem_file_iter(&path) else {
            continue;
        };
        let (added, ignored) = roots.add_parsable_certificates(certs.filter_map(Result::ok));
        if added > 0 {
            log::debug!(
                "http backend ca_bundle={} certificates={added} ignored={ignored}",
                path.display()
            );
            return roots;
        }
    }
    if needed {
        log::warn!(
            "http backend: no CA certificates found (set SSL_CERT_FILE or install \
             ca-certificates); https backends will fail"
        );
    }
    roots
}

impl Actor for HttpBackend {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        log::info!(
            "http backend started rules={} max_in_flight={}",
            self.rules.len(),
            self.max_in_flight
        );
    }
}

/// One open request: counted in `in_flight` until dropped, however the request ends.
struct Slot(Rc<Cell<usize>>);

impl Slot {
    fn take(in_flight: &Rc<Cell<usize>>, limit: usize) -> Option<Slot> {
        let open = in_flight.get();
        (open < limit).then(|| {
            in_flight.set(open + 1);
            Slot(in_flight.clone())
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// What a log line says about a call; never header values.
struct CallLog {
    rule: usize,
    topic: Topic,
    url: String,
}

impl CallLog {
    fn failed(&self, error: &HttpBackendError) {
        log::warn!(
            "http backend error rule={} topic={} url={} error={error}",
            self.rule,
            self.topic,
            self.url
        );
    }

    fn finished(&self, result: &Answer, elapsed: Duration) {
        match result {
            Ok(answer) => log::debug!(
                "http backend call rule={} topic={} url={} answer={} elapsed_ms={}",
                self.rule,
                self.topic,
                self.url,
                if answer.is_some() { "object" } else { "empty" },
                elapsed.as_millis()
            ),
            Err(error) => self.failed(error),
        }
    }
}

/// What an [`HttpCall`] is answered with.
type Answer = Result<Option<Map<String, Value>>, HttpBackendError>;

/// Answers at once with `error`, without a request.
fn refuse(log: &CallLog, error: HttpBackendError) -> ResponseFuture<Answer> {
    log.failed(&error);
    Box::pin(ready(Err(error)))
}

impl HttpBackend {
    /// The POST of one call: topic segment in the path, the rule's headers (which may replace
    /// `Content-Type` and `User-Agent`), the rule's timeout.
    fn request(&self, rule: &HttpTopicRule, target: &Target, segment: &str) -> awc::ClientRequest {
        let url = format!("{}/{segment}{}", target.base, target.query);
        let mut request = self
            .client
            .post(url)
            .timeout(rule.timeout)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::USER_AGENT, USER_AGENT));
        for (name, value) in &rule.headers {
            request = request.insert_header((name.as_str(), value.as_str()));
        }
        request
    }
}

impl Handler<HttpCall> for HttpBackend {
    type Result = ResponseFuture<Answer>;

    fn handle(&mut self, call: HttpCall, _ctx: &mut Self::Context) -> Self::Result {
        let segment = utf8_percent_encode(call.topic.as_str(), PATH_SEGMENT).to_string();
        let target = self.targets.get(call.rule);
        let log = CallLog {
            rule: call.rule,
            topic: call.topic,
            url: target
                .map(|t| format!("{}/{segment}", t.shown))
                .unwrap_or_default(),
        };
        let Some((rule, target)) = self.rules.get(call.rule).zip(target) else {
            let error = HttpBackendError::Unavailable(format!(
                "no http_topics rule #{} ({} configured)",
                call.rule,
                self.rules.len()
            ));
            return refuse(&log, error);
        };
        let Some(slot) = Slot::take(&self.in_flight, self.max_in_flight) else {
            let limit = self.max_in_flight;
            return refuse(&log, HttpBackendError::Busy { limit });
        };
        let request = self.request(rule, target, &segment);
        let timeout = rule.timeout;
        Box::pin(async move {
            let _slot = slot;
            let started = Instant::now();
            let result = actix_rt::time::timeout(timeout, exchange(request, call.payload, timeout))
                .await
                .unwrap_or(Err(HttpBackendError::Timeout(timeout)));
            log.finished(&result, started.elapsed());
            result
        })
    }
}

impl Handler<InFlight> for HttpBackend {
    type Result = usize;

    fn handle(&mut self, _msg: InFlight, _ctx: &mut Self::Context) -> usize {
        self.in_flight.get()
    }
}

/// Sends one request and reads its answer (bounded in size; the caller bounds the time).
async fn exchange(request: awc::ClientRequest, payload: Bytes, timeout: Duration) -> Answer {
    let mut response = request
        .send_body(payload)
        .await
        .map_err(|e| send_error(e, timeout))?;
    let status = response.status();
    if !status.is_success() {
        return Err(HttpBackendError::Status(status.as_u16()));
    }
    if status == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = response
        .body()
        .limit(MAX_ANSWER_BYTES)
        .await
        .map_err(|e| payload_error(e, timeout))?;
    parse_answer(&body, content_type.as_deref())
}

fn send_error(error: SendRequestError, timeout: Duration) -> HttpBackendError {
    match error {
        SendRequestError::Timeout => HttpBackendError::Timeout(timeout),
        SendRequestError::Connect(ConnectError::Timeout) => {
            HttpBackendError::Unavailable(format!("no connection within {CONNECT_TIMEOUT:?}"))
        }
        other => HttpBackendError::Unavailable(other.to_string()),
    }
}

fn payload_error(error: PayloadError, timeout: Duration) -> HttpBackendError {
    match error {
        PayloadError::Overflow => {
            HttpBackendError::NotJson(format!("body larger than {MAX_ANSWER_BYTES} bytes"))
        }
        PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
            HttpBackendError::Timeout(timeout)
        }
        other => HttpBackendError::Unavailable(format!("reading the answer: {other}")),
    }
}

/// A 2xx answer body: empty (or only whitespace) is `None`, a JSON object is `Some`.
pub(crate) fn parse_answer(body: &[u8], content_type: Option<&str>) -> Answer {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let not_json = |what: String| {
        HttpBackendError::NotJson(format!(
            "{what} ({} bytes, content-type {})",
            body.len(),
            content_type.unwrap_or("none")
        ))
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(other) => Err(not_json(format!("JSON {}", json_kind(&other)))),
        Err(e) => Err(not_json(format!("invalid JSON, {e}"))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

mod post;

pub use post::{Post, Reply};

#[cfg(test)]
mod tests;
