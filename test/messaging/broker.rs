//! The backend's side of Redis: publishing to sessions, seeing what clients publish, and
//! knowing when a session's subscription is live.
//!
//! - [`Redis`] publishes backend messages and reads session records.
//! - [`Subscription`] sees what the worker publishes for clients (`fromClient: true`).
//! - [`settle`] and [`fence`] make pub/sub timing deterministic: a worker subscribes after the
//!   handshake, asynchronously, so a test first waits until the session receives on a channel,
//!   and proves "nothing else arrived" by a marker that must come next.
//! - [`RedisServer`] is a private `redis-server` a test may kill and restart.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use rohrpost::broker::{
    BrokerMessage, Discard, IsConnected, LoadSession, Publish, StoreSession, Subscribe,
};
use rohrpost::topics::Pattern;
use serde_json::{json, Value};

use crate::client::{Client, Event};
use crate::common::{free_port, WAIT};

/// The shared Redis every test but the restart test uses.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// How often [`settle`] publishes a probe while the session does not receive yet.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long a session's subscription may take to become live.
const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// `prefix.` followed by 16 random hex digits: a topic no other test uses.
pub fn unique(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}.{n:016x}")
}

/// Whether this test binary runs against the embedded broker (`messaging_embedded`) rather than
/// Redis: each test crate that includes this module says so with its `EMBEDDED` constant.
pub fn embedded() -> bool {
    crate::EMBEDDED
}

/// The backend's connection for commands (publish, session records): to Redis, or, for the
/// embedded broker, a broker client of the crate itself on the shared socket (see [`embedded`]).
pub struct Redis {
    conn: Conn,
}

enum Conn {
    Redis(MultiplexedConnection),
    Embedded(rohrpost::broker::Broker),
}

impl Redis {
    /// Connects to `url`, waiting at most [`WAIT`].
    pub async fn connect(url: &str) -> Redis {
        Self::try_connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to Redis at {url}: {e}"))
    }

