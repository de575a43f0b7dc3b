//! Whitelist patterns and how backends change them: `*` is the only wildcard, overlapping
//! patterns deliver once, `add`/`remove` apply to every session a message reaches, and delivery
//! is checked against the whitelist as it is after the changes.

use serde_json::json;

use crate::broker::{expect_nothing_before_fence, settle, unique, BrokerKind, TestBroker};
use crate::worker::Worker;

for_both_brokers!(
    wildcard_escaping_question_mark_and_brackets_match_only_themselves,
    overlapping_patterns_deliver_once,
    remove_revokes_a_granted_pattern,
    remove_deletes_only_exact_pattern_strings,
    whitelist_change_on_shared_channel_applies_to_every_session_reached,
    delivery_is_checked_against_the_whitelist_after_the_changes,
);

async fn wildcard_escaping_question_mark_and_brackets_match_only_themselves(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, welcome) = worker.session().await;
    let direct = welcome.direct_topic();
    let base = unique("esc");
    let question = format!("{base}.a?b");
    let brackets = format!("{base}.a[bc]");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &direct).await;
    backend
        .publish(
            &direct,
            &json!({"add": [question, brackets], "data": "granted"}),
        )
        .await;
    client.expect(&direct, json!("granted")).await;
    settle(&mut backend, &mut client, &question).await;
    settle(&mut backend, &mut client, &brackets).await;

    // What a Redis glob or a regex would match, but Rohrpost must not.
    for lookalike in ["axb", "ab", "ac", "ab]", "a[b", "a?bc", "a[bc]x"] {
        let channel = format!("{base}.{lookalike}");
        backend.publish(&channel, &json!({"data": lookalike})).await;
    }
    backend
        .publish(&question, &json!({"data": "question"}))
        .await;
    backend
        .publish(&brackets, &json!({"data": "brackets"}))
        .await;
    client.expect(&question, json!("question")).await;
    client.expect(&brackets, json!("brackets")).await;
    expect_nothing_before_fence(&mut backend, &mut client, &direct).await;

    // The same rule for what the client may publish.
    for lookalike in ["axb", "ac"] {
        client
            .publish(&format!("{base}.{lookalike}"), json!(1))
            .await;
        client.expect_error("not_whitelisted").await;
    }
    let mut from_clients = broker.subscribe(&question).await;
    client.publish(&question, json!("literal")).await;
    assert_eq!(from_clients.next_json().await["data"], "literal");
}

async fn overlapping_patterns_deliver_once(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, welcome) = worker.session().await;
    let direct = welcome.direct_topic();
    let base = worker.topic("anonym");
    let topic = format!("{base}.a.b");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &direct).await;
    let add = json!({
        "add": [
            format!("{base}.*"),
            format!("{base}.a.*"),
            topic,
            format!("{}.a.b", worker.pattern("anonym")),
        ],
        "data": "granted",
    });
    backend.publish(&direct, &add).await;
    client.expect(&direct, json!("granted")).await;
    settle(&mut backend, &mut client, &topic).await;

    backend.publish(&topic, &json!({"data": "once"})).await;
    client.expect(&topic, json!("once")).await;
    expect_nothing_before_fence(&mut backend, &mut client, &direct).await;
}

async fn remove_revokes_a_granted_pattern(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, welcome) = worker.session().await;
    let direct = welcome.direct_topic();
    let members = worker.topic("members");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &direct).await;
    let granted = worker.pattern("members");
    backend.publish(&direct, &json!({"add": [granted]})).await;
    settle(&mut backend, &mut client, &members).await;

    backend
        .publish(&direct, &json!({"remove": [granted], "data": "logged out"}))
        .await;
    client.expect(&direct, json!("logged out")).await;

    backend
        .publish(&members, &json!({"data": "too late"}))
        .await;
    expect_nothing_before_fence(&mut backend, &mut client, &direct).await;
    client.publish(&members, json!("still here?")).await;
    client.expect_error("not_whitelisted").await;
}

async fn remove_deletes_only_exact_pattern_strings(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, welcome) = worker.session().await;
    let direct = welcome.direct_topic();
    let topic = worker.topic("anonym");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &direct).await;

    // Neither a topic the pattern matches nor a similar pattern removes `anonym.*`.
    let pattern = worker.pattern("anonym");
    let similar = [
        topic.clone(),
        format!("{pattern}*"),
        pattern.trim_end_matches('*').to_owned(),
        "anonym.*".to_owned(),
        "*".to_owned(),
    ];
    let remove = json!({"remove": similar, "data": "removed"});
    backend.publish(&direct, &remove).await;
    client.expect(&direct, json!("removed")).await;
    settle(&mut backend, &mut client, &topic).await;
    let mut from_clients = broker.subscribe(&topic).await;
    client.publish(&topic, json!("still allowed")).await;
    assert_eq!(from_clients.next_json().await["data"], "still allowed");
}

async fn whitelist_change_on_shared_channel_applies_to_every_session_reached(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut alice, _) = worker.session().await;
    let (mut bob, _) = worker.session().await;
    let shared = worker.topic("anonym");
    let club = worker.topic("club");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut alice, &shared).await;
    settle(&mut backend, &mut bob, &shared).await;

    backend
        .publish(&shared, &json!({"add": [format!("{club}.*")]}))
        .await;
    // No data: nothing is delivered for the change itself.
    let lobby = format!("{club}.lobby");
    settle(&mut backend, &mut alice, &lobby).await;
    settle(&mut backend, &mut bob, &lobby).await;
}

async fn delivery_is_checked_against_the_whitelist_after_the_changes(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut client, _) = worker.session().await;
    let channel = worker.topic("anonym");
    let club = worker.topic("club");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &channel).await;

    let welcome_topic = format!("{club}.welcome");
    let grant = json!({"add": [format!("{club}.*")], "topic": welcome_topic, "data": "hi"});
    backend.publish(&channel, &grant).await;
    client.expect(&welcome_topic, json!("hi")).await;
    settle(&mut backend, &mut client, &welcome_topic).await;

    let revoke = json!({"remove": [worker.pattern("anonym")], "data": "bye"});
    backend.publish(&channel, &revoke).await;
    // `anonym.*` is gone, so "bye" on an anonym channel is not delivered; the club still is.
    expect_nothing_before_fence(&mut backend, &mut client, &welcome_topic).await;
}
