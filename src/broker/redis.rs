//! The Redis broker: the actor through which one worker process publishes, subscribes and keeps
//! session records in Redis.
//!
//! # Connections
//! The actor holds two connections to one Redis server: a pub/sub connection, split into a sink
//! for `SUBSCRIBE`-like commands and a stream of incoming messages (added to the actor as a
//! stream), and a multiplexed command connection shared by every `PUBLISH`, `SET` and `GET`.
//! Both are driven on the worker's one thread; all asynchronous work runs as futures in the
//! actor's context, so its state needs no locks.
//!
//! # Subscriptions
//! The actor keeps the subscriptions it was asked for (`wanted`: Redis name → [`Pattern`]) apart
//! from those Redis has confirmed on the current connection (`applied`). [`Subscribe`] and
//! [`Unsubscribe`] only change `wanted` and then reconcile: at most one batch of subscription
//! commands is in flight, computed as the difference of the two sets. So commands reach Redis in
//! order, repeated or cancelled requests coalesce, and restoring every subscription after a
//! reconnect is the same operation as adding one.
//!
//! An exact pattern is a `SUBSCRIBE` of its text, a wildcard pattern a `PSUBSCRIBE` of
//! [`Pattern::redis_glob`]. An incoming `message` or `pmessage` is mapped back to its pattern by
//! looking its channel or glob up in `wanted` (never by unescaping), so a message is delivered
//! once per subscription it matches, and a subscription that was just dropped delivers nothing
//! even before Redis confirms the `UNSUBSCRIBE`.
//!
//! # Losing Redis
//! The connection counts as lost when the pub/sub stream ends, when a command fails with a
//! connection error or gets no answer within 2 s, or when the `PING` sent on both connections
//! every 5 s fails. The actor then logs one `warn` line, drops both connections and connects
//! again after a pause of 100 ms doubling up to 5 s (shortened by up to a quarter at random, so
//! that workers that lost Redis together do not return in lockstep). A new connection counts as
//! up, and is logged at `info`, only once every wanted subscription is restored on it. While
//! down, commands fail at once with [`BrokerError::Unavailable`] and nothing is queued; the
//! actor itself never stops over Redis, so the gateway's sessions outlive an outage. (It does
//! stop, within 5 s, once no handle on it is left.)

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix::fut::wrap_future;
use actix::prelude::*;
use bytes::Bytes;
use futures_util::{future, stream, StreamExt};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, Msg, RedisError, RedisResult, Value};

use super::{
    backoff, Announce, BrokerError, BrokerMessage, Directory, IsConnected, LoadSession, Publish,
    SharedSecret, StoreSession, Subscribe, Unsubscribe, Withdraw, COMMAND_TIMEOUT,
    HEALTH_CHECK_EVERY,
};
use crate::topics::Pattern;

/// The most names sent in one subscription command, so that restoring many subscriptions is a
/// series of modest commands.
const NAMES_PER_COMMAND: usize = 512;
/// Session records live under this prefix followed by the session id.
const SESSION_KEY_PREFIX: &str = "rohrpost:session:";
/// The key of the secret shared by every worker and machine.
const SECRET_KEY: &str = "rohrpost:secret";

/// A subscription as Redis knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RedisSub {
    /// `SUBSCRIBE` of a channel: an exact pattern.
    Channel(String),
    /// `PSUBSCRIBE` of a glob: a wildcard pattern with Redis's glob characters escaped.
    Glob(String),
}

impl RedisSub {
    fn of(pattern: &Pattern) -> RedisSub {
        if pattern.is_exact() {
            RedisSub::Channel(pattern.as_str().to_owned())
        } else {
            RedisSub::Glob(pattern.redis_glob())
        }
    }
}

/// The four commands that change the subscriptions of a pub/sub connection.
#[derive(Clone, Copy, Debug)]
enum SubCommand {
    Unsubscribe,
    PUnsubscribe,
    Subscribe,
    PSubscribe,
}

