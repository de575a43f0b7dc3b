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
    #[error("backend gave no complete answer within {0:?} (the rule's `timeout`)")]
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
fn without_user_info(url: &str) -> String {
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
    let mut connector = awc::Connector::new()
        .timeout(CONNECT_TIMEOUT)
        .handshake_timeout(CONNECT_TIMEOUT)
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
            .insert_header((
                header::USER_AGENT,
                concat!("rohrpost/", env!("CARGO_PKG_VERSION")),
            ));
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
fn parse_answer(body: &[u8], content_type: Option<&str>) -> Answer {
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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{SocketAddr, TcpListener};
    use std::sync::Mutex;

    use actix_web::dev::ServerHandle;
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

    use super::*;
    use crate::topics::{Pattern, DEFAULT_MAX_TOPIC_LEN};

    /// Longest any test waits for one answer; every expected answer comes far sooner.
    const WAIT: Duration = Duration::from_secs(5);

    fn topic(s: &str) -> Topic {
        Topic::parse(s, DEFAULT_MAX_TOPIC_LEN).unwrap()
    }

    fn rule(
        pattern: &str,
        url: &str,
        timeout: Duration,
        headers: &[(&str, &str)],
    ) -> HttpTopicRule {
        HttpTopicRule {
            pattern: Pattern::parse(pattern, DEFAULT_MAX_TOPIC_LEN).unwrap(),
            url: url.to_string(),
            timeout,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A backend with one catch-all rule per URL, in order, trusting no CA.
    fn start_backend(
        urls: &[String],
        timeout: Duration,
        max_in_flight: usize,
    ) -> Addr<HttpBackend> {
        let rules = urls
            .iter()
            .map(|url| rule("*", url, timeout, &[]))
            .collect();
        HttpBackend::with_roots(
            Arc::new(rules),
            max_in_flight,
            rustls::RootCertStore::empty(),
        )
        .start()
    }

    fn call(rule: usize, topic_name: &str) -> HttpCall {
        HttpCall {
            rule,
            topic: topic(topic_name),
            payload: Bytes::from_static(br#"{"n":1}"#),
        }
    }

    async fn ask(backend: &Addr<HttpBackend>, msg: HttpCall) -> Answer {
        actix_rt::time::timeout(WAIT, backend.send(msg))
            .await
            .expect("backend answers in time")
            .expect("backend actor alive")
    }

    /// A request as the test server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        path_and_query: String,
        headers: Vec<(String, String)>,
        body: Bytes,
        peer_port: u16,
    }

    type SeenLog = web::Data<Mutex<Vec<Seen>>>;

    /// Answers by the first path segment: `object`, `empty`, `no-content`, `fail`, `html`,
    /// `array`, `huge`; records every request.
    async fn answer(req: HttpRequest, body: web::Bytes, seen: SeenLog) -> HttpResponse {
        let headers = req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        seen.lock().unwrap().push(Seen {
            path_and_query: req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers,
            body,
            peer_port: req.peer_addr().map(|a| a.port()).unwrap_or(0),
        });
        let kind = req
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        match kind {
            "object" => HttpResponse::Ok()
                .content_type("application/json")
                .body(r#"{"ok":true,"echo":"x"}"#),
            "empty" => HttpResponse::Ok().finish(),
            "no-content" => HttpResponse::NoContent().finish(),
            "fail" => HttpResponse::InternalServerError().body("boom"),
            "html" => HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body("<!DOCTYPE html><p>hello</p>"),
            "array" => HttpResponse::Ok()
                .content_type("application/json")
                .body("[1,2,3]"),
            "huge" => HttpResponse::Ok()
                .content_type("application/json")
                .body(format!(
                    r#"{{"pad":"{}"}}"#,
                    "x".repeat(2 * MAX_ANSWER_BYTES)
                )),
            _ => HttpResponse::NotFound().finish(),
        }
    }

    /// A well-behaved backend on 127.0.0.1 (plain HTTP, or HTTPS with `tls`).
    struct TestServer {
        base: String,
        seen: SeenLog,
        handle: ServerHandle,
    }

    impl TestServer {
        fn start(tls: Option<rustls::ServerConfig>) -> TestServer {
            let seen: SeenLog = web::Data::new(Mutex::new(Vec::new()));
            let data = seen.clone();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .default_service(web::to(answer))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1);
            let (server, scheme) = match tls {
                Some(config) => (
                    server.bind_rustls_0_23(("127.0.0.1", 0), config).unwrap(),
                    "https",
                ),
                None => (server.bind(("127.0.0.1", 0)).unwrap(), "http"),
            };
            let port = server.addrs()[0].port();
            let server = server.run();
            let handle = server.handle();
            actix_rt::spawn(server);
            TestServer {
                base: format!("{scheme}://127.0.0.1:{port}"),
                seen,
                handle,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        async fn stop(self) {
            self.handle.stop(false).await;
        }
    }

    /// A port where the kernel completes TCP handshakes but nobody ever reads or answers.
    fn hanging_listener() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hang", listener.local_addr().unwrap());
        (listener, url)
    }

    /// A server that reads one byte of each request and closes with the rest unread, which
    /// makes the kernel reset the connection. Gives up after `WAIT`.
    fn resetting_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                        let _ = stream.read(&mut [0u8; 1]);
                        drop(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        addr
    }

    #[test]
    fn rule_for_picks_the_first_matching_rule_in_config_order() {
        let rules = vec![
            rule("orders.special", "http://a", WAIT, &[]),
            rule("orders.*", "http://b", WAIT, &[]),
            rule("*", "http://c", WAIT, &[]),
        ];
        assert_eq!(rule_for(&rules, &topic("orders.special")), Some(0));
        assert_eq!(rule_for(&rules, &topic("orders.new")), Some(1));
        assert_eq!(rule_for(&rules, &topic("chat.lobby")), Some(2));
        assert_eq!(rule_for(&rules[..2], &topic("chat.lobby")), None);
        assert_eq!(rule_for(&[], &topic("chat.lobby")), None);
    }

    #[test]
    fn rule_url_keeps_its_query_after_the_topic_and_logs_no_password() {
        let target = Target::new("https://user:pw@example.com:8443/hook/?v=2");
        assert_eq!(target.base, "https://user:pw@example.com:8443/hook");
        assert_eq!(target.query, "?v=2");
        assert_eq!(target.shown, "https://example.com:8443/hook");
        assert_eq!(Target::new("http://h").shown, "http://h");
        assert_eq!(without_user_info("http://h/a@b"), "http://h/a@b");
    }

    #[test]
    fn error_codes_are_the_client_facing_ones() {
        let codes: Vec<_> = [
            HttpBackendError::Busy { limit: 1 },
            HttpBackendError::Unavailable("refused".into()),
            HttpBackendError::Timeout(Duration::from_millis(300)),
            HttpBackendError::Status(502),
            HttpBackendError::NotJson("html".into()),
        ]
        .iter()
        .map(HttpBackendError::code)
        .collect();
        assert_eq!(
            codes,
            [
                "backend_unavailable",
                "backend_unavailable",
                "backend_timeout",
                "backend_error",
                "backend_error"
            ]
        );
    }

    #[test]
    fn answer_bodies_other_than_empty_or_object_are_not_json() {
        assert_eq!(parse_answer(b"", None), Ok(None));
        assert_eq!(parse_answer(b" \r\n", Some("text/plain")), Ok(None));
        assert!(matches!(parse_answer(br#"{"a":1}"#, None), Ok(Some(m)) if m["a"] == 1));
        let Err(HttpBackendError::NotJson(why)) =
            parse_answer(br#""hi""#, Some("application/json"))
        else {
            panic!("a JSON string is not an object");
        };
        assert!(
            why.contains("JSON string") && why.contains("application/json"),
            "{why}"
        );
        let Err(HttpBackendError::NotJson(why)) = parse_answer(b"{oops", None) else {
            panic!("broken JSON is not an object");
        };
        assert!(
            why.contains("invalid JSON") && why.contains("content-type none"),
            "{why}"
        );
    }

    #[actix_rt::test]
    async fn topic_travels_percent_encoded_with_payload_and_configured_headers() {
        let server = TestServer::start(None);
        let rules = vec![rule(
            "*",
            &server.url("/object/hook"),
            WAIT,
            &[("X-Token", "secret-123"), ("X-Tenant", "t1")],
        )];
        let backend =
            HttpBackend::with_roots(Arc::new(rules), 4, rustls::RootCertStore::empty()).start();

        let answer = ask(&backend, call(0, "a/b+c%d.é~")).await;
        assert!(answer.is_ok(), "{answer:?}");
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path_and_query, "/object/hook/a%2Fb%2Bc%25d.%C3%A9~");
        assert_eq!(seen[0].body, Bytes::from_static(br#"{"n":1}"#));
        let header = |name: &str| {
            seen[0]
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("content-type").as_deref(), Some("application/json"));
        assert_eq!(header("x-token").as_deref(), Some("secret-123"));
        assert_eq!(header("x-tenant").as_deref(), Some("t1"));
        server.stop().await;
    }

    #[actix_rt::test]
    async fn topic_with_slash_and_space_is_one_path_segment() {
        // `a/b c` cannot be a `Topic` (no whitespace), so the encoding itself is checked here.
        assert_eq!(
            utf8_percent_encode("a/b c", PATH_SEGMENT).to_string(),
            "a%2Fb%20c"
        );
        let server = TestServer::start(None);
        let backend = start_backend(&[server.url("/empty/hook")], WAIT, 4);
        assert_eq!(ask(&backend, call(0, "a/b?c#d")).await, Ok(None));
        assert_eq!(server.seen()[0].path_and_query, "/empty/hook/a%2Fb%3Fc%23d");
        server.stop().await;
    }

    #[actix_rt::test]
    async fn json_object_answer_is_relayed() {
        let server = TestServer::start(None);
        let backend = start_backend(&[server.url("/object")], WAIT, 4);
        let map = ask(&backend, call(0, "t"))
            .await
            .expect("ok")
            .expect("an object");
        assert_eq!(
            Value::Object(map),
            serde_json::json!({"ok": true, "echo": "x"})
        );
        server.stop().await;
    }

    #[actix_rt::test]
    async fn no_content_and_empty_ok_answers_are_none() {
        let server = TestServer::start(None);
        let backend = start_backend(&[server.url("/no-content"), server.url("/empty")], WAIT, 4);
        assert_eq!(ask(&backend, call(0, "t")).await, Ok(None));
        assert_eq!(ask(&backend, call(1, "t")).await, Ok(None));
        server.stop().await;
    }

    #[actix_rt::test]
    async fn sequential_calls_reuse_one_kept_alive_connection() {
        let server = TestServer::start(None);
        let backend = start_backend(&[server.url("/object")], WAIT, 4);
        for _ in 0..3 {
            assert!(ask(&backend, call(0, "t")).await.is_ok());
        }
        let ports: Vec<u16> = server.seen().iter().map(|s| s.peer_port).collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
        server.stop().await;
    }

    #[actix_rt::test]
    async fn server_error_is_status_with_backend_error_code() {
        let server = TestServer::start(None);
        let backend = start_backend(&[server.url("/fail")], WAIT, 4);
        let error = ask(&backend, call(0, "t")).await.unwrap_err();
        assert_eq!(error, HttpBackendError::Status(500));
        assert_eq!(error.code(), "backend_error");
        server.stop().await;
    }

    #[actix_rt::test]
    async fn html_answer_is_not_json() {
        let server = TestServer::start(None);
        let backend = start_backend(&[server.url("/html")], WAIT, 4);
        let error = ask(&backend, call(0, "t")).await.unwrap_err();
        let HttpBackendError::NotJson(why) = &error else {
            panic!("{error:?}");
        };
        assert!(why.contains("text/html"), "{why}");
        assert_eq!(error.code(), "backend_error");
        server.stop().await;
    }

    #[actix_rt::test]
    async fn json_array_answer_is_not_json() {
        let server = TestServer::start(None);
        let backend = start_backend(&[server.url("/array")], WAIT, 4);
        let error = ask(&backend, call(0, "t")).await.unwrap_err();
        let HttpBackendError::NotJson(why) = &error else {
            panic!("{error:?}");
        };
        assert!(why.contains("JSON array"), "{why}");
        server.stop().await;
    }

    #[actix_rt::test]
    async fn answer_larger_than_the_bound_is_not_json() {
        let server = TestServer::start(None);
        let backend = start_backend(&[server.url("/huge")], WAIT, 4);
        let error = ask(&backend, call(0, "t")).await.unwrap_err();
        let HttpBackendError::NotJson(why) = &error else {
            panic!("{error:?}");
        };
        assert!(why.contains("larger than"), "{why}");
        server.stop().await;
    }

    #[actix_rt::test]
    async fn hanging_backend_times_out_within_the_rule_timeout() {
        let (_listener, url) = hanging_listener();
        let timeout = Duration::from_millis(300);
        let backend = start_backend(&[url], timeout, 4);
        let started = Instant::now();
        let error = ask(&backend, call(0, "t")).await.unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(error, HttpBackendError::Timeout(timeout));
        assert_eq!(error.code(), "backend_timeout");
        assert!(elapsed >= timeout, "{elapsed:?}");
        assert!(elapsed < timeout * 3, "{elapsed:?}");
    }

    #[actix_rt::test]
    async fn nothing_listening_is_unavailable() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let backend = start_backend(&[format!("http://127.0.0.1:{port}/gone")], WAIT, 4);
        let error = ask(&backend, call(0, "t")).await.unwrap_err();
        assert!(
            matches!(error, HttpBackendError::Unavailable(_)),
            "{error:?}"
        );
        assert_eq!(error.code(), "backend_unavailable");
    }

    #[actix_rt::test]
    async fn connection_reset_by_the_backend_is_unavailable() {
        let addr = resetting_server();
        let backend = start_backend(&[format!("http://{addr}/reset")], WAIT, 4);
        let error = ask(&backend, call(0, "t")).await.unwrap_err();
        assert!(
            matches!(error, HttpBackendError::Unavailable(_)),
            "{error:?}"
        );
        assert_eq!(error.code(), "backend_unavailable");
    }

    #[actix_rt::test]
    async fn call_beyond_max_in_flight_is_busy_at_once() {
        let (_listener, url) = hanging_listener();
        // Long enough that the first two are surely still open while the test looks.
        let timeout = Duration::from_secs(1);
        let backend = start_backend(&[url], timeout, 2);
        let first = backend.send(call(0, "one"));
        let second = backend.send(call(0, "two"));

        let started = Instant::now();
        let third = ask(&backend, call(0, "three")).await;
        assert!(started.elapsed() < timeout / 2, "{:?}", started.elapsed());
        assert_eq!(third, Err(HttpBackendError::Busy { limit: 2 }));
        assert_eq!(third.unwrap_err().code(), "backend_unavailable");
        assert_eq!(backend.send(InFlight).await.unwrap(), 2);

        for open in [first, second] {
            let answer = actix_rt::time::timeout(WAIT, open).await.unwrap().unwrap();
            assert_eq!(answer, Err(HttpBackendError::Timeout(timeout)));
        }
        assert_eq!(backend.send(InFlight).await.unwrap(), 0);
    }

    #[actix_rt::test]
    async fn unknown_rule_index_is_unavailable_not_a_panic() {
        let backend = start_backend(&[], WAIT, 2);
        let error = ask(&backend, call(3, "t")).await.unwrap_err();
        assert!(
            matches!(error, HttpBackendError::Unavailable(_)),
            "{error:?}"
        );
        assert_eq!(backend.send(InFlight).await.unwrap(), 0);
    }

    #[actix_rt::test]
    async fn https_backend_is_verified_against_the_trusted_roots() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = crate::tls::generate_dev_cert(dir.path(), true).unwrap();
        let server = TestServer::start(Some(files.server_config().unwrap()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&files.cert).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let rules = Arc::new(vec![rule("*", &server.url("/object"), WAIT, &[])]);
        let trusting = HttpBackend::with_roots(rules.clone(), 2, roots).start();
        let answer = ask(&trusting, call(0, "t")).await;
        assert!(matches!(answer, Ok(Some(_))), "{answer:?}");

        let untrusting = start_backend(&[server.url("/object")], WAIT, 2);
        let error = ask(&untrusting, call(0, "t")).await.unwrap_err();
        assert!(
            matches!(error, HttpBackendError::Unavailable(_)),
            "{error:?}"
        );
        server.stop().await;
    }
}
