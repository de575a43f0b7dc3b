//! The connect hook (`hooks.connect_url`): the worker POSTs who is connecting before the
//! welcome; a 2xx answer grants like a direct-topic message, a 4xx refuses with the hook's own
//! close code and reason, and a hook that does not answer in time is refused or allowed as
//! `hooks.connect_on_error` says.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backend::{Answer, Backend, Recorded};
use crate::broker::{settle, BrokerKind, TestBroker};
use crate::client::{http, Client};
use crate::common::WAIT;
use crate::worker::{HttpRule, Worker, WorkerConfig, PREFIX};

for_both_brokers!(
    hook_refusal_reaches_the_client_with_its_code_and_reason,
    hook_grant_applies_before_the_welcome_and_its_session_data_reaches_backends,
    hook_sees_the_headers_query_and_address_of_the_websocket_upgrade,
    hook_sees_the_first_receiving_request_of_an_http_transport,
    hook_is_asked_again_on_resume,
    hook_timeout_refuses_the_session_when_on_error_is_refuse,
    hook_timeout_lets_the_session_in_when_on_error_is_allow,
    unreachable_hook_refuses_the_session_when_on_error_is_refuse,
);

/// The path the hook is served at on the test backend (`/hook/connect`).
const HOOK: &str = "connect";

/// A worker config whose connect hook is `backend` (at `/hook/connect`), with `hooks` settings
/// on top.
fn hooked(broker: &TestBroker, backend: &Backend, hooks: Value) -> WorkerConfig {
    let mut config = WorkerConfig::on(broker);
    hook_at(&mut config, backend, hooks);
    config
}

/// Points `config`'s connect hook at `backend` (`/hook/connect`), with `hooks` settings on top.
fn hook_at(config: &mut WorkerConfig, backend: &Backend, hooks: Value) {
    let mut table = json!({"connect_url": format!("{}/{HOOK}", backend.url())});
    if let (Some(table), Some(extra)) = (table.as_object_mut(), hooks.as_object()) {
        table.extend(extra.clone());
    }
    config.hooks = table;
}

/// The next request the backend got for the connect hook (rule calls are skipped).
async fn hook_request(backend: &mut Backend) -> Recorded {
    loop {
        let req = backend.next_request().await;
        if req.topic == HOOK {
            return req;
        }
    }
}

/// Sends `{"hello": 1}` and asserts the refusal: an error with `code`, then a close frame;
/// returns the close code and reason.
pub async fn refused(client: &mut Client, hello: Value, code: &str) -> (u16, String) {
    client.send_json(&hello).await;
    let error = client.expect_error(code).await;
    assert!(error.get("topic").is_none(), "{error}");
    let reason = client
        .expect_closed(WAIT)
        .await
        .expect("a refusal closes with a code and reason");
    (
        u16::from(reason.code),
        reason.description.unwrap_or_default(),
    )
}

async fn hook_refusal_reaches_the_client_with_its_code_and_reason(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = Backend::start(|_| Answer::Raw {
        status: 403,
        content_type: "application/json",
        body: r#"{"code": 4403, "reason": "Not logged in"}"#,
    });
    let worker = Worker::start(&hooked(&broker, &backend, json!({}))).await;
    let mut client = worker.connect().await;

    let closed = refused(&mut client, json!({"hello": 1}), "unauthorized").await;
    assert_eq!(closed, (4403, "Not logged in".to_owned()));
    hook_request(&mut backend).await;

    // Without a code of its own, a refusal is 4003 Forbidden.
    let mut backend = Backend::start(|_| Answer::Raw {
        status: 401,
        content_type: "text/plain",
        body: "no",
    });
    let worker = Worker::start(&hooked(&broker, &backend, json!({}))).await;
    let mut client = worker.connect().await;
    let closed = refused(&mut client, json!({"hello": 1}), "unauthorized").await;
    assert_eq!(closed, (4003, "Forbidden".to_owned()));
    hook_request(&mut backend).await;
}

async fn hook_grant_applies_before_the_welcome_and_its_session_data_reaches_backends(
    kind: BrokerKind,
) {
    let broker = TestBroker::start(kind).await;
    let mut config = WorkerConfig::on(&broker);
    let members = config.pattern("members");
    let grant = json!({"add": [members], "sessionData": {"user": "ada"}, "data": "not delivered"});
    let mut backend = Backend::start(move |req| {
        if req.topic == HOOK {
            Answer::Json(grant.clone())
        } else {
            Answer::Json(json!({"data": {"seen": req.body["sessionData"]}}))
        }
    });
    let http_topics = config.pattern("http");
    config.default_whitelist.push(http_topics.clone());
    config
        .http_topics
        .push(HttpRule::new(&http_topics, &backend.url()));
    hook_at(&mut config, &backend, json!({}));
    // Hook approval suffices where authentication is required.
    config.auth = json!({"required": true});
    let worker = Worker::start(&config).await;

    let (mut client, welcome) = worker.session().await;
    assert!(
        welcome.whitelist.contains(&worker.pattern("members")),
        "the hook's grant is in the welcome's whitelist: {:?}",
        welcome.whitelist
    );
    let req = hook_request(&mut backend).await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.body["sessionId"], welcome.session.as_str());
    assert_eq!(req.body["resume"], false);

    // The grant is live: the session receives on the granted pattern...
    let members_topic = worker.topic("members");
    let mut publisher = broker.connect().await;
    settle(&mut publisher, &mut client, &members_topic).await;
    // ... and its session data reaches backends.
    let topic = worker.topic("http");
    client.publish(&topic, json!(1)).await;
    let call = backend.next_request().await;
    assert_eq!(call.body["sessionData"], json!({"user": "ada"}));
    client
        .expect(&topic, json!({"seen": {"user": "ada"}}))
        .await;
}