impl SubCommand {
    fn name(self) -> &'static str {
        match self {
            SubCommand::Unsubscribe => "UNSUBSCRIBE",
            SubCommand::PUnsubscribe => "PUNSUBSCRIBE",
            SubCommand::Subscribe => "SUBSCRIBE",
            SubCommand::PSubscribe => "PSUBSCRIBE",
        }
    }

    /// Whether the command takes globs rather than channels.
    fn takes_globs(self) -> bool {
        matches!(self, SubCommand::PUnsubscribe | SubCommand::PSubscribe)
    }

    async fn send(self, sink: &mut PubSubSink, names: &[&str]) -> RedisResult<()> {
        match self {
            SubCommand::Unsubscribe => sink.unsubscribe(names).await,
            SubCommand::PUnsubscribe => sink.punsubscribe(names).await,
            SubCommand::Subscribe => sink.subscribe(names).await,
            SubCommand::PSubscribe => sink.psubscribe(names).await,
        }
    }
}

/// What the pub/sub stream of one connection generation yields.
enum PubSubEvent {
    Message(Msg),
    /// The stream ended: that connection is gone.
    Closed(u64),
}

/// Both connections, freshly opened, with `applied` already confirmed by Redis.
struct Opened {
    commands: MultiplexedConnection,
    sink: PubSubSink,
    messages: PubSubStream,
    applied: HashSet<RedisSub>,
}

/// Both connections, up.
struct Connected {
    /// Counts connections, so that news about an older one is told apart.
    generation: u64,
    commands: MultiplexedConnection,
    sink: PubSubSink,
    /// The pub/sub stream, added to the actor; cancelled (and so closed) when the link is lost.
    messages: SpawnHandle,
    /// The subscriptions Redis has confirmed on this connection.
    applied: HashSet<RedisSub>,
    /// Whether a batch of subscription commands is in flight (at most one is).
    syncing: bool,
}

/// The state of the link to Redis.
enum Link {
    Up(Connected),
    /// Not connected: a connection attempt is under way or scheduled.
    Down {
        since: Instant,
        /// Connection attempts made since the link went down.
        attempts: u32,
        /// Pauses before attempts so far; the next one is `backoff(pauses)`.
        pauses: u32,
        /// Whether this outage was logged at `warn` already (it is, once).
        warned: bool,
    },
}

/// The broker actor of one worker process, speaking Redis; see the module docs.
pub struct RedisBroker {
    client: Client,
    /// Where Redis is, for logs and errors: `host:port/db`, never the password.
    target: String,
    deliver: Recipient<BrokerMessage>,
    wanted: HashMap<RedisSub, Pattern>,
    link: Link,
    generation: u64,
}

impl RedisBroker {
    /// Starts the actor on the current arbiter; messages on subscriptions go to `deliver`.
    ///
    /// Fails only when `url` is not a Redis URL: connecting happens in the background (and
    /// again after every loss), with [`IsConnected`] telling whether it is done.
    pub fn start(
        url: &str,
        deliver: Recipient<BrokerMessage>,
    ) -> Result<Addr<RedisBroker>, BrokerError> {
        let client =
            Client::open(url).map_err(|e| BrokerError::Server(format!("not a Redis URL: {e}")))?;
        let broker = RedisBroker {
            target: log_target(&client),
            client,
            deliver,
            wanted: HashMap::new(),
            link: Link::Down {
                since: Instant::now(),
                attempts: 0,
                pauses: 0,
                warned: false,
            },
            generation: 0,
        };
        Ok(Actor::start(broker))
    }