    /// Connects to `url` once; an error if Redis does not answer within [`WAIT`].
    pub async fn try_connect(url: &str) -> Result<Redis, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let conn = actix_rt::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| format!("no connection within {WAIT:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(Redis {
            conn: Conn::Redis(conn),
        })
    }

    /// The shared Redis, or the shared embedded broker.
    pub async fn shared() -> Redis {
        if embedded() {
            return Redis {
                conn: Conn::Embedded(embedded_client(Discard.start().recipient()).await),
            };
        }
        Self::connect(REDIS_URL).await
    }

    fn redis(&mut self) -> &mut MultiplexedConnection {
        match &mut self.conn {
            Conn::Redis(conn) => conn,
            Conn::Embedded(_) => panic!("this check needs Redis, not the embedded broker"),
        }
    }

    /// PUBLISHes `payload` as is; returns how many subscriptions received it.
    pub async fn publish_raw(&mut self, channel: &str, payload: &str) -> i64 {
        self.try_publish_raw(channel, payload)
            .await
            .unwrap_or_else(|e| panic!("PUBLISH {channel}: {e}"))
    }

    /// PUBLISHes `payload`; an error if Redis fails or does not answer within [`WAIT`].
    pub async fn try_publish_raw(&mut self, channel: &str, payload: &str) -> Result<i64, String> {
        if let Conn::Embedded(broker) = &self.conn {
            let publish = Publish {
                channel: Arc::from(channel),
                payload: Bytes::from(payload.to_owned()),
            };
            return match actix_rt::time::timeout(WAIT, broker.publish.send(publish)).await {
                // The embedded broker does not count receivers.
                Ok(Ok(Ok(()))) => Ok(0),
                Ok(Ok(Err(e))) => Err(e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {WAIT:?}")),
            };
        }
        let cmd = redis::cmd("PUBLISH").arg(channel).arg(payload).clone();
        actix_rt::time::timeout(WAIT, cmd.query_async::<i64>(self.redis()))
            .await
            .map_err(|_| format!("no answer within {WAIT:?}"))?
            .map_err(|e| e.to_string())
    }

    /// PUBLISHes a backend message.
    pub async fn publish(&mut self, channel: &str, message: &Value) -> i64 {
        self.publish_raw(channel, &message.to_string()).await
    }

    /// The value of `key`, if set.
    pub async fn get(&mut self, key: &str) -> Option<String> {
        if let Conn::Embedded(broker) = &self.conn {
            let id = key
                .strip_prefix(SESSION_KEY)
                .expect("the embedded broker stores session records only");
            let load = broker.load.send(LoadSession { id: Arc::from(id) });
            let record = actix_rt::time::timeout(WAIT, load)
                .await
                .unwrap_or_else(|_| panic!("load {key}: no answer within {WAIT:?}"))
                .expect("broker client alive")
                .unwrap_or_else(|e| panic!("load {key}: {e}"));
            return record.map(|b| String::from_utf8(b.to_vec()).expect("records are JSON"));
        }
        let cmd = redis::cmd("GET").arg(key).clone();
        actix_rt::time::timeout(WAIT, cmd.query_async::<Option<String>>(self.redis()))
            .await
            .unwrap_or_else(|_| panic!("GET {key}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("GET {key}: {e}"))
    }

    /// The value of `field` in the hash `key`, if set (the cluster test reads the directory).
    #[allow(dead_code)]
    pub async fn hget(&mut self, key: &str, field: &str) -> Option<String> {
        let cmd = redis::cmd("HGET").arg(key).arg(field).clone();
        actix_rt::time::timeout(WAIT, cmd.query_async::<Option<String>>(self.redis()))
            .await
            .unwrap_or_else(|_| panic!("HGET {key} {field}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("HGET {key} {field}: {e}"))
    }

    /// Deletes `key`.
    pub async fn del(&mut self, key: &str) {
        if let Conn::Embedded(broker) = &self.conn {
            // The embedded store has no delete: a record that expires at once is gone.
            let id = key
                .strip_prefix(SESSION_KEY)
                .expect("the embedded broker stores session records only");
            let store = broker.store.send(StoreSession {
                id: Arc::from(id),
                record: Bytes::from_static(b"{}"),
                ttl: Duration::from_millis(1),
            });
            let _ = actix_rt::time::timeout(WAIT, store).await;
            actix_rt::time::sleep(Duration::from_millis(5)).await;
            return;
        }
        let cmd = redis::cmd("DEL").arg(key).clone();
        actix_rt::time::timeout(WAIT, cmd.query_async::<i64>(self.redis()))
            .await
            .unwrap_or_else(|_| panic!("DEL {key}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("DEL {key}: {e}"));
    }

    /// The stored record of session `id` as JSON, once it satisfies `ready` (bounded by
    /// [`WAIT`]): records are written asynchronously after a change.
    pub async fn session_record(&mut self, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let key = format!("rohrpost:session:{id}");
        let deadline = Instant::now() + WAIT;
        loop {
            let record = self.get(&key).await;
            let value = record.as_deref().and_then(|r| serde_json::from_str(r).ok());
            if let Some(value) = value.filter(|v| ready(v)) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "record {key} not as expected within {WAIT:?}; last seen {record:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A subscription to one channel (Redis SUBSCRIBE, or the embedded broker's), read with bounded
/// waits.
pub struct Subscription {
    stream: SubscriptionStream,
}

enum SubscriptionStream {
    Redis(PubSubStream),
    /// Payloads forwarded by a [`Collector`]; the broker client is held so that it (and its
    /// subscription) lives as long as the stream.
    Embedded(
        tokio::sync::mpsc::UnboundedReceiver<Bytes>,
        #[allow(dead_code)] rohrpost::broker::Broker,
    ),
}

impl SubscriptionStream {
    /// The next payload as text; `None` when nothing arrives within `window`.
    async fn next_payload(&mut self, window: Duration) -> Option<String> {
        match self {
            SubscriptionStream::Redis(stream) => {
                let msg = actix_rt::time::timeout(window, stream.next())
                    .await
                    .ok()??;
                msg.get_payload().ok()
            }
            SubscriptionStream::Embedded(rx, _) => {
                let bytes = actix_rt::time::timeout(window, rx.recv()).await.ok()??;
                String::from_utf8(bytes.to_vec()).ok()
            }
        }
    }
}

impl Subscription {
    /// Subscribes to `channel` on the shared Redis; the subscription is live on return.
    pub async fn to(channel: &str) -> Subscription {
        if embedded() {
            return Self::embedded_to(channel).await;
        }
        let client = redis::Client::open(REDIS_URL).expect("the Redis URL parses");
        let mut pubsub = actix_rt::time::timeout(WAIT, client.get_async_pubsub())
            .await
            .expect("Redis pub/sub connection within the time limit")
            .expect("Redis pub/sub connection");
        actix_rt::time::timeout(WAIT, pubsub.subscribe(channel))
            .await
            .expect("SUBSCRIBE within the time limit")
            .expect("SUBSCRIBE");
        Subscription {
            stream: SubscriptionStream::Redis(pubsub.into_on_message()),
        }
    }

    /// The embedded broker's subscription: live once a probe of its own comes back. Probes are
    /// marked `fromClient`, so no session ever receives them.
    async fn embedded_to(channel: &str) -> Subscription {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let broker = embedded_client(Collector(tx).start().recipient()).await;
        let pattern = Pattern::parse(channel, usize::MAX).expect("a valid channel");
        broker.subscribe.do_send(Subscribe(pattern));
        let probe = format!(
            "{{\"fromClient\":true,\"probe\":{}}}",
            rand::random::<u64>()
        );
        let deadline = Instant::now() + WAIT;
        loop {
            let publish = Publish {
                channel: Arc::from(channel),
                payload: Bytes::from(probe.clone()),
            };
            let _ = broker.publish.send(publish).await;
            if let Ok(Some(got)) =
                actix_rt::time::timeout(Duration::from_millis(100), rx.recv()).await
            {
                if got == probe.as_bytes() {
                    // Drop any further copies of the probe.
                    while let Ok(Some(_)) =
                        actix_rt::time::timeout(Duration::from_millis(50), rx.recv()).await
                    {
                    }
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "embedded subscription to {channel} not live"
            );
        }
        Subscription {
            stream: SubscriptionStream::Embedded(rx, broker),
        }
    }

    /// The next payload, as JSON.
    pub async fn next_json(&mut self) -> Value {
        let payload = self
            .stream
            .next_payload(WAIT)
            .await
            .unwrap_or_else(|| panic!("nothing published within {WAIT:?}"));
        serde_json::from_str(&payload)
            .unwrap_or_else(|e| panic!("published payload is not JSON ({e}): {payload:?}"))
    }

    /// The next payload as JSON, or `None` if nothing is published within `window`.
    #[allow(dead_code)] // used by test/restarts.rs
    pub async fn next_json_within(&mut self, window: Duration) -> Option<Value> {
        let payload = self.stream.next_payload(window).await?;
        serde_json::from_str(&payload).ok()
    }

    /// Asserts that nothing is published within `window`.
    pub async fn expect_quiet(&mut self, window: Duration) {
        if let Some(payload) = self.stream.next_payload(window).await {
            panic!("expected nothing published within {window:?}, got {payload:?}");
        }
    }
}

/// Waits until `client` receives what is published on `channel` (which its session must
/// receive: whitelisted, or its direct topic), then discards everything up to a fence.
///
/// Probes `{"data": {"probe": id}}` are published every [`PROBE_EVERY`] until one of them
/// arrives on `channel`; the worker's subscription is live from then on. Probes and fences of
/// earlier settles (of other sessions on a shared channel) are skipped on the way. A fence
/// published after the last probe, on the same channel, arrives after every probe, so the
/// client is left with nothing pending.
pub async fn settle(redis: &mut Redis, client: &mut Client, channel: &str) {
    settle_within(redis, client, channel, SETTLE_WAIT).await;
}

/// [`settle`], allowing the subscription `wait` to become live.
pub async fn settle_within(redis: &mut Redis, client: &mut Client, channel: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    let id: u64 = rand::random();
    loop {
        redis
            .publish(channel, &json!({"data": {"probe": id}}))
            .await;
        match client.next_event(PROBE_EVERY).await {
            Some(Event::Text(text)) => {
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                let data = &value["data"];
                if value["topic"] == channel && data["probe"] == id {
                    break;
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
    fence(redis, &mut [client], channel).await;
}

/// Publishes one marker on `channel` and reads each client up to it, allowing only probes and
/// earlier markers before it: when sessions share a channel, settling one leaves its probes and
/// marker with the others (see [`settle`]). Every client must receive the marker.
pub async fn fence(redis: &mut Redis, clients: &mut [&mut Client], channel: &str) {
    let marker: u64 = rand::random();
    redis
        .publish(channel, &json!({"data": {"fence": marker}}))
        .await;
    let reads = clients.iter_mut().map(|client| async move {
        loop {
            let (topic, data) = client.recv().await;
            if data["fence"] == marker {
                assert_eq!(topic, channel, "fence topic");
                return;
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
pub async fn expect_nothing_before_fence(redis: &mut Redis, client: &mut Client, channel: &str) {
    let marker: u64 = rand::random();
    redis
        .publish(channel, &json!({"data": {"fence": marker}}))
        .await;
    client.expect(channel, json!({"fence": marker})).await;
}

/// A private `redis-server` on its own port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub async fn start() -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its port, without persistence, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut redis) = Redis::try_connect(&self.url()).await {
                if redis
                    .try_publish_raw("rohrpost-test.ready", "1")
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within {WAIT:?}",
                self.port
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The original Rohrpost round trip, as a check that a session works: the client publishes
/// `"ping"` on `topic` (a fresh, whitelisted one), a backend subscribed to it sees the client
/// payload, and its `"pong"` comes back to the client (and nothing before it: not the client's
/// own ping).
pub async fn ping_pong(client: &mut Client, session_id: &str, topic: &str) {
    let mut redis = Redis::shared().await;
    settle(&mut redis, client, topic).await;
    let mut backend = Subscription::to(topic).await;
    client.publish(topic, json!("ping")).await;
    let payload = backend.next_json().await;
    assert_eq!(payload["topic"], topic, "payload {payload}");
    assert_eq!(payload["data"], "ping", "payload {payload}");
    assert_eq!(payload["sessionId"], session_id, "payload {payload}");
    assert_eq!(payload["fromClient"], true, "payload {payload}");
    redis.publish(topic, &json!({"data": "pong"})).await;
    client.expect(topic, json!("pong")).await;
}

/// Key prefix of session records (Redis), mapped to the embedded store's ids.
const SESSION_KEY: &str = "rohrpost:session:";

/// The embedded broker every worker of this test process shares, hosted on a thread of its own
/// (as the supervisor hosts it): its socket path.
pub fn embedded_socket() -> &'static std::path::Path {
    static SOCKET: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    SOCKET.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory").keep();
        let path = dir.join("broker.sock");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let bind_path = path.clone();
        std::thread::spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let handle = rohrpost::broker::local::LocalBrokerServer::bind(&bind_path)
                    .await
                    .expect("bind the embedded broker");
                let _ = ready_tx.send(());
                std::future::pending::<()>().await;
                drop(handle);
            });
        });
        ready_rx
            .recv_timeout(WAIT)
            .expect("the embedded broker is listening");
        path
    })
}

/// A broker client of the crate on the shared embedded broker, connected.
async fn embedded_client(deliver: Recipient<BrokerMessage>) -> rohrpost::broker::Broker {
    let addr = rohrpost::broker::local::LocalBroker::start(embedded_socket(), deliver);
    let broker = rohrpost::broker::Broker::of(&addr);
    let deadline = Instant::now() + WAIT;
    while !broker.connected.send(IsConnected).await.unwrap_or(false) {
        assert!(
            Instant::now() < deadline,
            "embedded broker client did not connect"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    broker
}

/// Forwards what a subscription receives into a channel the test reads.
struct Collector(tokio::sync::mpsc::UnboundedSender<Bytes>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<BrokerMessage> for Collector {
    type Result = ();

    fn handle(&mut self, msg: BrokerMessage, _ctx: &mut Context<Self>) {
        let _ = self.0.send(msg.payload);
    }
}
