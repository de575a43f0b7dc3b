//! The Redis broker: the actor through which one worker process publishes, subscribes and keeps
//! session records in Redis (Rohrpost's, and the original 0.x server's: [`legacy`]).
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

use crate::broker::ttl_ms;
use bytes::Bytes;
use futures_util::{future, stream, StreamExt};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, Msg, RedisError, RedisResult, Value};

use super::log::{
    Confirm, Follower, HistorySettings, LogRead, Position, PublishLogged, ReadLog, Subscriptions,
    Waiters,
};
use super::{
    backoff, detached, Announce, BrokerError, BrokerMessage, Directory, IsConnected, LinkLost,
    LinkRestored, LoadSession, Publish, SharedSecret, StoreSession, Subscribe, Unsubscribe,
    WatchRestored, Withdraw, COMMAND_TIMEOUT, HEALTH_CHECK_EVERY,
};
use crate::topics::Pattern;

mod directory;
mod functions;
mod lead;
mod legacy;

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
    /// Told when the server is back after an outage ([`WatchRestored`]).
    restored: Option<Recipient<LinkRestored>>,
    wanted: HashMap<RedisSub, Pattern>,
    link: Link,
    generation: u64,
    /// The `rohrpost` function library (the publication log, the session directory, the event
    /// hook's lease), loaded on every connection.
    library: Arc<str>,
    /// Keeps logged deliveries gapless across reconnects.
    follower: Follower,
    /// [`Confirm`]s waiting for their subscriptions to be applied.
    waiters: Waiters<RedisSub>,
}

impl RedisBroker {
    /// Starts the actor on the current arbiter; messages on subscriptions go to `deliver`.
    ///
    /// Fails only when `url` is not a Redis URL: connecting happens in the background (and
    /// again after every loss), with [`IsConnected`] telling whether it is done.
    pub fn start(
        url: &str,
        history: HistorySettings,
        deliver: Recipient<BrokerMessage>,
    ) -> Result<Addr<RedisBroker>, BrokerError> {
        let client =
            Client::open(url).map_err(|e| BrokerError::Server(format!("not a Redis URL: {e}")))?;
        let broker = RedisBroker {
            target: log_target(&client),
            client,
            deliver,
            restored: None,
            wanted: HashMap::new(),
            link: Link::Down {
                since: Instant::now(),
                attempts: 0,
                pauses: 0,
                warned: false,
            },
            generation: 0,
            library: Arc::from(functions::library(&history)),
            follower: Follower::new(history.enabled),
            waiters: Waiters::default(),
        };
        Ok(Actor::start(broker))
    }

    /// Whether every one of `subs` is applied on the current connection or no longer wanted.
    fn confirmed(&self, subs: &[RedisSub]) -> bool {
        let Link::Up(connected) = &self.link else {
            return false;
        };
        (subs.iter()).all(|s| connected.applied.contains(s) || !self.wanted.contains_key(s))
    }

    /// Answers the waiting [`Confirm`]s that are confirmed now.
    fn wake_waiters(&mut self) {
        let mut waiters = std::mem::take(&mut self.waiters);
        waiters.wake(|subs| self.confirmed(subs));
        self.waiters = waiters;
    }

    /// After a reconnect: replays the logged messages missed while the link was down, then tells
    /// the watcher the link is back (and whether a gap remains).
    fn fill_gap(&mut self, ctx: &mut Context<Self>) {
        let Some(after) = self.follower.reconnected(self.restored.as_ref()) else {
            return;
        };
        let read = self.read_log(Some(after), ctx);
        ctx.spawn(wrap_future(read).map(|read, act: &mut Self, _ctx| {
            let wanted = Subscriptions::new(act.wanted.values());
            let restored = act.restored.as_ref();
            (act.follower).refill(read, &wanted, &act.deliver, restored, "redis");
        }));
    }

