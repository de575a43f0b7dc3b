//! The handshake: `{"hello": 1}` first, a welcome with a fresh session, `handshake_required`
//! for anything else, a close for clients that never say hello, and the legacy 0.x form.

use std::time::{Duration, Instant};

use awc::ws::CloseCode;
use serde_json::json;

use crate::broker::{settle, unique, BrokerKind, TestBroker};
use crate::worker::{Worker, WorkerConfig};

for_both_brokers!(
    welcome_gives_fresh_session_with_default_whitelist,
    message_before_hello_gives_handshake_required,
    non_hello_first_message_gives_handshake_required,
    handshake_timeout_closes_silent_session,
    hello_in_time_is_not_closed_by_handshake_timeout,
    legacy_handshake_accepts_bare_session_id,
    legacy_mode_still_accepts_hello,
    legacy_wildcard_ids_are_refused_and_reach_no_other_session,
);

async fn welcome_gives_fresh_session_with_default_whitelist(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (_first, a) = worker.session().await;
    let (_second, b) = worker.session().await;
    assert_ne!(a.session, b.session, "every hello starts its own session");
    assert_ne!(a.resume, b.resume);
    assert!(!a.resumed && !b.resumed);
    assert_eq!(a.whitelist, worker.config().default_whitelist);
}

async fn message_before_hello_gives_handshake_required(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let mut client = worker.connect().await;
    client.publish(&worker.topic("anonym"), json!(1)).await;
    client.expect_error("handshake_required").await;
    let welcome = client.hello().await;
    assert!(!welcome.resumed);
}

async fn non_hello_first_message_gives_handshake_required(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let mut client = worker.connect().await;
    for text in [
        r#"{"hello": 2}"#,
        r#"{"hello": "1"}"#,
        r#"{"resume": "abc"}"#,
        "{}",
        r#"[{"hello": 1}]"#,
        "1",
        "abc.def",
    ] {
        client.send_text(text).await;
        client.expect_error("handshake_required").await;
    }
    client.hello().await;
}

async fn handshake_timeout_closes_silent_session(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        handshake_timeout: "500ms".to_owned(),
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let mut client = worker.connect().await;
    let opened = Instant::now();
    let reason = client
        .expect_closed(Duration::from_secs(5))
        .await
        .expect("the close frame carries a code");
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "closed after {waited:?}, before the 500 ms handshake timeout"
    );
    assert_eq!(
        reason.code,
        CloseCode::Other(4000),
        "close reason {reason:?}"
    );
    let description = reason.description.unwrap_or_default().to_lowercase();
    assert!(
        description.contains("handshake"),
        "the reason mentions the handshake: {description:?}"
    );
}

async fn hello_in_time_is_not_closed_by_handshake_timeout(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        handshake_timeout: "500ms".to_owned(),
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let (mut client, _) = worker.session().await;
    client.expect_quiet(Duration::from_millis(1200)).await;
    client.publish(&unique("secret"), json!(1)).await;
    client.expect_error("not_whitelisted").await;
}

async fn legacy_handshake_accepts_bare_session_id(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        legacy_handshake: true,
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let mut client = worker.connect().await;
    let dotted = unique("legacy");
    let id = dotted.replace('.', "");
    client.send_text(&dotted).await;
    assert_eq!(client.recv_text().await, format!("ok:{id}"));

    // Then the session works normally: its direct topic, its whitelist.
    let mut backend = broker.connect().await;
    let direct = format!("rohrpost.client.{id}");
    settle(&mut backend, &mut client, &direct).await;
    backend
        .publish(&direct, &json!({"data": "hello 0.x"}))
        .await;
    client.expect(&direct, json!("hello 0.x")).await;
    client.publish(&unique("secret"), json!(1)).await;
    client.expect_error("not_whitelisted").await;
}

async fn legacy_mode_still_accepts_hello(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        legacy_handshake: true,
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let (_client, welcome) = worker.session().await;
    assert!(!welcome.resumed);
}

/// A 0.x client naming its session `*` (or any id with `*`) would have made its direct topic a
/// wildcard and received every other session's direct messages: such ids are refused, and a
/// modern session's direct message reaches only that session.
async fn legacy_wildcard_ids_are_refused_and_reach_no_other_session(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        legacy_handshake: true,
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let mut wildcard = worker.connect().await;
    wildcard.send_text("*").await;
    wildcard.expect_error("handshake_required").await;
    let mut partial = worker.connect().await;
    partial.send_text("abc*").await;
    partial.expect_error("handshake_required").await;

    let (mut modern, welcome) = worker.session().await;
    let mut backend = broker.connect().await;
    let direct = welcome.direct_topic();
    settle(&mut backend, &mut modern, &direct).await;
    backend
        .publish(&direct, &json!({"data": "for the modern session only"}))
        .await;
    modern
        .expect(&direct, json!("for the modern session only"))
        .await;
    wildcard.expect_quiet(Duration::from_millis(300)).await;
    partial.expect_quiet(Duration::from_millis(300)).await;
}
