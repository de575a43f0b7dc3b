//! Client messages on `[[http_topics]]` topics: the worker POSTs them to the rule's URL with the
//! rule's headers, and applies a JSON-object answer like a message on the session's direct
//! topic.

use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::{Answer, Backend};
use crate::broker::{settle, BrokerKind, TestBroker};
use crate::worker::{HttpRule, Worker, WorkerConfig};

/// How long "nothing arrived" is watched for after the backend answered.
const QUIET: Duration = Duration::from_millis(300);

for_both_brokers!(
    http_topic_round_trip_reaches_backend_and_answer_reaches_client,
    http_topic_is_percent_encoded_in_the_backend_url,
    http_answer_topic_is_delivered_like_direct_topic,
    message_on_http_topic_is_not_published_to_the_broker,
    first_matching_http_rule_wins,
    http_answer_grants_whitelist,
    http_answer_removes_patterns,
    http_answer_sets_session_data,
    empty_http_answers_send_nothing,
);

/// Whitelists `http.*` (namespaced) in `config` and sends it to `backend` with the header
/// `X-Token: abc`.
fn serve_http(config: &mut WorkerConfig, backend: &Backend) {
    let http = config.pattern("http");
    config.default_whitelist.push(http.clone());
    config
        .http_topics
        .push(HttpRule::new(&http, &backend.url()).header("X-Token", "abc"));
}

/// A worker of `broker` whose `http.*` topics go to `backend`.
async fn worker_for(broker: &TestBroker, backend: &Backend) -> Worker {
    let mut config = WorkerConfig::on(broker);
    serve_http(&mut config, backend);
    Worker::start(&config).await
}

async fn http_topic_round_trip_reaches_backend_and_answer_reaches_client(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend =
        Backend::start(|req| Answer::Json(json!({"data": {"echo": req.body["data"]}})));
    let worker = worker_for(&broker, &backend).await;
    let (mut client, welcome) = worker.session().await;
    let topic = worker.topic("http");

    client.publish(&topic, json!({"q": 1})).await;
    let req = backend.next_request().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.raw_path, format!("/hook/{topic}"));
    assert_eq!(req.headers.get("x-token").map(String::as_str), Some("abc"));
    assert_eq!(
        req.body,
        json!({
            "topic": topic,
            "data": {"q": 1},
            "sessionId": welcome.session,
            "sessionData": null,
            "fromClient": true,
        })
    );
    client.expect(&topic, json!({"echo": {"q": 1}})).await;
}

async fn http_topic_is_percent_encoded_in_the_backend_url(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = Backend::start(|_| Answer::Json(json!({"data": "seen"})));
    let worker = worker_for(&broker, &backend).await;
    let (mut client, _) = worker.session().await;
    // Printable, no whitespace: a valid topic, full of characters a URL path cannot carry.
    let topic = format!("{}.a/b?c#d%e&f+g;h\\i\"j<k>ü", worker.topic("http"));

    client.publish(&topic, json!(1)).await;
    let req = backend.next_request().await;
    let segment = req.raw_path.strip_prefix("/hook/").unwrap_or_default();
    assert!(
        !segment.contains(['/', '?', '#', '"', '<', '>', '\\']) && segment.is_ascii(),
        "the topic is one encoded path segment: {}",
        req.raw_path
    );
    assert_eq!(req.topic, topic, "the segment decodes to the topic");
    assert_eq!(req.body["topic"], topic.as_str());
    client.expect(&topic, json!("seen")).await;
}

async fn http_answer_topic_is_delivered_like_direct_topic(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let secret = crate::broker::unique("secret");
    let answer = json!({"topic": secret, "data": "from the backend"});
    let mut backend = Backend::start(move |_| Answer::Json(answer.clone()));
    let worker = worker_for(&broker, &backend).await;
    let (mut client, _) = worker.session().await;

    client.publish(&worker.topic("http"), json!(1)).await;
    backend.next_request().await;
    client.expect(&secret, json!("from the backend")).await;
}

async fn message_on_http_topic_is_not_published_to_the_broker(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = Backend::start(|_| Answer::Json(json!({"data": "seen"})));
    let worker = worker_for(&broker, &backend).await;
    let (mut client, _) = worker.session().await;
    let topic = worker.topic("http");
    let mut on_broker = broker.subscribe(&topic).await;

    client.publish(&topic, json!("for the backend only")).await;
    backend.next_request().await;
    client.expect(&topic, json!("seen")).await;
    on_broker.expect_quiet(QUIET).await;
}