    /// Reads the publication log after `after` (or only its epoch and head).
    fn read_log(
        &mut self,
        after: Option<Position>,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<LogRead, BrokerError>> {
        let mut read = redis::cmd("FCALL");
        read.arg("rohrpost_read").arg(0);
        match &after {
            Some(after) => read.arg(&*after.epoch).arg(after.seq),
            None => read.arg("").arg(0),
        };
        let answer = self.run(
            "FCALL rohrpost_read",
            move |mut commands| async move { read.query_async(&mut commands).await },
            ctx,
        );
        Box::pin(async move { functions::parse_read(answer.await?) })
    }

    /// Opens both connections and restores the wanted subscriptions on them.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if let Link::Down { attempts, .. } = &mut self.link {
            *attempts = attempts.saturating_add(1);
        }
        let subscriptions: Vec<RedisSub> = self.wanted.keys().cloned().collect();
        let opening = open(self.client.clone(), subscriptions, self.library.clone());
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
        self.wake_waiters();
        if generation > 1 {
            self.fill_gap(ctx);
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
                        act.wake_waiters();
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
    fn deliver_message(&mut self, msg: Msg) {
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
        let message = BrokerMessage {
            subscription: pattern.clone(),
            channel: Arc::from(channel),
            position: functions::stamp(&payload),
            payload,
        };
        if let Some(message) = self.follower.live(message) {
            self.deliver.do_send(message);
        }
    }

    /// Runs one command on the command connection, bounded by the command timeout; a connection
    /// error counts as losing Redis.
    fn run<T, F>(
        &self,
        what: &'static str,
        request: impl FnOnce(MultiplexedConnection) -> F,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<T, BrokerError>>
    where
        T: 'static,
        F: Future<Output = RedisResult<T>> + 'static,
    {
        let Link::Up(connected) = &self.link else {
            let down = format!("no connection to redis at {}, reconnecting", self.target);
            return Box::pin(future::ready(Err(BrokerError::Unavailable(down))));
        };
        let generation = connected.generation;
        let answer = bounded(what, request(connected.commands.clone()));
        // Handed to the connection: a failure now may come after Redis carried it out (redis
        // reports every command in flight on a connection that broke alike).
        let answer = async move {
            answer.await.map_err(|e| match e {
                BrokerError::Unavailable(reason) => BrokerError::Uncertain(reason),
                other => other,
            })
        };
        detached(ctx.address(), generation, answer)
    }
}

impl Handler<WatchRestored> for RedisBroker {
    type Result = ();

    fn handle(&mut self, msg: WatchRestored, _ctx: &mut Context<Self>) {
        self.restored = Some(msg.0);
    }
}

impl Handler<LinkLost> for RedisBroker {
    type Result = ();

    fn handle(&mut self, msg: LinkLost, ctx: &mut Context<Self>) {
        self.lost(msg.generation, &msg.reason, ctx);
    }
}

/// Opens the command and the pub/sub connection, loads the function `library` and subscribes
/// to `subscriptions`.
async fn open(
    client: Client,
    subscriptions: Vec<RedisSub>,
    library: Arc<str>,
) -> Result<Opened, BrokerError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(None);
    let connecting = client.get_multiplexed_async_connection_with_config(&config);
    let mut commands = bounded("connect", connecting).await?;
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD").arg("REPLACE").arg(&*library);
    let loaded = bounded("FUNCTION LOAD", load.query_async::<Value>(&mut commands)).await;
    match loaded {
        Ok(_) => {}
        Err(BrokerError::Server(e)) => log::warn!(
            "redis refused Rohrpost's functions (Redis 7 or later needed); logged publishes and the session directory will fail error={e}"
        ),
        Err(e) => return Err(e),
    }
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
        self.reap_expired(ctx);
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
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) -> Self::Result {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&*msg.channel).arg(&msg.payload[..]);
        self.run(
            "PUBLISH",
            move |mut commands| async move {
                let _receivers: i64 = publish.query_async(&mut commands).await?;
                Ok(())
            },
            ctx,
        )
    }
}

impl Handler<PublishLogged> for RedisBroker {
    type Result = ResponseFuture<Result<Position, BrokerError>>;

    fn handle(&mut self, msg: PublishLogged, ctx: &mut Context<Self>) -> Self::Result {
        let mut fcall = redis::cmd("FCALL");
        fcall
            .arg("rohrpost_publish")
            .arg(1)
            .arg(&*msg.channel)
            .arg(&msg.payload[..]);
        let answer = self.run(
            "FCALL rohrpost_publish",
            move |mut commands| async move { fcall.query_async::<String>(&mut commands).await },
            ctx,
        );
        Box::pin(async move {
            let position = answer.await?;
            Position::parse(&position).ok_or_else(|| {
                BrokerError::Server(format!("rohrpost_publish answered {position:?}"))
            })
        })
    }
}

