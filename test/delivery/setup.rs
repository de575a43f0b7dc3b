//! The system under test of one scenario: the real supervisor with two workers, on the broker
//! the scenario is about.
//!
//! - [`BrokerUnderTest::Embedded`]: the embedded broker in the supervisor (its log lives there
//!   and survives worker restarts);
//! - [`BrokerUnderTest::Redis`]: a private `redis-server` of the scenario's own, without
//!   persistence, on a port below the ephemeral range (it may be restarted on that port while
//!   the test holds hundreds of connections);
//! - [`BrokerUnderTest::SavingRedis`]: the same with a data directory, which keeps what the test
//!   `SAVE`s across a restart;
//! - [`BrokerUnderTest::RedisBehindProxy`]: a private `redis-server` that the supervisor and its
//!   workers reach through a test [`Proxy`], which can cut the network.
//!
//! The history is left at its defaults (enabled, 10,000 entries, 5 minutes): what the tests
//! count is what an operator gets without configuring anything.

use std::net::SocketAddr;

use tempfile::TempDir;

use crate::ports::PortBlock;
use crate::process::{Broker, Options, Supervisor};
use crate::proxy::Proxy;
use crate::redis_server::RedisServer;

/// Which broker a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerUnderTest {
    Embedded,
    Redis,
    SavingRedis,
    RedisBehindProxy,
}

/// A running supervisor, every worker ready, and its private Redis (and proxy) if it has one.
/// Dropped in field order: the supervisor goes before its network and its Redis.
pub struct Setup {
    pub sup: Supervisor,
    proxy: Option<Proxy>,
    redis: Option<RedisServer>,
    _data: Option<TempDir>,
}

impl Setup {
    /// Starts the supervisor of two workers on `broker`, with `extra_config` appended to its
    /// configuration, and waits until both workers are ready.
    pub async fn start(broker: BrokerUnderTest, extra_config: String) -> Setup {
        let data = (broker == BrokerUnderTest::SavingRedis)
            .then(|| tempfile::tempdir().expect("a data directory for Redis"));
        let port = PortBlock::single();
        let redis = match broker {
            BrokerUnderTest::Embedded => None,
            _ => Some(RedisServer::start_on(port, data.as_ref().map(TempDir::path)).await),
        };
        let proxy = (broker == BrokerUnderTest::RedisBehindProxy)
            .then(|| Proxy::start(SocketAddr::from(([127, 0, 0, 1], port))));
        let url = match (&proxy, &redis) {
            (Some(proxy), _) => Some(proxy.redis_url()),
            (None, Some(redis)) => Some(redis.url()),
            (None, None) => None,
        };
        let options = Options {
            broker: url.map_or(Broker::Embedded, Broker::Redis),
            extra_config,
            ..Options::default()
        };
        let sup = Supervisor::start(options, PortBlock::find(2)).await;
        sup.wait_for("every worker ready", |h| h.all_ready_in(1))
            .await;
        Setup {
            sup,
            proxy,
            redis,
            _data: data,
        }
    }

    pub fn main_port(&self) -> u16 {
        self.sup.ports.main
    }

    /// The private Redis (the scenario runs on one).
    pub fn redis(&mut self) -> &mut RedisServer {
        self.redis.as_mut().expect("a scenario on Redis")
    }

    /// The proxy between Rohrpost and its Redis (the scenario has one).
    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("a scenario behind a proxy")
    }
}
