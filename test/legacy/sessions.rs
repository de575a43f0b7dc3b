//! 0.x sessions: their ids as the original took them, and their data as backends written for
//! the original expect it.

use serde_json::{json, Value};

use crate::backend::{unique, Backend, Subscriber};
use crate::client_0x::{connect_as_0x, LegacyClient};
use crate::common::WAIT;
use crate::process::{Supervisor, SETTLE};
use crate::{client_id, legacy};

/// What a backend subscribed to `topic` receives when `client` publishes `data` there.
async fn published_by(client: &mut LegacyClient, topic: &str, data: Value) -> Value {
    let mut backend = Subscriber::to(topic).await;
    client.publish(topic, data).await.expect("sent");
    backend
        .next_within(WAIT)
        .await
        .unwrap_or_else(|| panic!("the client's message on {topic}"))
}

#[actix_rt::test]
async fn a_new_0x_sessions_data_reaches_backends_as_an_empty_object() {
    let (sup, _) = Supervisor::start_one(legacy()).await;
    let id = client_id();
    let mut client = connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("a 0.x session");
    let payload = published_by(&mut client, &unique("anonym."), json!({"text": "hi"})).await;
    assert_eq!(payload["sessionData"], json!({}));
    assert_eq!(payload["sessionId"], json!(id));
    assert_eq!(payload["data"], json!({"text": "hi"}));
    assert_eq!(payload["fromClient"], json!(true));
}

#[actix_rt::test]
async fn only_the_first_dot_of_a_0x_id_is_removed() {
    let (sup, _) = Supervisor::start_one(legacy()).await;
    let base = client_id();
    let id = format!("{base}b.c");
    let mut client = connect_as_0x(sup.ports.main, &format!("{base}.b.c"), &id, SETTLE)
        .await
        .expect("a 0.x session named with dots");
    let direct = format!("rohrpost.client.{id}");
    let message = json!({"data": "to the session with one dot left"});
    Backend::connect().await.publish(&direct, &message).await;
    assert_eq!(
        client.wait_for_topic(&direct, WAIT).await,
        Some(message["data"].clone())
    );
}

#[actix_rt::test]
async fn a_0x_id_that_is_also_json_is_still_an_id() {
    let (sup, _) = Supervisor::start_one(legacy()).await;
    // `Math.random().toString(36)` now and then makes up an id of digits only.
    let id = format!("{}", rand::random_range(10_000_000_000u64..99_999_999_999));
    connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("a 0.x session named with digits");
}
