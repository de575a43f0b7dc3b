//! The broker interface: publish/subscribe between workers, machines and backends, and the
//! session store.
//!
//! Whatever carries the messages — Redis ([`redis`]) or the embedded broker that the supervisor
//! hosts for the workers of one machine ([`local`]) — a worker sees it as a [`Broker`]: a set of typed message recipients. Messages that arrive on
//! a subscription are told to the worker's topic router as [`BrokerMessage`]s.
//!
//! Subscriptions are by [`Pattern`]: an exact pattern subscribes to one channel, a wildcard
//! pattern to every channel it matches, with Rohrpost's matching rules (`*` any run of characters,
//! everything else literal). A broker remembers its subscriptions and restores them by itself
//! after losing and regaining its server; while it is down, commands fail with
//! [`BrokerError::Unavailable`] and nothing is queued silently.
//!
//! The Redis broker also reads and writes the session records of the original 0.x server
//! ([`LegacyStore`]), which shared its Redis; the embedded broker has none.

pub mod directory;
pub mod lead;
pub mod local;
pub mod log;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use crate::legacy::record::LegacyRecord;
use crate::topics::Pattern;

/// The longest any command or connection attempt may take before the server counts as gone.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before the first reconnect attempt; it doubles with every failed one.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a broker pings its server, to notice a connection that died silently.
pub(crate) const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The pause number `pause` (counted from 0) of an outage: 100 ms doubling up to 5 s, shortened
/// by up to a quarter as `jitter` (in `0.0..1.0`) goes from 0 to 1, so that workers that lost
/// their server together do not return in lockstep. Shared by every broker implementation.
pub(crate) fn backoff(pause: u32, jitter: f64) -> Duration {
    let full = BACKOFF_FIRST
        .saturating_mul(1 << pause.min(16))
        .min(BACKOFF_MAX);
    full.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

/// A time to live or lease in whole milliseconds, as brokers take it: at least 1, saturated.
pub(crate) fn ttl_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Why a broker command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker server cannot be reached right now (reconnecting).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The server answered with an error.
    #[error("broker error: {0}")]
    Server(String),
    /// The command was sent but no answer came (a timeout, a connection lost after writing):
    /// the server may or may not have carried it out.
    #[error("broker outcome unknown: {0}")]
    Uncertain(String),
}

impl BrokerError {
    /// Whether the command was certainly not carried out (and so may be retried safely).
    pub fn not_done(&self) -> bool {
        !matches!(self, BrokerError::Uncertain(_))
    }
}

/// A message that arrived on a subscription; sent by the broker to the topic router.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct BrokerMessage {
    /// The subscription it arrived on (for an exact subscription, the channel itself).
    pub subscription: Pattern,
    /// The channel it was published on.
    pub channel: Arc<str>,
    pub payload: Bytes,
    /// Its place in the publication log, for a logged publish.
    pub position: Option<log::Position>,
}

/// Publishes `payload` on `channel`, outside the publication log.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Publish {
    pub channel: Arc<str>,
    pub payload: Bytes,
}

/// A broker command found connection `generation` lost (sent to the broker actor by the
/// command's own future): the actor drops that connection and connects again.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct LinkLost {
    pub generation: u64,
    pub reason: String,
}

/// Awaits a command's `answer` as a future of its own, telling `broker` when it found connection
/// `generation` lost. Commands do not wait in the broker actor's context: actix polls every
/// future a context holds whenever it wakes, so a burst of commands in flight there would cost
/// time quadratic in their number.
pub(crate) fn detached<A, T>(
    broker: Addr<A>,
    generation: u64,
    answer: impl std::future::Future<Output = Result<T, BrokerError>> + 'static,
) -> ResponseFuture<Result<T, BrokerError>>
where
    A: Actor<Context = Context<A>> + Handler<LinkLost>,
    T: 'static,
{
    Box::pin(async move {
        let result = answer.await;
        if let Err(BrokerError::Unavailable(reason) | BrokerError::Uncertain(reason)) = &result {
            broker.do_send(LinkLost {
                generation,
                reason: reason.clone(),
            });
        }
        result
    })
}

/// The broker has its server back after losing it. A server that restarted may have lost every
/// session record (Redis without persistence), so each live session stores its record again:
/// the broker tells the router, the router tells every session. Sent once the logged messages
/// missed meanwhile have been replayed.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct LinkRestored {
    /// Logged messages may have been lost that the log could not replay (its history was lost
    /// or trimmed): sessions tell their clients.
    pub gap: bool,
}

/// Asks a broker to tell `0` about every [`LinkRestored`] from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchRestored(pub Recipient<LinkRestored>);

/// Adds a subscription (idempotent; the router reference-counts).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Subscribe(pub Pattern);

/// Drops a subscription.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub Pattern);

/// Stores a session record (JSON) under its session id with a time to live.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct StoreSession {
    pub id: Arc<str>,
    pub record: Bytes,
    pub ttl: Duration,
}

/// Loads a session record; `None` when there is none (never stored, or expired).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<Bytes>, BrokerError>")]
pub struct LoadSession {
    pub id: Arc<str>,
}

/// Loads the original 0.x server's record of session `id` (its hash `session:<id>`); `None` when
/// there is none. Sent by a 0.x session that starts, beside [`LoadSession`].
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<LegacyRecord>, BrokerError>")]
pub struct LoadLegacySession {
    pub id: Arc<str>,
}