    /// Opens both connections and restores the wanted subscriptions on them.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if let Link::Down { attempts, .. } = &mut self.link {
            *attempts = attempts.saturating_add(1);
        }
        let subscriptions: Vec<RedisSub> = self.wanted.keys().cloned().collect();
        let opening = open(self.client.clone(), subscriptions);
        ctx.spawn(
            wrap_future(opening).map(|opened, act: &mut Self, ctx| match opened {
                Ok(opened) => act.up(opened, ctx),
                Err(e) => act.connect_failed(&e, ctx),
            }),
        );
    }

    fn up(&mut self, opened: Opened, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let closed = stream::once(future::ready(PubSubEvent::Closed(generation)));
        let messages = ctx.add_stream(opened.messages.map(PubSubEvent::Message).chain(closed));
        let subscriptions = opened.applied.len();
        let connected = Connected {
            generation,
            commands: opened.commands,
            sink: opened.sink,
            messages,
            applied: opened.applied,
            syncing: false,
        };
        match std::mem::replace(&mut self.link, Link::Up(connected)) {
            Link::Down {
                since, attempts, ..
            } if generation > 1 => log::info!(
                "redis reconnected addr={} subscriptions={subscriptions} attempts={attempts} downtime_ms={}",
                self.target,
                since.elapsed().as_millis()
            ),
            _ => log::info!(
                "redis connected addr={} subscriptions={subscriptions}",
                self.target
            ),
        }
        // Subscriptions changed while connecting are caught up now.
        self.sync(ctx);
    }

    fn connect_failed(&mut self, error: &BrokerError, ctx: &mut Context<Self>) {
        let Link::Down {
            attempts, warned, ..
        } = &mut self.link
        else {
            return;
        };
        if *warned {
            log::debug!(
                "redis connect failed addr={} attempt={attempts} error={error}",
                self.target
            );
        } else {
            *warned = true;
            log::warn!(
                "redis unavailable addr={} error={error} retrying=true",
                self.target
            );
        }
        self.retry_later(ctx);
    }

    /// Drops connection `generation` if it is the current one, and schedules a reconnect.
    fn lost(&mut self, generation: u64, reason: &str, ctx: &mut Context<Self>) {
        let Link::Up(connected) = &self.link else {
            return;
        };
        if connected.generation != generation {
            return;
        }
        ctx.cancel_future(connected.messages);
        log::warn!(
            "redis connection lost addr={} error={reason} subscriptions={} reconnecting=true",
            self.target,
            self.wanted.len()
        );
        self.link = Link::Down {
            since: Instant::now(),
            attempts: 0,
            pauses: 0,
            warned: true,
        };
        self.retry_later(ctx);
    }

    fn retry_later(&mut self, ctx: &mut Context<Self>) {
        if let Link::Down { pauses, .. } = &mut self.link {
            let pause = backoff(*pauses, rand::random());
            *pauses = pauses.saturating_add(1);
            ctx.run_later(pause, |act, ctx| act.connect(ctx));
        }
    }

    /// Sends Redis the difference between the wanted and the applied subscriptions, unless a
    /// batch is in flight already (its completion calls this again).
    fn sync(&mut self, ctx: &mut Context<Self>) {
        let Link::Up(connected) = &mut self.link else {
            return;
        };
        if connected.syncing {
            return;
        }
        let add: Vec<RedisSub> = (self.wanted.keys())
            .filter(|sub| !connected.applied.contains(*sub))
            .cloned()
            .collect();
        let remove: Vec<RedisSub> = (connected.applied.iter())
            .filter(|sub| !self.wanted.contains_key(*sub))
            .cloned()
            .collect();
        if add.is_empty() && remove.is_empty() {
            return;
        }
        connected.syncing = true;
        let generation = connected.generation;
        let mut sink = connected.sink.clone();
        let batch = async move {
            let result = apply(&mut sink, &remove, &add).await;
            (result, remove, add)
        };
        ctx.spawn(
            wrap_future(batch).map(
                move |(result, remove, add), act: &mut Self, ctx| match result {
                    Ok(()) => {
                        if let Link::Up(connected) = &mut act.link {
                            if connected.generation == generation {
                                for sub in &remove {
                                    connected.applied.remove(sub);
                                }
                                connected.applied.extend(add);
                                connected.syncing = false;
                            }
                        }
                        act.sync(ctx);
                    }
                    Err(e) => act.lost(generation, &e.to_string(), ctx),
                },
            ),
        );
    }

    /// Pings both connections; a failure or a late answer counts as losing Redis.
    fn check_health(&mut self, ctx: &mut Context<Self>) {
        let Link::Up(connected) = &self.link else {
            return;
        };
        let generation = connected.generation;
        let mut commands = connected.commands.clone();
        let mut sink = connected.sink.clone();
        let pings = async move {
            bounded(
                "PING",
                redis::cmd("PING").query_async::<Value>(&mut commands),
            )
            .await?;
            bounded("PING", sink.ping::<Value>()).await
        };
        ctx.spawn(wrap_future(pings).map(move |result, act: &mut Self, ctx| {
            if let Err(e) = result {
                act.lost(generation, &e.to_string(), ctx);
            }
        }));
    }

    /// Hands a message from Redis to the router, as the subscription it arrived on.
    fn deliver_message(&self, msg: Msg) {
        let Ok(channel) = msg.get_channel::<String>() else {
            log::debug!("redis message on a channel that is not UTF-8 dropped=true");
            return;
        };
        let sub = match msg.get_pattern::<Option<String>>() {
            Ok(Some(glob)) => RedisSub::Glob(glob),
            _ => RedisSub::Channel(channel.clone()),
        };
        let Some(pattern) = self.wanted.get(&sub) else {
            log::debug!("redis message for a dropped subscription channel={channel}");
            return;
        };
        let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
        log::debug!(
            "redis message subscription={pattern} channel={channel} bytes={}",
            payload.len()
        );
        self.deliver.do_send(BrokerMessage {
            subscription: pattern.clone(),
            channel: Arc::from(channel),
            payload,
        });
    }

    /// Runs one command on the command connection, bounded by the command timeout; a connection
    /// error counts as losing Redis.
    fn run<T, F>(
        &self,
        what: &'static str,
        request: impl FnOnce(MultiplexedConnection) -> F,
    ) -> ResponseActFuture<Self, Result<T, BrokerError>>
    where
        T: 'static,
        F: Future<Output = RedisResult<T>> + 'static,
    {
        let Link::Up(connected) = &self.link else {
            let down = format!("no connection to redis at {}, reconnecting", self.target);
            return Box::pin(actix::fut::ready(Err(BrokerError::Unavailable(down))));
        };
        let generation = connected.generation;
        let answer = bounded(what, request(connected.commands.clone()));
        Box::pin(wrap_future(answer).map(move |result, act: &mut Self, ctx| {
            if let Err(BrokerError::Unavailable(reason)) = &result {
                act.lost(generation, reason, ctx);
            }
            result
        }))
    }
}

