//! The backend's side of the broker: which broker a test runs against, publishing to sessions,
//! seeing what clients publish, and knowing when a session's subscription is live.
//!
//! The messaging suite runs each test against both brokers a worker can have:
//!
//! - [`BrokerKind::Redis`]: `[broker] kind = "redis"`, the shared Redis on 127.0.0.1:6379 (or,
//!   for a test that stops it, a private `redis-server`, [`RedisServer`]);
//! - [`BrokerKind::Local`]: `[broker] kind = "local"`, the embedded broker, which the test hosts
//!   in its own process on a socket in a temporary directory ([`LocalServer`]), as the
//!   supervisor hosts it for its workers in production.
//!
//! [`TestBroker`] is the broker of one test: what its workers' configs point at, and where the
//! test connects as the backend. The test acts as the backend through:
//!
//! - [`BrokerClient`] (called [`Redis`] by the Redis-only suites `cluster` and `restarts`), which
//!   publishes backend messages and reads session records: a Redis connection, or a broker
//!   client of the crate itself on the embedded broker's socket;
//! - [`Subscription`], which sees what the worker publishes for clients (`fromClient: true`);
//! - [`settle`] and [`fence`], which make pub/sub timing deterministic: a worker subscribes after
//!   the handshake, asynchronously, so a test first waits until the session receives on a
//!   channel, and proves "nothing else arrived" by a marker that must come next.

#[path = "broker/local.rs"]
mod local;
#[path = "broker/redis_server.rs"]
mod redis_server;
#[path = "broker/test_broker.rs"]
mod test_broker;
#[path = "broker/timing.rs"]
mod timing;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use rohrpost::broker::{LoadSession, Publish, StoreSession};
use serde_json::Value;

use crate::common::WAIT;

// Each test crate that includes this module uses a different part of it.
#[allow(unused_imports)]
pub use self::{
    local::LocalServer,
    redis_server::RedisServer,
    test_broker::{BrokerAddress, BrokerKind, TestBroker},
    timing::{expect_nothing_before_fence, fence, ping_pong, settle, settle_within},
};

/// The shared Redis every Redis test but the restart tests uses.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// Key prefix of session records in Redis; the embedded broker stores them by id alone.
const SESSION_KEY: &str = "rohrpost:session:";

/// `prefix.` followed by 16 random hex digits: a topic no other test uses.
pub fn unique(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}.{n:016x}")
}

/// The test's own client of the broker, acting as the backend: it publishes and reads (or
/// drops) session records.
pub struct BrokerClient {
    conn: Conn,
}

/// The name the Redis-only suites (`cluster`, `restarts`) know [`BrokerClient`] by.
#[allow(dead_code)] // used by test/cluster.rs and test/restarts.rs
pub type Redis = BrokerClient;

enum Conn {
    Redis(MultiplexedConnection),
    /// A broker client of the crate (the worker's own kind) on the embedded broker's socket.
    Local(Box<rohrpost::broker::Broker>),
}

impl BrokerClient {
    /// A connection to the shared Redis.
    #[allow(dead_code)] // used by test/cluster.rs and test/restarts.rs
    pub async fn shared() -> BrokerClient {
        Self::connect(REDIS_URL).await
    }

    /// Connects to the Redis at `url`, waiting at most [`WAIT`].
    pub async fn connect(url: &str) -> BrokerClient {
        Self::try_connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to Redis at {url}: {e}"))
    }

