//! The broker interface: publish/subscribe between workers, machines and backends, and the
//! session store.
//!
//! Whatever carries the messages (Redis now; an embedded broker hosted by the supervisor next),
//! a worker sees it as a [`Broker`]: a set of typed message recipients. Messages that arrive on
//! a subscription are told to the worker's topic router as [`BrokerMessage`]s.
//!
//! Subscriptions are by [`Pattern`]: an exact pattern subscribes to one channel, a wildcard
//! pattern to every channel it matches, with Rohrpost's matching rules (`*` any run of characters,
//! everything else literal). A broker remembers its subscriptions and restores them by itself
//! after losing and regaining its server; while it is down, commands fail with
//! [`BrokerError::Unavailable`] and nothing is queued silently.

pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use crate::topics::Pattern;

/// Why a broker command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker server cannot be reached right now (reconnecting).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The server answered with an error.
    #[error("broker error: {0}")]
    Server(String),
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
}

/// Publishes `payload` on `channel`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Publish {
    pub channel: Arc<str>,
    pub payload: Bytes,
}

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
            + Handler<IsConnected>,
    {
        Broker {
            publish: addr.clone().recipient(),
            subscribe: addr.clone().recipient(),
            unsubscribe: addr.clone().recipient(),
            store: addr.clone().recipient(),
            load: addr.clone().recipient(),
            secret: addr.clone().recipient(),
            connected: addr.clone().recipient(),
        }
    }
}
