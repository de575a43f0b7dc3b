//! The broker one test runs against, of either kind: what its workers are configured with, how
//! the test connects to it as the backend, and, for the restart tests, stopping and starting it.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::{BrokerClient, LocalServer, RedisServer, Subscription, REDIS_URL};

/// The two brokers a worker can have (`[broker] kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// `kind = "redis"`.
    Redis,
    /// `kind = "local"`: the embedded broker.
    Local,
}

/// Where a worker finds its broker.
#[derive(Clone, Debug)]
pub enum BrokerAddress {
    Redis { url: String },
    Local { socket: PathBuf },
}

impl BrokerAddress {
    /// The `[broker]` section of a worker's config.
    pub fn config_section(&self) -> Value {
        match self {
            BrokerAddress::Redis { url } => json!({ "kind": "redis", "redis_url": url }),
            BrokerAddress::Local { socket } => json!({ "kind": "local", "socket": socket }),
        }
    }
}

/// The broker of one test; an embedded broker or a private Redis is shut down on drop.
pub struct TestBroker {
    place: Place,
}

enum Place {
    /// The Redis on 127.0.0.1:6379, shared by every test running at once.
    SharedRedis,
    PrivateRedis(RedisServer),
    Local(LocalServer),
}

impl TestBroker {
    /// A broker of `kind` for a test that does not stop it: the shared Redis, or an embedded
    /// broker of the test's own.
    pub async fn start(kind: BrokerKind) -> TestBroker {
        let place = match kind {
            BrokerKind::Redis => Place::SharedRedis,
            BrokerKind::Local => Place::Local(LocalServer::start().await),
        };
        TestBroker { place }
    }

    /// A broker of `kind` the test may [`stop`](Self::stop): a private `redis-server`, or an
    /// embedded broker of the test's own.
    pub async fn stoppable(kind: BrokerKind) -> TestBroker {
        let place = match kind {
            BrokerKind::Redis => Place::PrivateRedis(RedisServer::start().await),
            BrokerKind::Local => Place::Local(LocalServer::start().await),
        };
        TestBroker { place }
    }

    /// Where workers find this broker.
    pub fn address(&self) -> BrokerAddress {
        match &self.place {
            Place::SharedRedis => BrokerAddress::Redis {
                url: REDIS_URL.to_owned(),
            },
            Place::PrivateRedis(server) => BrokerAddress::Redis { url: server.url() },
            Place::Local(server) => BrokerAddress::Local {
                socket: server.socket(),
            },
        }
    }

    /// A new client of the broker, for the test to act as the backend with.
    pub async fn connect(&self) -> BrokerClient {
        match self.address() {
            BrokerAddress::Redis { url } => BrokerClient::connect(&url).await,
            BrokerAddress::Local { socket } => BrokerClient::local(&socket).await,
        }
    }

    /// A subscription to `channel`, live on return: it sees what clients publish there.
    pub async fn subscribe(&self, channel: &str) -> Subscription {
        match self.address() {
            BrokerAddress::Redis { url } => Subscription::redis(&url, channel).await,
            BrokerAddress::Local { socket } => Subscription::local(&socket, channel).await,
        }
    }

    /// Stops the broker abruptly; its subscriptions and session records are gone.
    pub fn stop(&mut self) {
        match &mut self.place {
            Place::SharedRedis => panic!("the shared Redis is never stopped; use stoppable()"),
            Place::PrivateRedis(server) => server.stop(),
            Place::Local(server) => server.stop(),
        }
    }

    /// Starts the broker again, empty, where it was; it answers on return.
    pub async fn restart(&mut self) {
        match &mut self.place {
            Place::SharedRedis => panic!("the shared Redis is never restarted; use stoppable()"),
            Place::PrivateRedis(server) => server.restart().await,
            Place::Local(server) => server.restart().await,
        }
    }
}
