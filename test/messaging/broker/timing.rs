//! Pub/sub timing made deterministic: waiting until a session receives on a channel
//! ([`settle`]), proving that nothing else arrived ([`fence`]), and the original round trip as a
//! check that a session works ([`ping_pong`]).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{BrokerClient, TestBroker};
use crate::client::{Client, Event};

/// How often [`settle`] publishes a probe while the session does not receive yet.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long a session's subscription may take to become live.
const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Waits until `client` receives what is published on `channel` (which its session must
/// receive: whitelisted, or its direct topic), then discards everything up to a fence.
///
/// Probes `{"data": {"probe": id}}` are published every [`PROBE_EVERY`] until one of them
/// arrives on `channel`; the worker's subscription is live from then on. Probes and fences of
/// earlier settles (of other sessions on a shared channel) are skipped on the way. A fence
/// published after the last probe, on the same channel, arrives after every probe, so the
/// client is left with nothing pending.
pub async fn settle(broker: &mut BrokerClient, client: &mut Client, channel: &str) {
    settle_within(broker, client, channel, SETTLE_WAIT).await;
}

/// [`settle`], allowing the subscription `wait` to become live.
pub async fn settle_within(
    broker: &mut BrokerClient,
    client: &mut Client,
    channel: &str,
    wait: Duration,
) {
    let deadline = Instant::now() + wait;
    let id: u64 = rand::random();
    loop {
        broker
            .publish(channel, &json!({"data": {"probe": id}}))
            .await;
        match client.next_event(PROBE_EVERY).await {
            Some(Event::Text(text)) => {
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                let data = &value["data"];
                if value["topic"] == channel && data["probe"] == id {
                    break;
                }
                // Position notices are the log's business, not the subscription's: a broker
                // that came back empty (a new epoch) says so with one.
                if value["topic"] == "rohrpost.pos" {
                    continue;
                }
                assert!(
                    data.get("probe").is_some() || data.get("fence").is_some(),
                    "expected a probe on {channel}, got {text}"
                );
            }
            Some(Event::Closed(reason)) => {
                panic!("websocket closed ({reason:?}) while waiting for {channel}")
            }
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "the session did not receive on {channel} within {wait:?}"
        );
    }
    fence(broker, &mut [client], channel).await;
}

/// Publishes one marker on `channel` and reads each client up to it, allowing only probes and
/// earlier markers before it: when sessions share a channel, settling one leaves its probes and
/// marker with the others (see [`settle`]). Every client must receive the marker.
pub async fn fence(broker: &mut BrokerClient, clients: &mut [&mut Client], channel: &str) {
    let marker: u64 = rand::random();
    broker
        .publish(channel, &json!({"data": {"fence": marker}}))
        .await;
    let reads = clients.iter_mut().map(|client| async move {
        loop {
            let (topic, data) = client.recv().await;
            if data["fence"] == marker {
                assert_eq!(topic, channel, "fence topic");
                return;
            }
            if topic == "rohrpost.pos" {
                continue; // see settle_within
            }
            assert!(
                data.get("probe").is_some() || data.get("fence").is_some(),
                "only probes and earlier fences may come before the fence, got {topic} {data}"
            );
        }
    });
    futures_util::future::join_all(reads).await;
}

/// Publishes `{"data": {"fence": marker}}` on `channel` and asserts that it is the very next
/// thing `client` receives: whatever was published before it did not reach the client.
pub async fn expect_nothing_before_fence(
    broker: &mut BrokerClient,
    client: &mut Client,
    channel: &str,
) {
    let marker: u64 = rand::random();
    broker
        .publish(channel, &json!({"data": {"fence": marker}}))
        .await;
    client.expect(channel, json!({"fence": marker})).await;
}

/// The original Rohrpost round trip, as a check that a session works: the client publishes
/// `"ping"` on `topic` (a fresh, whitelisted one), the backend subscribed to it sees the client
/// payload, and its `"pong"` comes back to the client (and nothing before it: not the client's
/// own ping).
pub async fn ping_pong(broker: &TestBroker, client: &mut Client, session_id: &str, topic: &str) {
    let mut backend = broker.connect().await;
    settle(&mut backend, client, topic).await;
    let mut seen = broker.subscribe(topic).await;
    client.publish(topic, json!("ping")).await;
    let payload = seen.next_json().await;
    assert_eq!(payload["topic"], topic, "payload {payload}");
    assert_eq!(payload["data"], "ping", "payload {payload}");
    assert_eq!(payload["sessionId"], session_id, "payload {payload}");
    assert_eq!(payload["fromClient"], true, "payload {payload}");
    backend.publish(topic, &json!({"data": "pong"})).await;
    client.expect(topic, json!("pong")).await;
}
