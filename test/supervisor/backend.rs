//! The backend's side, over the shared Redis: publishing to sessions and topics, granting a
//! session patterns and data, and watching what clients publish.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::client::{Client, Welcome};
use crate::common::WAIT;
use crate::process::REDIS_URL;

/// How often a grant is published again while its session does not receive yet.
const GRANT_EVERY: Duration = Duration::from_millis(200);
/// How long a session may take to receive on its direct topic after its welcome.
const GRANT_WAIT: Duration = Duration::from_secs(10);

/// `prefix` and 16 random hex digits: a namespace no other test run uses on the shared Redis.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// A Redis connection for publishing.
#[derive(Clone)]
pub struct Backend {
    conn: MultiplexedConnection,
}

impl Backend {
    pub async fn connect() -> Backend {
        let client = redis::Client::open(REDIS_URL).expect("Redis URL");
        let conn = actix_rt::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .unwrap_or_else(|_| panic!("Redis at {REDIS_URL}: no connection within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("Redis at {REDIS_URL}: {e}"));
        Backend { conn }
    }

    /// PUBLISHes a backend message on `channel`.
    pub async fn publish(&mut self, channel: &str, message: &Value) {
        let publish = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message.to_string())
            .clone();
        actix_rt::time::timeout(WAIT, publish.query_async::<i64>(&mut self.conn))
            .await
            .unwrap_or_else(|_| panic!("PUBLISH {channel}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("PUBLISH {channel}: {e}"));
    }

    /// Grants the session `pattern` and `session_data` on its direct topic, as a login backend
    /// does, and waits until the session has it. The session subscribes to its direct topic just
    /// after its welcome, so the grant is published again until the client receives its data.
    pub async fn grant(
        &mut self,
        client: &mut Client,
        welcome: &Welcome,
        pattern: &str,
        session_data: Value,
    ) {
        let topic = welcome.direct_topic();
        let grant = json!({"add": [pattern], "sessionData": session_data, "data": "granted"});
        let deadline = tokio::time::Instant::now() + GRANT_WAIT;
        loop {
            self.publish(&topic, &grant).await;
            if client.wait_for_topic(&topic, GRANT_EVERY).await == Some(json!("granted")) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {} did not receive its grant within {GRANT_WAIT:?}",
                welcome.session
            );
        }
    }
}

/// A SUBSCRIBE to one channel, as a backend listening for client messages.
pub struct Subscriber {
    payloads: mpsc::UnboundedReceiver<Value>,
}

impl Subscriber {
    /// Subscribes to `channel` on the shared Redis; the subscription is live when this returns.
    pub async fn to(channel: &str) -> Subscriber {
        Self::on(REDIS_URL, channel).await
    }

    /// Subscribes to `channel` on the Redis at `url`; the subscription is live when this returns.
    pub async fn on(url: &str, channel: &str) -> Subscriber {
        let client = redis::Client::open(url).expect("Redis URL");
        let mut pubsub = actix_rt::time::timeout(WAIT, client.get_async_pubsub())
            .await
            .expect("Redis pub/sub connection within the time limit")
            .expect("Redis pub/sub connection");
        actix_rt::time::timeout(WAIT, pubsub.subscribe(channel))
            .await
            .expect("SUBSCRIBE within the time limit")
            .expect("SUBSCRIBE");
        let (tx, payloads) = mpsc::unbounded_channel();
        let mut messages = pubsub.into_on_message();
        actix_rt::spawn(async move {
            while let Some(message) = messages.next().await {
                let payload: String = message.get_payload().expect("a text payload");
                let value = serde_json::from_str(&payload)
                    .unwrap_or_else(|e| panic!("client message is not JSON ({e}): {payload}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Subscriber { payloads }
    }

    /// The next payload, if one comes within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Value> {
        actix_rt::time::timeout(within, self.payloads.recv())
            .await
            .ok()
            .flatten()
    }
}
