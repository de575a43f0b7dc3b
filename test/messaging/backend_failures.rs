//! HTTP backends that fail: nothing listening, too slow, or answering garbage. The client gets a
//! `rohrpost.error` naming the topic, and the worker keeps serving (the original ping/pong
//! still works afterwards).

use std::time::Duration;

use serde_json::json;

use crate::backend::{Answer, Backend};
use crate::broker::{ping_pong, BrokerKind, TestBroker};
use crate::common::free_port;
use crate::worker::{HttpRule, Worker, WorkerConfig};

for_both_brokers!(
    backend_down_gives_backend_unavailable,
    slow_backend_gives_backend_timeout,
    html_answer_gives_backend_error,
    status_500_gives_backend_error,
);

/// The default test config for `broker` with `http.*` (namespaced) whitelisted and sent to
/// `url` with `timeout`.
fn config_with(broker: &TestBroker, url: &str, timeout: &str) -> WorkerConfig {
    let mut config = WorkerConfig::on(broker);
    let http = config.pattern("http");
    config.default_whitelist.push(http.clone());
    config
        .http_topics
        .push(HttpRule::new(&http, url).timeout(timeout));
    config
}

/// Publishes on a fresh `http.*` topic, expects the error `code` about it, then a working
/// session.
async fn expect_failure(broker: &TestBroker, worker: &Worker, code: &str) {
    let (mut client, welcome) = worker.session().await;
    let topic = worker.topic("http");
    client.publish(&topic, json!({"q": 1})).await;
    let error = client.expect_error(code).await;
    assert_eq!(error["topic"], topic.as_str(), "error {error}");
    ping_pong(broker, &mut client, &welcome.session, &worker.topic("ping")).await;
}

async fn backend_down_gives_backend_unavailable(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let nobody = format!("http://127.0.0.1:{}/hook", free_port());
    let worker = Worker::start(&config_with(&broker, &nobody, "1s")).await;
    expect_failure(&broker, &worker, "backend_unavailable").await;
}

async fn slow_backend_gives_backend_timeout(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let backend = Backend::start(|_| {
        Answer::Delayed(
            Duration::from_secs(3),
            Box::new(Answer::Json(json!({"data": "too late"}))),
        )
    });
    let worker = Worker::start(&config_with(&broker, &backend.url(), "300ms")).await;
    expect_failure(&broker, &worker, "backend_timeout").await;
}

async fn html_answer_gives_backend_error(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let backend = Backend::start(|_| Answer::Raw {
        status: 200,
        content_type: "text/html",
        body: "<html><body>Welcome to nginx!</body></html>",
    });
    let worker = Worker::start(&config_with(&broker, &backend.url(), "1s")).await;
    expect_failure(&broker, &worker, "backend_error").await;
}

async fn status_500_gives_backend_error(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let backend = Backend::start(|_| Answer::Raw {
        status: 500,
        content_type: "application/json",
        body: r#"{"data": "internal error"}"#,
    });
    let worker = Worker::start(&config_with(&broker, &backend.url(), "1s")).await;
    expect_failure(&broker, &worker, "backend_error").await;
}