/// Opens the command and the pub/sub connection and subscribes to `subscriptions`.
async fn open(client: Client, subscriptions: Vec<RedisSub>) -> Result<Opened, BrokerError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(None);
    let connecting = client.get_multiplexed_async_connection_with_config(&config);
    let commands = bounded("connect", connecting).await?;
    let (mut sink, messages) = bounded("connect", client.get_async_pubsub()).await?.split();
    apply(&mut sink, &[], &subscriptions).await?;
    Ok(Opened {
        commands,
        sink,
        messages,
        applied: subscriptions.into_iter().collect(),
    })
}

/// Unsubscribes from `remove` and subscribes to `add`, each command awaited and bounded.
///
/// A refusal by Redis (an ACL, say) is logged and skipped, since asking again would be refused
/// again; only losing the connection is an error.
async fn apply(
    sink: &mut PubSubSink,
    remove: &[RedisSub],
    add: &[RedisSub],
) -> Result<(), BrokerError> {
    let batches = [
        (SubCommand::Unsubscribe, remove),
        (SubCommand::PUnsubscribe, remove),
        (SubCommand::Subscribe, add),
        (SubCommand::PSubscribe, add),
    ];
    for (command, subs) in batches {
        let names: Vec<&str> = (subs.iter())
            .filter_map(|sub| match sub {
                RedisSub::Channel(name) if !command.takes_globs() => Some(name.as_str()),
                RedisSub::Glob(name) if command.takes_globs() => Some(name.as_str()),
                _ => None,
            })
            .collect();
        for chunk in names.chunks(NAMES_PER_COMMAND) {
            match bounded(command.name(), command.send(sink, chunk)).await {
                Ok(()) => {}
                Err(BrokerError::Server(e)) => log::warn!(
                    "redis refused subscription change command={} names={} error={e}",
                    command.name(),
                    chunk.len()
                ),
                Err(unavailable) => return Err(unavailable),
            }
        }
    }
    Ok(())
}