async fn first_matching_http_rule_wins(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut first = Backend::start(|_| Answer::Json(json!({"data": "first"})));
    let mut second = Backend::start(|_| Answer::Json(json!({"data": "second"})));
    let mut config = WorkerConfig::on(&broker);
    let special = config.topic("http");
    config
        .http_topics
        .push(HttpRule::new(&special, &first.url()));
    serve_http(&mut config, &second);
    let worker = Worker::start(&config).await;
    let (mut client, _) = worker.session().await;

    client.publish(&special, json!(1)).await;
    assert_eq!(first.next_request().await.topic, special);
    client.expect(&special, json!("first")).await;

    let other = worker.topic("http");
    client.publish(&other, json!(2)).await;
    assert_eq!(second.next_request().await.topic, other);
    client.expect(&other, json!("second")).await;
}

async fn http_answer_grants_whitelist(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut config = WorkerConfig::on(&broker);
    let members = config.topic("members");
    let grant = json!({"add": [config.pattern("members")], "data": {"ok": true}});
    let mut backend = Backend::start(move |_| Answer::Json(grant.clone()));
    serve_http(&mut config, &backend);
    let worker = Worker::start(&config).await;
    let (mut client, _) = worker.session().await;

    client.publish(&members, json!("too early")).await;
    client.expect_error("not_whitelisted").await;

    let login = worker.topic("http");
    client
        .publish(&login, json!({"user": "ada", "password": "secret"}))
        .await;
    backend.next_request().await;
    client.expect(&login, json!({"ok": true})).await;

    let mut on_broker = broker.subscribe(&members).await;
    client.publish(&members, json!("member now")).await;
    assert_eq!(on_broker.next_json().await["data"], "member now");
    let mut publisher = broker.connect().await;
    settle(&mut publisher, &mut client, &members).await;
}

async fn http_answer_removes_patterns(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut config = WorkerConfig::on(&broker);
    let revoke = json!({"remove": [config.pattern("anonym")], "data": "bye"});
    let mut backend = Backend::start(move |_| Answer::Json(revoke.clone()));
    serve_http(&mut config, &backend);
    let worker = Worker::start(&config).await;
    let (mut client, _) = worker.session().await;

    let logout = worker.topic("http");
    client.publish(&logout, json!(null)).await;
    backend.next_request().await;
    // Answers are delivered like direct-topic messages, whatever the whitelist.
    client.expect(&logout, json!("bye")).await;
    client.publish(&worker.topic("anonym"), json!(1)).await;
    client.expect_error("not_whitelisted").await;
}

async fn http_answer_sets_session_data(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = Backend::start(|req| {
        if req.topic.ends_with(".login") {
            Answer::Json(json!({"sessionData": {"user": "ada"}}))
        } else {
            Answer::Json(json!({"data": {"seen": req.body["sessionData"]}}))
        }
    });
    let worker = worker_for(&broker, &backend).await;
    let (mut client, _) = worker.session().await;

    let login = format!("{}.login", worker.topic("http"));
    client.publish(&login, json!(1)).await;
    backend.next_request().await;
    // An answer without data delivers nothing.
    client.expect_quiet(QUIET).await;

    let whoami = worker.topic("http");
    client.publish(&whoami, json!(2)).await;
    let req = backend.next_request().await;
    assert_eq!(req.body["sessionData"], json!({"user": "ada"}));
    client
        .expect(&whoami, json!({"seen": {"user": "ada"}}))
        .await;
}

async fn empty_http_answers_send_nothing(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut backend = Backend::start(|req| {
        let status = if req.topic.ends_with(".nocontent") {
            204
        } else {
            200
        };
        Answer::Raw {
            status,
            content_type: "application/json",
            body: "",
        }
    });
    let worker = worker_for(&broker, &backend).await;
    let (mut client, _) = worker.session().await;

    for suffix in ["empty", "nocontent"] {
        let topic = format!("{}.{suffix}", worker.topic("http"));
        client.publish(&topic, Value::Null).await;
        backend.next_request().await;
        client.expect_quiet(QUIET).await;
    }
}
