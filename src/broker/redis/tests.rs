//! Against real Redis servers: the shared one on 127.0.0.1:6379 (each test on channels of
//! its own) and, where the test needs a server to itself, a private `redis-server` it starts.
//!
//! Redis delivers a connection's messages in publishing order, so "`x` is not delivered" is
//! shown without sleeping: publish `x`, then something that is delivered, and check that
//! the latter arrives first.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::broker::Broker;
use crate::topics::DEFAULT_MAX_TOPIC_LEN;

const SHARED_REDIS: &str = "redis://127.0.0.1:6379/";
/// The bound on every wait for something that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(3);

fn pattern(s: &str) -> Pattern {
    Pattern::parse(s, DEFAULT_MAX_TOPIC_LEN).unwrap()
}

/// A channel prefix no other test, or test run, uses.
fn unique() -> String {
    format!("rohrpost-test.{:016x}.", rand::random::<u64>())
}

/// Polls `check` every 10 ms until it answers true; panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Collects what the broker delivers.
struct Inbox(mpsc::UnboundedSender<BrokerMessage>);

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<BrokerMessage> for Inbox {
    type Result = ();

    fn handle(&mut self, msg: BrokerMessage, _ctx: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

/// A broker and the inbox it delivers to.
fn history() -> crate::broker::log::HistorySettings {
    crate::broker::log::HistorySettings {
        enabled: true,
        size: 100,
        ttl: Duration::from_secs(60),
    }
}

struct Harness {
    broker: Addr<RedisBroker>,
    inbox: mpsc::UnboundedReceiver<BrokerMessage>,
}

impl Harness {
    fn start(url: &str) -> Harness {
        let _ = env_logger::builder().is_test(true).try_init();
        let (sender, inbox) = mpsc::unbounded_channel();
        let deliver = Inbox(sender).start().recipient();
        let broker = RedisBroker::start(url, history(), deliver).expect("a valid Redis URL");
        Harness { broker, inbox }
    }

    async fn connected(url: &str) -> Harness {
        let harness = Harness::start(url);
        harness.until_connected(true, PROMPTLY).await;
        harness
    }

    async fn is_connected(&self) -> bool {
        self.broker.send(IsConnected).await.unwrap()
    }

    async fn until_connected(&self, connected: bool, limit: Duration) {
        let what = format!("IsConnected answers {connected}");
        eventually(&what, limit, || async {
            self.is_connected().await == connected
        })
        .await;
    }

    /// Subscribes and waits until Redis has confirmed it.
    async fn subscribe(&self, text: &str) -> Pattern {
        let subscription = pattern(text);
        self.broker.do_send(Subscribe(subscription.clone()));
        self.settle().await;
        subscription
    }

    async fn unsubscribe(&self, subscription: &Pattern) {
        self.broker.do_send(Unsubscribe(subscription.clone()));
        self.settle().await;
    }

    async fn settle(&self) {
        let settled = || async { self.broker.send(Settled).await.unwrap() };
        eventually("Redis confirms the subscriptions", PROMPTLY, settled).await;
    }

    async fn try_publish(&self, channel: &str, payload: &str) -> Result<(), BrokerError> {
        let publish = Publish {
            channel: Arc::from(channel),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        };
        let answer = tokio::time::timeout(PROMPTLY, self.broker.send(publish)).await;
        answer.expect("Publish answers promptly").unwrap()
    }

    async fn publish(&self, channel: &str, payload: &str) {
        self.try_publish(channel, payload).await.unwrap();
    }

    /// The next delivered message, which must come promptly.
    async fn next(&mut self) -> BrokerMessage {
        let next = tokio::time::timeout(PROMPTLY, self.inbox.recv()).await;
        next.expect("a message is delivered promptly").unwrap()
    }

    /// Checks that the next delivered message is `payload` on `channel` via `subscription`.
    async fn expect(&mut self, subscription: &Pattern, channel: &str, payload: &str) {
        let msg = self.next().await;
        let got = (&msg.subscription, &*msg.channel, &msg.payload[..]);
        assert_eq!(got, (subscription, channel, payload.as_bytes()));
    }
}

/// A plain command connection, as a backend would hold.
async fn backend(url: &str) -> MultiplexedConnection {
    let client = Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn subscribers(url: &str, channel: &str) -> i64 {
    let mut numsub = redis::cmd("PUBSUB");
    numsub.arg("NUMSUB").arg(channel);
    let (_, count): (String, i64) = numsub.query_async(&mut backend(url).await).await.unwrap();
    count
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `redis-server` of the test's own, killed when dropped.
struct PrivateRedis {
    port: u16,
    server: Option<Child>,
}

impl PrivateRedis {
    /// A free port with no server on it yet.
    fn new() -> PrivateRedis {
        PrivateRedis {
            port: free_port(),
            server: None,
        }
    }

    async fn started() -> PrivateRedis {
        let mut redis = PrivateRedis::new();
        redis.start().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    async fn start(&mut self) {
        let port = self.port.to_string();
        let args = ["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        let server = Command::new("redis-server")
            .args(args)
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server can be started");
        self.server = Some(server);
        let address = ("127.0.0.1", self.port);
        let listening = || async { TcpStream::connect(address).is_ok() };
        eventually("redis-server listens", PROMPTLY, listening).await;
    }

    fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn exact_patterns_subscribe_channels_and_wildcards_escaped_globs() {
    assert_eq!(
        RedisSub::of(&pattern("a?b")),
        RedisSub::Channel("a?b".into())
    );
    assert_eq!(
        RedisSub::of(&pattern("a[bc]*")),
        RedisSub::Glob("a\\[bc\\]*".into())
    );
}

#[test]
fn logs_name_the_server_but_not_the_password() {
    let client = Client::open("redis://worker:hunter2@127.0.0.1:6390/3").unwrap();
    assert_eq!(log_target(&client), "127.0.0.1:6390/3");
}

#[actix_rt::test]
async fn unparsable_url_is_refused() {
    let (sender, _inbox) = mpsc::unbounded_channel();
    let deliver = Inbox(sender).start().recipient();
    let refused = RedisBroker::start("http//nowhere", history(), deliver);
    assert!(matches!(refused, Err(BrokerError::Server(_))));
}

#[actix_rt::test]
async fn exact_subscription_receives_publish() {
    let mut h = Harness::connected(SHARED_REDIS).await;
    let channel = format!("{}news", unique());
    let news = h.subscribe(&channel).await;
    let _ = Broker::of(&h.broker);
    h.publish(&channel, "hello").await;
    h.expect(&news, &channel, "hello").await;
}

#[actix_rt::test]
async fn wildcard_subscription_receives_any_run_of_characters() {
    let mut h = Harness::connected(SHARED_REDIS).await;
    let p = unique();
    let chat = h.subscribe(&format!("{p}chat.*")).await;
    h.publish(&format!("{p}chat"), "no dot, no match").await;
    h.publish(&format!("{p}chat.a.b"), "deep").await;
    h.expect(&chat, &format!("{p}chat.a.b"), "deep").await;
}

#[actix_rt::test]
async fn redis_glob_characters_in_patterns_are_literal() {
    let mut h = Harness::connected(SHARED_REDIS).await;
    let p = unique();
    let question = h.subscribe(&format!("{p}a?b")).await;
    let brackets = h.subscribe(&format!("{p}a[bc]*")).await;
    let question_glob = h.subscribe(&format!("{p}c?d*")).await;
    let backslash = h.subscribe(&format!("{p}e\\*")).await;
    for miss in ["axb", "ab", "abx", "cxdz", "e*"] {
        h.publish(&format!("{p}{miss}"), "miss").await;
    }
    let hits = [
        (&question, "a?b"),
        (&brackets, "a[bc]x"),
        (&question_glob, "c?dz"),
        (&backslash, "e\\z"),
    ];
    for (_, hit) in hits {
        h.publish(&format!("{p}{hit}"), "hit").await;
    }
    for (subscription, hit) in hits {
        h.expect(subscription, &format!("{p}{hit}"), "hit").await;
    }
}

/// A literal subscription (a session's direct topic) is a `SUBSCRIBE` of its text: `*` in it
/// matches `*` only.
#[actix_rt::test]
async fn literal_subscriptions_match_only_their_own_text() {
    let mut h = Harness::connected(SHARED_REDIS).await;
    let p = unique();
    let literal = Pattern::literal(&format!("{p}client.a*"), DEFAULT_MAX_TOPIC_LEN).unwrap();
    h.broker.do_send(Subscribe(literal.clone()));
    h.settle().await;
    h.publish(&format!("{p}client.abc"), "another session's")
        .await;
    h.publish(&format!("{p}client.a*"), "its own").await;
    h.expect(&literal, &format!("{p}client.a*"), "its own")
        .await;
}

#[actix_rt::test]
async fn unsubscribe_stops_delivery() {
    let mut h = Harness::connected(SHARED_REDIS).await;
    let p = unique();
    let (room, rooms_x) = (format!("{p}room"), format!("{p}rooms.x"));
    let exact = h.subscribe(&room).await;
    let glob = h.subscribe(&format!("{p}rooms.*")).await;
    h.publish(&room, "1").await;
    h.publish(&rooms_x, "2").await;
    h.expect(&exact, &room, "1").await;
    h.expect(&glob, &rooms_x, "2").await;

    h.unsubscribe(&exact).await;
    h.unsubscribe(&glob).await;
    assert_eq!(subscribers(SHARED_REDIS, &room).await, 0);
    h.publish(&room, "3").await;
    h.publish(&rooms_x, "4").await;
    let control = h.subscribe(&format!("{p}control")).await;
    h.publish(&format!("{p}control"), "5").await;
    h.expect(&control, &format!("{p}control"), "5").await;
}

#[actix_rt::test]
async fn subscribe_and_unsubscribe_are_idempotent() {
    let mut h = Harness::connected(SHARED_REDIS).await;
    let channel = format!("{}twice", unique());
    let twice = h.subscribe(&channel).await;
    h.subscribe(&channel).await;
    h.publish(&channel, "1").await;
    h.publish(&channel, "2").await;
    h.expect(&twice, &channel, "1").await;
    h.expect(&twice, &channel, "2").await;
    h.unsubscribe(&twice).await;
    h.unsubscribe(&twice).await;
    assert_eq!(subscribers(SHARED_REDIS, &channel).await, 0);
}

#[actix_rt::test]
async fn overlapping_subscriptions_deliver_once_per_subscription() {
    let mut h = Harness::connected(SHARED_REDIS).await;
    let p = unique();
    let (xy, xz) = (format!("{p}x.y"), format!("{p}x.z"));
    let any = h.subscribe(&format!("{p}x.*")).await;
    let exact = h.subscribe(&xy).await;
    h.publish(&xy, "both").await;
    h.publish(&xz, "only the wildcard").await;
    let (first, second) = (h.next().await, h.next().await);
    let mut via = [first.subscription.clone(), second.subscription.clone()];
    via.sort();
    let mut expected = [any.clone(), exact.clone()];
    expected.sort();
    assert_eq!(via, expected);
    for msg in [first, second] {
        assert_eq!((&*msg.channel, &msg.payload[..]), (&*xy, &b"both"[..]));
    }
    h.expect(&any, &xz, "only the wildcard").await;
}

#[actix_rt::test]
async fn session_records_round_trip_and_expire() {
    let h = Harness::connected(SHARED_REDIS).await;
    let id: Arc<str> = Arc::from(unique());
    let record = Bytes::from_static(br#"{"user":"ada"}"#);
    let ttl = Duration::from_millis(300);
    let store = StoreSession {
        id: id.clone(),
        record: record.clone(),
        ttl,
    };
    h.broker.send(store).await.unwrap().unwrap();
    let stored_at = Instant::now();
    let load = || LoadSession { id: id.clone() };
    assert_eq!(h.broker.send(load()).await.unwrap(), Ok(Some(record)));
    let never_stored = LoadSession {
        id: Arc::from(unique()),
    };
    assert_eq!(h.broker.send(never_stored).await.unwrap(), Ok(None));

    let expired = || async { h.broker.send(load()).await.unwrap() == Ok(None) };
    eventually("the record expires", Duration::from_secs(2), expired).await;
    assert!(stored_at.elapsed() >= ttl - Duration::from_millis(50));
}

#[actix_rt::test]
async fn shared_secret_keeps_the_first_value() {
    let redis = PrivateRedis::started().await;
    let (one, other) = (
        Harness::connected(&redis.url()).await,
        Harness::connected(&redis.url()).await,
    );
    let secret = |proposed: &str| SharedSecret {
        proposed: proposed.into(),
    };
    let first = one.broker.send(secret("first")).await.unwrap();
    let second = one.broker.send(secret("second")).await.unwrap();
    let elsewhere = other.broker.send(secret("third")).await.unwrap();
    let first_value = Ok("first".to_owned());
    assert_eq!(
        [first, second, elsewhere],
        [(); 3].map(|()| first_value.clone())
    );
}

#[actix_rt::test]
async fn commands_fail_fast_while_redis_is_unreachable_and_work_once_it_is_up() {
    let mut redis = PrivateRedis::new();
    let mut h = Harness::start(&redis.url());
    let news = pattern("news");
    h.broker.do_send(Subscribe(news.clone()));

    let asked = Instant::now();
    let publish = h.try_publish("news", "lost").await;
    let load = h.broker.send(LoadSession { id: "s".into() }).await.unwrap();
    let secret = SharedSecret {
        proposed: "x".into(),
    };
    let secret = h.broker.send(secret).await.unwrap();
    assert!(matches!(publish, Err(BrokerError::Unavailable(_))));
    assert!(matches!(load, Err(BrokerError::Unavailable(_))));
    assert!(matches!(secret, Err(BrokerError::Unavailable(_))));
    assert!(asked.elapsed() < Duration::from_millis(500));
    assert!(!h.is_connected().await);

    redis.start().await;
    h.until_connected(true, Duration::from_secs(10)).await;
    h.publish("news", "made while down").await;
    h.expect(&news, "news", "made while down").await;
}

#[actix_rt::test]
async fn reconnects_after_redis_restarts_and_restores_subscriptions() {
    let mut redis = PrivateRedis::started().await;
    let mut h = Harness::connected(&redis.url()).await;
    let news = h.subscribe("news").await;
    let chat = h.subscribe("chat.*").await;

    redis.kill();
    // Written to a connection that broke: the broker cannot know whether Redis took it.
    let publish = h.try_publish("news", "into the void").await;
    assert!(
        matches!(
            publish,
            Err(BrokerError::Unavailable(_) | BrokerError::Uncertain(_))
        ),
        "{publish:?}"
    );
    h.until_connected(false, PROMPTLY).await;
    // Known to be down: certainly not sent.
    let publish = h.try_publish("news", "into the void").await;
    assert!(
        matches!(publish, Err(BrokerError::Unavailable(_))),
        "{publish:?}"
    );

    redis.start().await;
    let restarted = Instant::now();
    h.until_connected(true, Duration::from_secs(10)).await;
    eprintln!(
        "reconnected {} ms after redis restarted",
        restarted.elapsed().as_millis()
    );

    let mut backend = backend(&redis.url()).await;
    let mut publish = redis::cmd("PUBLISH");
    publish.arg("chat.lobby").arg("back");
    let _: i64 = publish.query_async(&mut backend).await.unwrap();
    h.expect(&chat, "chat.lobby", "back").await;
    h.publish("news", "again").await;
    h.expect(&news, "news", "again").await;
}