/// Awaits `request` for at most the command timeout, sorting failures into the broker's errors.
async fn bounded<T>(
    what: &'static str,
    request: impl Future<Output = RedisResult<T>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(BrokerError::Unavailable(format!(
            "no answer to {what} within {} ms",
            COMMAND_TIMEOUT.as_millis()
        ))),
    }
}

/// A connection that broke (or must be replaced) makes Redis unavailable; anything else is the
/// server refusing one command.
fn classify(e: &RedisError) -> BrokerError {
    if e.is_io_error() || e.is_unrecoverable_error() {
        BrokerError::Unavailable(e.to_string())
    } else {
        BrokerError::Server(e.to_string())
    }
}

/// Where `client` connects, fit for logs: `host:port/db` (or the socket path), no credentials.
fn log_target(client: &Client) -> String {
    let info = client.get_connection_info();
    format!("{}/{}", info.addr(), info.redis_settings().db())
}

fn session_key(id: &str) -> String {
    format!("{SESSION_KEY_PREFIX}{id}")
}

impl Actor for RedisBroker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
        ctx.run_interval(HEALTH_CHECK_EVERY, |act, ctx| {
            // The timers would keep an actor nobody can reach alive (and reconnecting) forever.
            if ctx.connected() {
                act.check_health(ctx);
            } else {
                log::info!("redis broker stopped addr={} reason=unused", act.target);
                ctx.stop();
            }
        });
    }
}

impl StreamHandler<PubSubEvent> for RedisBroker {
    fn handle(&mut self, event: PubSubEvent, ctx: &mut Context<Self>) {
        match event {
            PubSubEvent::Message(msg) => self.deliver_message(msg),
            PubSubEvent::Closed(generation) => {
                self.lost(generation, "pub/sub connection closed", ctx)
            }
        }
    }

    /// The end of a pub/sub stream was reported by its `Closed` event already; unlike the
    /// default, this keeps the actor running, since it outlives its connections.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<Subscribe> for RedisBroker {
    type Result = ();

    fn handle(&mut self, Subscribe(pattern): Subscribe, ctx: &mut Context<Self>) {
        if let Entry::Vacant(wanted) = self.wanted.entry(RedisSub::of(&pattern)) {
            log::debug!("redis subscribe pattern={pattern}");
            wanted.insert(pattern);
            self.sync(ctx);
        }
    }
}

impl Handler<Unsubscribe> for RedisBroker {
    type Result = ();

    fn handle(&mut self, Unsubscribe(pattern): Unsubscribe, ctx: &mut Context<Self>) {
        if self.wanted.remove(&RedisSub::of(&pattern)).is_some() {
            log::debug!("redis unsubscribe pattern={pattern}");
            self.sync(ctx);
        }
    }
}

impl Handler<Publish> for RedisBroker {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Context<Self>) -> Self::Result {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&*msg.channel).arg(&msg.payload[..]);
        self.run("PUBLISH", move |mut commands| async move {
            let _receivers: i64 = publish.query_async(&mut commands).await?;
            Ok(())
        })
    }
}

impl Handler<StoreSession> for RedisBroker {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: StoreSession, _ctx: &mut Context<Self>) -> Self::Result {
        let ttl_ms = u64::try_from(msg.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut set = redis::cmd("SET");
        set.arg(session_key(&msg.id))
            .arg(&msg.record[..])
            .arg("PX")
            .arg(ttl_ms);
        self.run("SET", move |mut commands| async move {
            set.query_async::<()>(&mut commands).await
        })
    }
}

impl Handler<LoadSession> for RedisBroker {
    type Result = ResponseActFuture<Self, Result<Option<Bytes>, BrokerError>>;

    fn handle(&mut self, msg: LoadSession, _ctx: &mut Context<Self>) -> Self::Result {
        let mut get = redis::cmd("GET");
        get.arg(session_key(&msg.id));
        self.run("GET", move |mut commands| async move {
            let record: Option<Vec<u8>> = get.query_async(&mut commands).await?;
            Ok(record.map(Bytes::from))
        })
    }
}

