//! 0.x sessions: their ids as the original took them, their data as backends written for the
//! original expect it, and the original's session records (`session:<id>` hashes) read when a
//! 0.x session starts and written back, so that a rolling migration on one Redis keeps every
//! user's whitelist and data.

use serde_json::{json, Value};

use crate::backend::{unique, Backend, Subscriber};
use crate::client_0x::{connect_as_0x, LegacyClient};
use crate::common::WAIT;
use crate::process::{Supervisor, SETTLE};
use crate::store::OriginalStore;
use crate::{client_id, legacy};

/// Publishes `data` on `topic` from `client` and asserts that the server refuses it.
async fn assert_not_whitelisted(client: &mut LegacyClient, topic: &str) {
    client.publish(topic, json!(1)).await.expect("sent");
    let error = client.wait_for_topic("rohrpost.error", WAIT).await;
    assert_eq!(
        error.as_ref().map(|e| &e["code"]),
        Some(&json!("not_whitelisted")),
        "{topic}: {error:?}"
    );
}

/// What a backend subscribed to `topic` receives when `client` publishes `data` there.
async fn published_by(client: &mut LegacyClient, topic: &str, data: Value) -> Value {
    let mut backend = Subscriber::to(topic).await;
    client.publish(topic, data).await.expect("sent");
    backend
        .next_within(WAIT)
        .await
        .unwrap_or_else(|| panic!("the client's message on {topic}"))
}

/// Grants session `id` the patterns `add` and `session_data` on its direct topic, as a login
/// backend does, and waits until its client has the answer.
async fn grant(client: &mut LegacyClient, id: &str, add: &[String], session_data: Value) {
    let direct = format!("rohrpost.client.{id}");
    let grant = json!({"add": add, "sessionData": session_data, "data": "granted"});
    Backend::connect().await.publish(&direct, &grant).await;
    assert_eq!(
        client.wait_for_topic(&direct, WAIT).await,
        Some(json!("granted"))
    );
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

#[actix_rt::test]
async fn a_0x_session_starts_from_the_originals_record_when_rohrpost_has_none() {
    let (sup, _) = Supervisor::start_one(legacy()).await;
    let id = client_id();
    let vip = unique("vip");
    let mut original = OriginalStore::connect().await;
    let whitelist = format!("{vip}.*");
    original
        .save(
            &id,
            &[
                ("whitelist", &whitelist),
                ("created", "1371024000000"),
                ("data_name", "ada"),
            ],
        )
        .await;

    let mut client = connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("the 0.x session");
    // The record's whitelist is its whitelist: a topic only it allows reaches the client ...
    let news = format!("{vip}.news");
    let message = json!({"data": "for members only"});
    Backend::connect().await.publish(&news, &message).await;
    assert_eq!(
        client.wait_for_topic(&news, WAIT).await,
        Some(message["data"].clone())
    );
    // ... and the default one is not its own.
    assert_not_whitelisted(&mut client, &unique("anonym.")).await;
    // The record's data is its data.
    let payload = published_by(&mut client, &format!("{vip}.talk"), json!("hi")).await;
    assert_eq!(payload["sessionData"], json!({"name": "ada"}));
}

#[actix_rt::test]
async fn a_0x_sessions_record_is_written_back_in_the_originals_form() {
    let (sup, _) = Supervisor::start_one(legacy()).await;
    let id = client_id();
    let mut client = connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("a 0.x session");
    let extra = unique("extra");
    let data = json!({"name": "bob", "level": 2});
    grant(&mut client, &id, &[format!("{extra}.*")], data).await;

    let mut original = OriginalStore::connect().await;
    let hash = original
        .wait_for(&id, WAIT, "written with the grant", |hash| {
            hash.get("whitelist").is_some_and(|w| w.contains(&extra))
        })
        .await;
    assert_eq!(hash["whitelist"], format!("anonym.*|{extra}.*"));
    assert_eq!(hash["data_name"], "bob");
    assert_eq!(hash["data_level"], "2");
    assert!(hash["created"].parse::<u64>().is_ok(), "{hash:?}");
    let ttl = original.ttl_ms(&id).await;
    assert!(ttl > 0, "session:{id} has a TTL: {ttl}");
}

#[actix_rt::test]
async fn a_change_a_0x_server_made_to_the_record_wins_over_rohrposts_older_one() {
    let (sup, _) = Supervisor::start_one(legacy()).await;
    let id = client_id();
    let mut client = connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("a 0.x session");
    let (extra, late) = (unique("extra"), unique("late"));
    grant(
        &mut client,
        &id,
        &[format!("{extra}.*")],
        json!({"name": "bob"}),
    )
    .await;
    let mut original = OriginalStore::connect().await;
    original
        .wait_for(&id, WAIT, "written with the grant", |hash| {
            hash.get("whitelist").is_some_and(|w| w.contains(&extra))
        })
        .await;
    client.close().await;
    sup.wait_for("the session gone", |h| h.workers[0].sessions == 0)
        .await;

    // The client moves to a 0.x server of the same Redis, which gives it other patterns.
    let moved = format!("anonym.*|{late}.*");
    original.save(&id, &[("whitelist", &moved)]).await;

    // Back on Rohrpost, it has what the 0.x server gave it, not what Rohrpost last knew.
    let mut back = connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("the 0.x session back");
    let news = format!("{late}.news");
    let message = json!({"data": "granted on a 0.x server"});
    Backend::connect().await.publish(&news, &message).await;
    assert_eq!(
        back.wait_for_topic(&news, WAIT).await,
        Some(message["data"].clone())
    );
    assert_not_whitelisted(&mut back, &format!("{extra}.x")).await;
    let payload = published_by(&mut back, &format!("{late}.talk"), json!("hi")).await;
    assert_eq!(payload["sessionData"], json!({"name": "bob"}));
}