    /// Connects to the Redis at `url` once; an error if it does not answer within [`WAIT`].
    pub async fn try_connect(url: &str) -> Result<BrokerClient, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let conn = actix_rt::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| format!("no connection within {WAIT:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(BrokerClient {
            conn: Conn::Redis(conn),
        })
    }

    /// Connects to the embedded broker listening on `socket`, waiting at most [`WAIT`].
    pub async fn local(socket: &Path) -> BrokerClient {
        let broker = local::connect(socket, rohrpost::broker::Discard).await;
        BrokerClient {
            conn: Conn::Local(Box::new(broker)),
        }
    }

    fn redis(&mut self) -> &mut MultiplexedConnection {
        match &mut self.conn {
            Conn::Redis(conn) => conn,
            Conn::Local(_) => panic!("this check needs Redis, not the embedded broker"),
        }
    }

    /// Publishes `payload` as is.
    pub async fn publish_raw(&mut self, channel: &str, payload: &str) {
        self.try_publish_raw(channel, payload)
            .await
            .unwrap_or_else(|e| panic!("publish on {channel}: {e}"));
    }

    /// Publishes `payload`; an error if the broker fails or does not answer within [`WAIT`].
    pub async fn try_publish_raw(&mut self, channel: &str, payload: &str) -> Result<(), String> {
        match &mut self.conn {
            Conn::Redis(conn) => {
                let cmd = redis::cmd("PUBLISH").arg(channel).arg(payload).clone();
                actix_rt::time::timeout(WAIT, cmd.query_async::<i64>(conn))
                    .await
                    .map_err(|_| format!("no answer within {WAIT:?}"))?
                    .map_err(|e| e.to_string())?;
            }
            Conn::Local(broker) => {
                let publish = Publish {
                    channel: Arc::from(channel),
                    payload: Bytes::from(payload.to_owned()),
                };
                actix_rt::time::timeout(WAIT, broker.publish.send(publish))
                    .await
                    .map_err(|_| format!("no answer within {WAIT:?}"))?
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Publishes a backend message.
    pub async fn publish(&mut self, channel: &str, message: &Value) {
        self.publish_raw(channel, &message.to_string()).await;
    }

    /// The value of `field` in the Redis hash `key`, if set (the cluster test reads the
    /// directory).
    #[allow(dead_code)] // used by test/cluster.rs
    pub async fn hget(&mut self, key: &str, field: &str) -> Option<String> {
        let cmd = redis::cmd("HGET").arg(key).arg(field).clone();
        actix_rt::time::timeout(WAIT, cmd.query_async::<Option<String>>(self.redis()))
            .await
            .unwrap_or_else(|_| panic!("HGET {key} {field}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("HGET {key} {field}: {e}"))
    }

    /// The stored record of session `id`, if there is one.
    async fn load_session(&mut self, id: &str) -> Option<String> {
        match &mut self.conn {
            Conn::Redis(conn) => {
                let key = format!("{SESSION_KEY}{id}");
                let cmd = redis::cmd("GET").arg(&key).clone();
                actix_rt::time::timeout(WAIT, cmd.query_async::<Option<String>>(conn))
                    .await
                    .unwrap_or_else(|_| panic!("GET {key}: no answer within {WAIT:?}"))
                    .unwrap_or_else(|e| panic!("GET {key}: {e}"))
            }
            Conn::Local(broker) => {
                let load = broker.load.send(LoadSession { id: Arc::from(id) });
                let record = actix_rt::time::timeout(WAIT, load)
                    .await
                    .unwrap_or_else(|_| panic!("load session {id}: no answer within {WAIT:?}"))
                    .expect("the broker client is running")
                    .unwrap_or_else(|e| panic!("load session {id}: {e}"));
                record.map(|b| String::from_utf8(b.to_vec()).expect("records are UTF-8 JSON"))
            }
        }
    }

    /// Drops the record of session `id`, as if it had expired.
    pub async fn delete_session(&mut self, id: &str) {
        match &mut self.conn {
            Conn::Redis(conn) => {
                let key = format!("{SESSION_KEY}{id}");
                let cmd = redis::cmd("DEL").arg(&key).clone();
                actix_rt::time::timeout(WAIT, cmd.query_async::<i64>(conn))
                    .await
                    .unwrap_or_else(|_| panic!("DEL {key}: no answer within {WAIT:?}"))
                    .unwrap_or_else(|e| panic!("DEL {key}: {e}"));
            }
            Conn::Local(broker) => {
                // The embedded store has no delete: a record that expires at once is gone.
                let store = broker.store.send(StoreSession {
                    id: Arc::from(id),
                    record: Bytes::from_static(b"{}"),
                    ttl: Duration::from_millis(1),
                });
                actix_rt::time::timeout(WAIT, store)
                    .await
                    .unwrap_or_else(|_| panic!("expire session {id}: no answer within {WAIT:?}"))
                    .expect("the broker client is running")
                    .unwrap_or_else(|e| panic!("expire session {id}: {e}"));
                actix_rt::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(self.load_session(id).await, None, "session {id} expired");
            }
        }
    }

    /// The stored record of session `id` as JSON, once it satisfies `ready` (bounded by
    /// [`WAIT`]): records are written asynchronously after a change.
    pub async fn session_record(&mut self, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let record = self.load_session(id).await;
            let value = record.as_deref().and_then(|r| serde_json::from_str(r).ok());
            if let Some(value) = value.filter(|v| ready(v)) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "record of session {id} not as expected within {WAIT:?}; last seen {record:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A subscription to one channel, read with bounded waits.
pub struct Subscription {
    stream: Stream,
}

enum Stream {
    Redis(PubSubStream),
    /// Payloads forwarded from an embedded broker subscription (see [`local::subscribe`]).
    Local(Box<local::Payloads>),
}

/// A Redis pub/sub connection to `url` subscribed to `channel` (live on return).
pub async fn redis_pubsub(url: &str, channel: &str) -> redis::aio::PubSub {
    let client = redis::Client::open(url).expect("the Redis URL parses");
    let mut pubsub = actix_rt::time::timeout(WAIT, client.get_async_pubsub())
        .await
        .expect("Redis pub/sub connection within the time limit")
        .expect("Redis pub/sub connection");
    actix_rt::time::timeout(WAIT, pubsub.subscribe(channel))
        .await
        .expect("SUBSCRIBE within the time limit")
        .expect("SUBSCRIBE");
    pubsub
}

impl Subscription {
    /// Subscribes to `channel` on the shared Redis; the subscription is live on return.
    #[allow(dead_code)] // used by test/restarts.rs
    pub async fn to(channel: &str) -> Subscription {
        Self::redis(REDIS_URL, channel).await
    }

    /// Subscribes to `channel` on the Redis at `url`; the subscription is live on return.
    pub async fn redis(url: &str, channel: &str) -> Subscription {
        let pubsub = redis_pubsub(url, channel).await;
        Subscription {
            stream: Stream::Redis(pubsub.into_on_message()),
        }
    }

    /// Subscribes to `channel` on the embedded broker at `socket`; the subscription is live on
    /// return.
    pub async fn local(socket: &Path, channel: &str) -> Subscription {
        Subscription {
            stream: Stream::Local(Box::new(local::subscribe(socket, channel).await)),
        }
    }

    /// The next payload as text; `None` when nothing arrives within `window`.
    async fn next_payload(&mut self, window: Duration) -> Option<String> {
        match &mut self.stream {
            Stream::Redis(stream) => {
                let msg = actix_rt::time::timeout(window, stream.next())
                    .await
                    .ok()??;
                msg.get_payload().ok()
            }
            Stream::Local(payloads) => payloads.next(window).await,
        }
    }

    /// The next payload, as JSON.
    pub async fn next_json(&mut self) -> Value {
        let payload = self
            .next_payload(WAIT)
            .await
            .unwrap_or_else(|| panic!("nothing published within {WAIT:?}"));
        serde_json::from_str(&payload)
            .unwrap_or_else(|e| panic!("published payload is not JSON ({e}): {payload:?}"))
    }

    /// The next payload as JSON, or `None` if nothing is published within `window`.
    #[allow(dead_code)] // used by test/restarts.rs
    pub async fn next_json_within(&mut self, window: Duration) -> Option<Value> {
        let payload = self.next_payload(window).await?;
        serde_json::from_str(&payload).ok()
    }

    /// Asserts that nothing is published within `window`.
    pub async fn expect_quiet(&mut self, window: Duration) {
        if let Some(payload) = self.next_payload(window).await {
            panic!("expected nothing published within {window:?}, got {payload:?}");
        }
    }
}