impl Handler<ReadLog> for RedisBroker {
    type Result = ResponseFuture<Result<LogRead, BrokerError>>;

    fn handle(&mut self, msg: ReadLog, ctx: &mut Context<Self>) -> Self::Result {
        self.read_log(msg.after, ctx)
    }
}

impl Handler<Confirm> for RedisBroker {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, Confirm(patterns): Confirm, _ctx: &mut Context<Self>) -> Self::Result {
        if !matches!(self.link, Link::Up(_)) {
            return Box::pin(future::ready(false));
        }
        let subs: Vec<RedisSub> = patterns.iter().map(RedisSub::of).collect();
        let confirmed = self.confirmed(&subs);
        self.waiters.confirm(subs, confirmed)
    }
}

impl Handler<StoreSession> for RedisBroker {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: StoreSession, ctx: &mut Context<Self>) -> Self::Result {
        let ttl_ms = ttl_ms(msg.ttl);
        let mut set = redis::cmd("SET");
        set.arg(session_key(&msg.id))
            .arg(&msg.record[..])
            .arg("PX")
            .arg(ttl_ms);
        self.run(
            "SET",
            move |mut commands| async move { set.query_async::<()>(&mut commands).await },
            ctx,
        )
    }
}

impl Handler<LoadSession> for RedisBroker {
    type Result = ResponseFuture<Result<Option<Bytes>, BrokerError>>;

    fn handle(&mut self, msg: LoadSession, ctx: &mut Context<Self>) -> Self::Result {
        let mut get = redis::cmd("GET");
        get.arg(session_key(&msg.id));
        self.run(
            "GET",
            move |mut commands| async move {
                let record: Option<Vec<u8>> = get.query_async(&mut commands).await?;
                Ok(record.map(Bytes::from))
            },
            ctx,
        )
    }
}

impl Handler<SharedSecret> for RedisBroker {
    type Result = ResponseFuture<Result<String, BrokerError>>;

    fn handle(&mut self, msg: SharedSecret, ctx: &mut Context<Self>) -> Self::Result {
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
        let stored = self.run(
            "SET NX/GET",
            move |mut commands| async move {
                let (stored,): (Option<String>,) = exchange.query_async(&mut commands).await?;
                Ok(stored)
            },
            ctx,
        );
        Box::pin(async move {
            stored
                .await?
                .ok_or_else(|| BrokerError::Server(format!("{SECRET_KEY} vanished after SET NX")))
        })
    }
}

/// Redis hash holding the cluster directory.
const DIRECTORY_KEY: &str = "rohrpost:workers";

impl Handler<Announce> for RedisBroker {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: Announce, ctx: &mut Context<Self>) -> Self::Result {
        let mut hset = redis::cmd("HSET");
        hset.arg(DIRECTORY_KEY).arg(&*msg.url).arg(&msg.entry[..]);
        self.run(
            "HSET",
            move |mut commands| async move {
                let _fields: i64 = hset.query_async(&mut commands).await?;
                Ok(())
            },
            ctx,
        )
    }
}

impl Handler<Withdraw> for RedisBroker {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: Withdraw, ctx: &mut Context<Self>) -> Self::Result {
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(DIRECTORY_KEY).arg(&msg.urls);
        self.run(
            "HDEL",
            move |mut commands| async move {
                let _removed: i64 = hdel.query_async(&mut commands).await?;
                Ok(())
            },
            ctx,
        )
    }
}

impl Handler<Directory> for RedisBroker {
    type Result = ResponseFuture<Result<Vec<(String, Bytes)>, BrokerError>>;

    fn handle(&mut self, _msg: Directory, ctx: &mut Context<Self>) -> Self::Result {
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(DIRECTORY_KEY);
        self.run(
            "HGETALL",
            move |mut commands| async move {
                let pairs: Vec<(String, Vec<u8>)> = hgetall.query_async(&mut commands).await?;
                Ok(pairs
                    .into_iter()
                    .map(|(url, entry)| (url, Bytes::from(entry)))
                    .collect())
            },
            ctx,
        )
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
mod tests;