async fn hook_sees_the_headers_query_and_address_of_the_websocket_upgrade(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = Backend::start(|_| Answer::Json(json!({})));
    let worker = Worker::start(&hooked(&broker, &backend, json!({}))).await;
    let url = format!("{}?room=lobby&lang=de", worker.ws_url());
    let headers = [
        ("Cookie", "sid=abc123"),
        ("Origin", "https://app.example"),
        ("User-Agent", "auth-test/1.0"),
        ("Authorization", "Bearer opaque"),
        ("X-Not-Forwarded", "1"),
    ];
    let mut client = Client::connect_with(&url, &headers).await;
    client
        .send_json(&json!({"hello": 1, "token": "opaque-to-rohrpost"}))
        .await;
    client.expect_topic("rohrpost.welcome").await;

    let req = hook_request(&mut backend).await;
    assert_eq!(
        req.body["headers"],
        json!({
            "Cookie": "sid=abc123",
            "Origin": "https://app.example",
            "User-Agent": "auth-test/1.0",
            "Authorization": "Bearer opaque",
        })
    );
    assert_eq!(req.body["query"], "room=lobby&lang=de");
    assert_eq!(req.body["address"], "127.0.0.1");
    // No keys are configured: the token is not verified here, the hook gets it as sent.
    assert_eq!(req.body["token"], "opaque-to-rohrpost");
    assert_eq!(
        req.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
}

async fn hook_sees_the_first_receiving_request_of_an_http_transport(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = Backend::start(|_| Answer::Json(json!({})));
    let worker = Worker::start(&hooked(&broker, &backend, json!({}))).await;
    let base = format!(
        "http://127.0.0.1:{}{PREFIX}/000/{}",
        worker.port(),
        crate::common::session_id()
    );
    let http = http();
    let post = |url: String, body: &'static str, cookie: &'static str| {
        let request = http
            .post(url)
            .insert_header(("Cookie", cookie))
            .insert_header(("Authorization", "Bearer xhr"));
        async move {
            let mut res = actix_rt::time::timeout(WAIT, request.send_body(body))
                .await
                .expect("an answer in time")
                .expect("the request is answered");
            let body = res.body().await.expect("a body");
            String::from_utf8_lossy(&body).into_owned()
        }
    };
    // The first receiving request opens the session; sends carry their own headers, unseen.
    assert_eq!(
        post(format!("{base}/xhr?via=xhr"), "", "first=1").await,
        "o\n"
    );
    post(format!("{base}/xhr_send"), r#"["{\"hello\":1}"]"#, "send=1").await;
    let welcome = post(format!("{base}/xhr"), "", "later=1").await;
    assert!(welcome.contains("rohrpost.welcome"), "{welcome}");

    let req = hook_request(&mut backend).await;
    assert_eq!(
        req.body["headers"],
        json!({"Cookie": "first=1", "Authorization": "Bearer xhr"})
    );
    assert_eq!(req.body["query"], "via=xhr");
}

async fn hook_is_asked_again_on_resume(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = Backend::start(|_| Answer::Json(json!({})));
    let worker = Worker::start(&hooked(&broker, &backend, json!({}))).await;
    let (client, welcome) = worker.session().await;
    hook_request(&mut backend).await;
    client.close().await;

    let mut client = worker.connect().await;
    let resumed = client.resume(&welcome.resume).await;
    assert!(resumed.resumed);
    let req = hook_request(&mut backend).await;
    assert_eq!(req.body["sessionId"], welcome.session.as_str());
    assert_eq!(req.body["resume"], true);
}

/// A hook that answers only after `hold`, for timeouts of `timeout`.
fn slow_hook(hold: Duration) -> Backend {
    Backend::start(move |_| Answer::Delayed(hold, Box::new(Answer::Json(json!({})))))
}

async fn hook_timeout_refuses_the_session_when_on_error_is_refuse(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = slow_hook(Duration::from_secs(3));
    let hooks = json!({"connect_timeout": "300ms", "connect_on_error": "refuse"});
    let worker = Worker::start(&hooked(&broker, &backend, hooks)).await;
    let mut client = worker.connect().await;

    let started = Instant::now();
    let closed = refused(&mut client, json!({"hello": 1}), "auth_unavailable").await;
    assert_eq!(
        closed,
        (
            1013,
            "Authentication unavailable; try again later".to_owned()
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at the timeout, not when the hook answered: {:?}",
        started.elapsed()
    );
    hook_request(&mut backend).await;
}

async fn hook_timeout_lets_the_session_in_when_on_error_is_allow(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = slow_hook(Duration::from_secs(3));
    let hooks = json!({"connect_timeout": "300ms", "connect_on_error": "allow"});
    let worker = Worker::start(&hooked(&broker, &backend, hooks)).await;

    let started = Instant::now();
    let (_client, welcome) = worker.session().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(welcome.whitelist, worker.config().default_whitelist);
    hook_request(&mut backend).await;
}

async fn unreachable_hook_refuses_the_session_when_on_error_is_refuse(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut config = WorkerConfig::on(&broker);
    let closed_port = crate::common::free_port();
    config.hooks = json!({"connect_url": format!("http://127.0.0.1:{closed_port}/connect")});
    let worker = Worker::start(&config).await;
    let mut client = worker.connect().await;
    let (code, _) = refused(&mut client, json!({"hello": 1}), "auth_unavailable").await;
    assert_eq!(code, 1013);
}
