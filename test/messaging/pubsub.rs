//! Client ↔ backend messaging through the broker: what clients publish, what backends publish,
//! and which of it reaches whom. The first tests port the original Rohrpost suite.

use std::time::Duration;

use serde_json::json;

use crate::broker::{expect_nothing_before_fence, settle, unique, BrokerKind, TestBroker};
use crate::worker::Worker;

/// How long "nothing was published" is watched for.
const QUIET: Duration = Duration::from_millis(300);

for_both_brokers!(
    ping_from_client_reaches_backend_and_pong_comes_back,
    null_data_round_trips,
    publish_to_topic_not_on_whitelist_is_refused,
    login_over_the_broker_grants_members_topics,
    session_data_from_backend_travels_with_client_messages,
    backend_topic_field_renames_delivery_when_whitelisted,
    client_payloads_and_non_objects_on_the_broker_never_reach_clients,
    direct_topic_reaches_only_its_session_whatever_the_whitelist,
);

async fn ping_from_client_reaches_backend_and_pong_comes_back(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, welcome) = worker.session().await;
    let topic = worker.topic("ping");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &topic).await;
    let mut from_clients = broker.subscribe(&topic).await;

    client.publish(&topic, json!({"ping": 1})).await;
    let payload = from_clients.next_json().await;
    assert_eq!(
        payload,
        json!({
            "topic": topic,
            "data": {"ping": 1},
            "sessionId": welcome.session,
            "sessionData": null,
            "fromClient": true,
        })
    );

    backend.publish(&topic, &json!({"data": {"pong": 1}})).await;
    // Next, not after an echo of the client's own ping: those never reach clients.
    client.expect(&topic, json!({"pong": 1})).await;
}

async fn null_data_round_trips(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, _) = worker.session().await;
    let topic = worker.topic("anonym");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &topic).await;
    let mut from_clients = broker.subscribe(&topic).await;

    client.publish(&topic, json!(null)).await;
    let payload = from_clients.next_json().await;
    assert!(
        payload.as_object().is_some_and(|p| p.contains_key("data")) && payload["data"].is_null(),
        "the payload carries \"data\": null, got {payload}"
    );

    backend.publish(&topic, &json!({"data": null})).await;
    client.expect(&topic, json!(null)).await;
}

async fn publish_to_topic_not_on_whitelist_is_refused(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, _) = worker.session().await;
    let topic = unique("secret");
    let mut from_clients = broker.subscribe(&topic).await;

    client.publish(&topic, json!("let me in")).await;
    let error = client.expect_error("not_whitelisted").await;
    assert_eq!(error["topic"], topic.as_str(), "error {error}");
    from_clients.expect_quiet(QUIET).await;
}

async fn login_over_the_broker_grants_members_topics(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, welcome) = worker.session().await;
    let direct = welcome.direct_topic();
    let members = worker.topic("members");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &direct).await;

    client.publish(&members, json!("too early")).await;
    client.expect_error("not_whitelisted").await;

    backend
        .publish(&direct, &json!({"add": [worker.pattern("members")]}))
        .await;
    settle(&mut backend, &mut client, &members).await;
    backend
        .publish(&members, &json!({"data": {"news": "members only"}}))
        .await;
    client
        .expect(&members, json!({"news": "members only"}))
        .await;

    let mut from_clients = broker.subscribe(&members).await;
    client.publish(&members, json!("now allowed")).await;
    let payload = from_clients.next_json().await;
    assert_eq!(payload["data"], "now allowed", "payload {payload}");
}

async fn session_data_from_backend_travels_with_client_messages(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, welcome) = worker.session().await;
    let direct = welcome.direct_topic();
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &direct).await;

    let session_data = json!({"user": "ada", "roles": ["admin"]});
    backend
        .publish(
            &direct,
            &json!({"sessionData": session_data, "data": "logged in"}),
        )
        .await;
    client.expect(&direct, json!("logged in")).await;

    let topic = worker.topic("anonym");
    let mut from_clients = broker.subscribe(&topic).await;
    client.publish(&topic, json!(1)).await;
    let payload = from_clients.next_json().await;
    assert_eq!(payload["sessionData"], session_data, "payload {payload}");

    // Replaced, not merged.
    backend
        .publish(
            &direct,
            &json!({"sessionData": {"lang": "de"}, "data": "replaced"}),
        )
        .await;
    client.expect(&direct, json!("replaced")).await;
    client.publish(&topic, json!(2)).await;
    let payload = from_clients.next_json().await;
    assert_eq!(
        payload["sessionData"],
        json!({"lang": "de"}),
        "payload {payload}"
    );
}

async fn backend_topic_field_renames_delivery_when_whitelisted(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, _) = worker.session().await;
    let channel = worker.topic("anonym");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &channel).await;

    let renamed = format!("{channel}.renamed");
    backend
        .publish(&channel, &json!({"topic": renamed, "data": 1}))
        .await;
    client.expect(&renamed, json!(1)).await;

    let secret = unique("secret");
    backend
        .publish(&channel, &json!({"topic": secret, "data": 2}))
        .await;
    expect_nothing_before_fence(&mut backend, &mut client, &channel).await;
}

async fn client_payloads_and_non_objects_on_the_broker_never_reach_clients(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, welcome) = worker.session().await;
    let channel = worker.topic("anonym");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &channel).await;

    let client_payload = json!({
        "topic": channel,
        "data": "echo?",
        "sessionId": welcome.session,
        "sessionData": null,
        "fromClient": true,
    });
    for payload in [
        client_payload.to_string(),
        json!([{"data": 1}]).to_string(),
        json!("a string").to_string(),
        json!(42).to_string(),
        json!(null).to_string(),
        "not json at all".to_owned(),
    ] {
        backend.publish_raw(&channel, &payload).await;
    }
    expect_nothing_before_fence(&mut backend, &mut client, &channel).await;
}

async fn direct_topic_reaches_only_its_session_whatever_the_whitelist(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut alice, alice_welcome) = worker.session().await;
    let (mut bob, bob_welcome) = worker.session().await;
    let alice_direct = alice_welcome.direct_topic();
    let bob_direct = bob_welcome.direct_topic();
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut alice, &alice_direct).await;
    settle(&mut backend, &mut bob, &bob_direct).await;

    let secret = unique("secret");
    backend
        .publish(
            &alice_direct,
            &json!({"topic": secret, "data": "for alice"}),
        )
        .await;
    alice.expect(&secret, json!("for alice")).await;
    backend
        .publish(&alice_direct, &json!({"data": "on the direct topic"}))
        .await;
    alice
        .expect(&alice_direct, json!("on the direct topic"))
        .await;

    expect_nothing_before_fence(&mut backend, &mut bob, &bob_direct).await;
}