impl Handler<SharedSecret> for RedisBroker {
    type Result = ResponseActFuture<Self, Result<String, BrokerError>>;

    fn handle(&mut self, msg: SharedSecret, _ctx: &mut Context<Self>) -> Self::Result {
        // SET NX and GET in one transaction: whoever comes first stores, everyone reads that.
        let mut exchange = redis::pipe();
        exchange.atomic();
        exchange
            .cmd("SET")
            .arg(SECRET_KEY)
            .arg(&msg.proposed)
            .arg("NX")
            .ignore();
        exchange.cmd("GET").arg(SECRET_KEY);
        let stored = self.run("SET NX/GET", move |mut commands| async move {
            let (stored,): (Option<String>,) = exchange.query_async(&mut commands).await?;
            Ok(stored)
        });
        Box::pin(stored.map(|result, _act, _ctx| {
            result?
                .ok_or_else(|| BrokerError::Server(format!("{SECRET_KEY} vanished after SET NX")))
        }))
    }
}

/// Redis hash holding the cluster directory.
const DIRECTORY_KEY: &str = "rohrpost:workers";

impl Handler<Announce> for RedisBroker {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: Announce, _ctx: &mut Context<Self>) -> Self::Result {
        let mut hset = redis::cmd("HSET");
        hset.arg(DIRECTORY_KEY).arg(&*msg.url).arg(&msg.entry[..]);
        self.run("HSET", move |mut commands| async move {
            let _fields: i64 = hset.query_async(&mut commands).await?;
            Ok(())
        })
    }
}

impl Handler<Withdraw> for RedisBroker {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: Withdraw, _ctx: &mut Context<Self>) -> Self::Result {
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(DIRECTORY_KEY).arg(&msg.urls);
        self.run("HDEL", move |mut commands| async move {
            let _removed: i64 = hdel.query_async(&mut commands).await?;
            Ok(())
        })
    }
}

impl Handler<Directory> for RedisBroker {
    type Result = ResponseActFuture<Self, Result<Vec<(String, Bytes)>, BrokerError>>;

    fn handle(&mut self, _msg: Directory, _ctx: &mut Context<Self>) -> Self::Result {
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(DIRECTORY_KEY);
        self.run("HGETALL", move |mut commands| async move {
            let pairs: Vec<(String, Vec<u8>)> = hgetall.query_async(&mut commands).await?;
            Ok(pairs
                .into_iter()
                .map(|(url, entry)| (url, Bytes::from(entry)))
                .collect())
        })
    }
}

impl Handler<IsConnected> for RedisBroker {
    type Result = bool;

    fn handle(&mut self, _msg: IsConnected, _ctx: &mut Context<Self>) -> bool {
        matches!(self.link, Link::Up(_))
    }
}

/// Test hook: whether Redis has confirmed exactly the wanted subscriptions.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "bool")]
struct Settled;

#[cfg(test)]
impl Handler<Settled> for RedisBroker {
    type Result = bool;

    fn handle(&mut self, _msg: Settled, _ctx: &mut Context<Self>) -> bool {
        match &self.link {
            Link::Up(connected) => {
                !connected.syncing
                    && connected.applied.len() == self.wanted.len()
                    && connected
                        .applied
                        .iter()
                        .all(|s| self.wanted.contains_key(s))
            }
            Link::Down { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
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
    struct Harness {
        broker: Addr<RedisBroker>,
        inbox: mpsc::UnboundedReceiver<BrokerMessage>,
    }

    impl Harness {
        fn start(url: &str) -> Harness {
            let _ = env_logger::builder().is_test(true).try_init();
            let (sender, inbox) = mpsc::unbounded_channel();
            let deliver = Inbox(sender).start().recipient();
            let broker = RedisBroker::start(url, deliver).expect("a valid Redis URL");
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
        let refused = RedisBroker::start("http//nowhere", deliver);
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
        let publish = h.try_publish("news", "into the void").await;
        assert!(
            matches!(publish, Err(BrokerError::Unavailable(_))),
            "{publish:?}"
        );
        h.until_connected(false, PROMPTLY).await;

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
}
