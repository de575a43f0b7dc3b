//! Resuming sessions with `{"hello": 1, "resume": token}`: a genuine token restores the session
//! from its record in the broker on any worker sharing the secret; any other token gives a new
//! session, never someone else's.

use serde_json::json;

use crate::broker::{settle, BrokerKind, TestBroker};
use crate::client::Welcome;
use crate::worker::{Worker, WorkerConfig};

for_both_brokers!(
    resume_on_another_worker_restores_whitelist_and_data,
    resume_with_forged_token_gives_fresh_session,
    resume_with_altered_token_of_another_session_gives_fresh_session,
    resume_with_token_of_another_secret_gives_fresh_session,
    resume_of_unknown_session_gives_fresh_session,
    resume_after_the_session_expired_gives_fresh_session,
);

/// Asserts that `welcome` is a new session of `worker`, unlike each of `others`.
fn assert_fresh(worker: &Worker, welcome: &Welcome, others: &[&str]) {
    assert!(!welcome.resumed, "a new session, not resumed: {welcome:?}");
    for other in others {
        assert_ne!(welcome.session, *other, "never another session's id");
    }
    assert_eq!(welcome.whitelist, worker.config().default_whitelist);
}

async fn resume_on_another_worker_restores_whitelist_and_data(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig::on(&broker);
    let first = Worker::start(&config).await;
    let second = Worker::start(&config).await;
    let members_pattern = config.pattern("members");
    let (mut client, welcome) = first.session().await;
    let direct = welcome.direct_topic();
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &direct).await;
    let grant = json!({
        "add": [members_pattern],
        "sessionData": {"user": "ada"},
        "data": "logged in",
    });
    backend.publish(&direct, &grant).await;
    client.expect(&direct, json!("logged in")).await;
    backend
        .session_record(&welcome.session, |r| {
            r.to_string().contains(&members_pattern)
        })
        .await;
    client.close().await;

    let mut client = second.connect().await;
    let resumed = client.resume(&welcome.resume).await;
    assert!(resumed.resumed, "resumed: {resumed:?}");
    assert_eq!(resumed.session, welcome.session);
    assert!(
        resumed.whitelist.contains(&members_pattern),
        "whitelist restored: {:?}",
        resumed.whitelist
    );

    let members = config.topic("members");
    let mut from_clients = broker.subscribe(&members).await;
    client.publish(&members, json!("back again")).await;
    let payload = from_clients.next_json().await;
    assert_eq!(payload["sessionId"], welcome.session.as_str());
    assert_eq!(payload["sessionData"], json!({"user": "ada"}));
    settle(&mut backend, &mut client, &direct).await;
}

async fn resume_with_forged_token_gives_fresh_session(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (_owner, owner) = worker.session().await;
    let forged = [
        "forged".to_owned(),
        String::new(),
        format!("{}.", owner.session),
        format!("{}.{}", owner.session, "0".repeat(64)),
        owner.session.clone(),
    ];
    for token in forged {
        let mut client = worker.connect().await;
        let welcome = client.resume(&token).await;
        assert_fresh(&worker, &welcome, &[&owner.session]);
    }
}

async fn resume_with_altered_token_of_another_session_gives_fresh_session(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (_alice, alice) = worker.session().await;
    let (_bob, bob) = worker.session().await;
    let (_, bob_tag) = bob.resume.rsplit_once('.').expect("a token is <id>.<tag>");
    let flip = |s: &str, at: usize| -> String {
        let mut bytes = s.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).expect("hex stays ASCII")
    };
    let altered = [
        // Bob's signature on Alice's id.
        format!("{}.{bob_tag}", alice.session),
        // Bob's token with one digit of the id changed.
        flip(&bob.resume, 0),
        // Bob's token with one digit of the signature changed.
        flip(&bob.resume, bob.resume.len() - 1),
        // Bob's token in upper case.
        bob.resume.to_uppercase(),
    ];
    for token in altered {
        let mut client = worker.connect().await;
        let welcome = client.resume(&token).await;
        assert_fresh(&worker, &welcome, &[&alice.session, &bob.session]);
    }
}

async fn resume_with_token_of_another_secret_gives_fresh_session(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig::on(&broker);
    let ours = Worker::start(&config).await;
    let theirs = Worker::start(&WorkerConfig {
        secret: "another-secret".to_owned(),
        ..config
    })
    .await;
    let (_owner, owner) = theirs.session().await;
    let mut client = ours.connect().await;
    let welcome = client.resume(&owner.resume).await;
    assert_fresh(&ours, &welcome, &[&owner.session]);
}

async fn resume_of_unknown_session_gives_fresh_session(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let (mut owner_client, owner) = worker.session().await;
    let direct = owner.direct_topic();
    let mut backend = broker.connect().await;
    // A change of session data is stored at once: the record certainly exists before it is dropped.
    settle(&mut backend, &mut owner_client, &direct).await;
    let change = json!({"sessionData": {"user": "ada"}, "data": "stored"});
    backend.publish(&direct, &change).await;
    owner_client.expect(&direct, json!("stored")).await;
    backend
        .session_record(&owner.session, |r| r.to_string().contains("ada"))
        .await;
    // As if it had expired (the owner stays connected, so it is not written again soon).
    backend.delete_session(&owner.session).await;

    let mut client = worker.connect().await;
    let welcome = client.resume(&owner.resume).await;
    assert_fresh(&worker, &welcome, &[&owner.session]);
}

/// A resume token is worth nothing once its session has expired: `sessions.ttl` after the last
/// connection ended, the record is gone from the broker's store and the token gives a new session.
async fn resume_after_the_session_expired_gives_fresh_session(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut config = WorkerConfig::on(&broker);
    config.session_ttl = "2s".to_owned();
    let worker = Worker::start(&config).await;
    let (mut client, owner) = worker.session().await;
    let direct = owner.direct_topic();
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut client, &direct).await;
    backend
        .session_record(&owner.session, |r| r.is_object())
        .await;

    // Within the TTL the token still resumes the session...
    drop(client);
    actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut early = worker.connect().await;
    let welcome = early.resume(&owner.resume).await;
    assert!(welcome.resumed, "resumed within the TTL: {welcome:?}");
    assert_eq!(welcome.session, owner.session);
    drop(early);

    // ...and past it, with nobody connected to refresh the record, it is worth nothing.
    actix_rt::time::sleep(std::time::Duration::from_millis(3_500)).await;
    let mut late = worker.connect().await;
    let welcome = late.resume(&owner.resume).await;
    assert_fresh(&worker, &welcome, &[&owner.session]);
}
