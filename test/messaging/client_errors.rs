//! Invalid client messages after the handshake: each is answered with its `rohrpost.error`
//! code and the session stays usable.
//!
//! A message that passes a check is told apart from one that fails it by sending it on a topic
//! that is not whitelisted: getting `not_whitelisted` (and not the error under test) proves it
//! got past that check.

use serde_json::json;

use crate::broker::{unique, BrokerKind, TestBroker};
use crate::client::Client;
use crate::worker::{Worker, WorkerConfig};

for_both_brokers!(
    invalid_json_gives_invalid_json,
    non_object_or_topicless_message_gives_invalid_message,
    bad_topic_gives_invalid_topic,
    message_over_max_message_bytes_gives_too_large,
);

/// Asserts that the session still answers: a message on a forbidden topic is refused as such.
async fn still_usable(client: &mut Client) {
    client.publish(&unique("secret"), json!(1)).await;
    client.expect_error("not_whitelisted").await;
}

async fn invalid_json_gives_invalid_json(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, _) = worker.session().await;
    for text in ["{not json", "{\"topic\": \"anonym.x\"", "nope"] {
        client.send_text(text).await;
        client.expect_error("invalid_json").await;
    }
    still_usable(&mut client).await;
}

async fn non_object_or_topicless_message_gives_invalid_message(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, _) = worker.session().await;
    let anonym = worker.topic("anonym");
    for message in [
        json!([{"topic": anonym, "data": 1}]),
        json!(anonym),
        json!(42),
        json!(null),
        json!({"data": 1}),
        json!({"topic": 7, "data": 1}),
        json!({"topic": null, "data": 1}),
        json!({"topic": [anonym], "data": 1}),
    ] {
        client.send_json(&message).await;
        let error = client.expect_error("invalid_message").await;
        assert!(error.get("topic").is_none(), "no topic to name: {error}");
    }
    still_usable(&mut client).await;
}

async fn bad_topic_gives_invalid_topic(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        max_topic_len: 64,
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let (mut client, _) = worker.session().await;
    let anonym = worker.topic("anonym");
    let too_long = format!("{anonym}{}", "x".repeat(64 - anonym.len() + 1));
    let with_space = format!("{anonym} x");
    let with_newline = format!("{anonym}\n");
    for topic in ["", " ", "\t", &with_space, &with_newline, &too_long] {
        client.publish(topic, json!(1)).await;
        client.expect_error("invalid_topic").await;
    }
    // Exactly max_topic_len bytes is a valid topic (only not whitelisted).
    let longest = format!("secret.{}", "x".repeat(64 - "secret.".len()));
    client.publish(&longest, json!(1)).await;
    client.expect_error("not_whitelisted").await;
}

async fn message_over_max_message_bytes_gives_too_large(kind: BrokerKind) {
    const LIMIT: usize = 1024;
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        max_message_bytes: LIMIT,
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let (mut client, _) = worker.session().await;
    let topic = unique("secret");
    let message_of = |len: usize| {
        let frame = format!(r#"{{"topic":"{topic}","data":""}}"#);
        let padding = "x".repeat(len - frame.len());
        format!(r#"{{"topic":"{topic}","data":"{padding}"}}"#)
    };

    let over = message_of(LIMIT + 1);
    assert_eq!(over.len(), LIMIT + 1);
    client.send_text(&over).await;
    client.expect_error("too_large").await;

    let at_limit = message_of(LIMIT);
    assert_eq!(at_limit.len(), LIMIT);
    client.send_text(&at_limit).await;
    client.expect_error("not_whitelisted").await;
}