/// Replaces the original 0.x server's record of session `id` with `record`, with a time to
/// live. Sent by a 0.x session beside every [`StoreSession`], so that 0.x servers sharing the
/// store see the session as Rohrpost left it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct StoreLegacySession {
    pub id: Arc<str>,
    pub record: LegacyRecord,
    pub ttl: Duration,
}

/// The original 0.x server's session store, in a broker that shares its server with it (Redis).
#[derive(Clone)]
pub struct LegacyStore {
    pub load: Recipient<LoadLegacySession>,
    pub store: Recipient<StoreLegacySession>,
}

impl LegacyStore {
    pub fn of<A>(addr: &Addr<A>) -> LegacyStore
    where
        A: Actor<Context = Context<A>> + Handler<LoadLegacySession> + Handler<StoreLegacySession>,
    {
        LegacyStore {
            load: addr.clone().recipient(),
            store: addr.clone().recipient(),
        }
    }
}

/// The secret shared by every worker and machine: `proposed` is stored if none is, and the
/// stored one is returned.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<String, BrokerError>")]
pub struct SharedSecret {
    pub proposed: String,
}

/// Whether the broker is connected right now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "bool")]
pub struct IsConnected;

/// Writes this worker's entry in the cluster directory (Redis hash `rohrpost:workers`, field =
/// the worker's SockJS URL).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Announce {
    pub url: Arc<str>,
    pub entry: Bytes,
}

/// Removes entries from the cluster directory.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Withdraw {
    pub urls: Vec<String>,
}

/// Reads the whole cluster directory: (url, entry) pairs.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Vec<(String, Bytes)>, BrokerError>")]
pub struct Directory;

/// The cluster directory, kept by brokers that several machines share (Redis).
#[derive(Clone)]
pub struct Cluster {
    pub announce: Recipient<Announce>,
    pub withdraw: Recipient<Withdraw>,
    pub directory: Recipient<Directory>,
}

impl Cluster {
    pub fn of<A>(addr: &Addr<A>) -> Cluster
    where
        A: Actor<Context = Context<A>> + Handler<Announce> + Handler<Withdraw> + Handler<Directory>,
    {
        Cluster {
            announce: addr.clone().recipient(),
            withdraw: addr.clone().recipient(),
            directory: addr.clone().recipient(),
        }
    }
}

/// Receives and drops broker messages: the subscriber of a broker that is only used to publish
/// (the supervisor's server API).
pub struct Discard;

impl Actor for Discard {
    type Context = Context<Self>;
}

impl Handler<BrokerMessage> for Discard {
    type Result = ();

    fn handle(&mut self, _msg: BrokerMessage, _ctx: &mut Context<Self>) {}
}

/// A worker's handle on its broker.
#[derive(Clone)]
pub struct Broker {
    pub publish: Recipient<Publish>,
    pub subscribe: Recipient<Subscribe>,
    pub unsubscribe: Recipient<Unsubscribe>,
    pub store: Recipient<StoreSession>,
    pub load: Recipient<LoadSession>,
    pub secret: Recipient<SharedSecret>,
    pub connected: Recipient<IsConnected>,
    pub publish_logged: Recipient<log::PublishLogged>,
    pub read_log: Recipient<log::ReadLog>,
    pub confirm: Recipient<log::Confirm>,
    /// The session directory: presence, and the session events of its edges.
    pub directory: directory::Directory,
    /// The original 0.x server's session records, when the broker keeps them (Redis).
    pub legacy: Option<LegacyStore>,
}

impl Broker {
    /// The handle of any actor that speaks the broker messages.
    pub fn of<A>(addr: &Addr<A>) -> Broker
    where
        A: Actor<Context = Context<A>>
            + Handler<Publish>
            + Handler<Subscribe>
            + Handler<Unsubscribe>
            + Handler<StoreSession>
            + Handler<LoadSession>
            + Handler<SharedSecret>
            + Handler<IsConnected>
            + Handler<log::PublishLogged>
            + Handler<log::ReadLog>
            + Handler<log::Confirm>
            + Handler<directory::PutEntry>
            + Handler<directory::TouchEntries>
            + Handler<directory::EndEntry>
            + Handler<directory::ListEntries>
            + Handler<directory::GetEntry>,
    {
        Broker {
            directory: directory::Directory::of(addr),
            publish_logged: addr.clone().recipient(),
            read_log: addr.clone().recipient(),
            confirm: addr.clone().recipient(),
            publish: addr.clone().recipient(),
            subscribe: addr.clone().recipient(),
            unsubscribe: addr.clone().recipient(),
            store: addr.clone().recipient(),
            load: addr.clone().recipient(),
            secret: addr.clone().recipient(),
            connected: addr.clone().recipient(),
            legacy: None,
        }
    }

    /// The same handle, keeping the original 0.x server's session records in `legacy`.
    pub fn with_legacy(self, legacy: LegacyStore) -> Broker {
        Broker {
            legacy: Some(legacy),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_from_100_ms_to_5_s_with_jitter_below_a_quarter() {
        let ms = |attempt, jitter| backoff(attempt, jitter).as_millis();
        let without_jitter: Vec<u128> = (0..8).map(|attempt| ms(attempt, 0.0)).collect();
        assert_eq!(without_jitter, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(ms(u32::MAX, 0.0), 5000);
        assert_eq!(ms(0, 0.5), 87);
        assert_eq!(ms(6, 1.0), 3750);
    }
}
