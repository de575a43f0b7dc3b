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

fn rule(pattern: &str, url: &str, timeout: Duration, headers: &[(&str, &str)]) -> HttpTopicRule {
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
fn start_backend(urls: &[String], timeout: Duration, max_in_flight: usize) -> Addr<HttpBackend> {
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
    let Err(HttpBackendError::NotJson(why)) = parse_answer(br#""hi""#, Some("application/json"))
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
