//! The system under test: one or two real supervisors of two workers each, on the embedded
//! broker or on a private `redis-server` they share (two machines of a cluster), with a short
//! `sessions.resume_grace` and `hooks.events_url` pointing at the test's [`Sink`].

use std::time::Duration;

use serde_json::Value;

use crate::client::http;
use crate::common::WAIT;
use crate::ports::PortBlock;
use crate::process::{Broker, Options, Supervisor, API_KEY};
use crate::redis_server::RedisServer;
use crate::sink::Sink;

/// The resume grace of the tests: short, so that a session that went away ends soon.
pub const GRACE: Duration = Duration::from_secs(2);

/// Which broker a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerUnderTest {
    Embedded,
    Redis,
}

/// Running supervisors and their private Redis, if any; dropped in field order (the
/// supervisors before their Redis).
pub struct System {
    pub sups: Vec<Supervisor>,
    _redis: Option<RedisServer>,
}

impl System {
    /// Starts `machines` supervisors (two only on Redis) whose events go to `sink`, and waits
    /// until every worker is ready.
    pub async fn start(broker: BrokerUnderTest, machines: usize, sink: &Sink) -> System {
        assert!(machines == 1 || broker == BrokerUnderTest::Redis);
        let redis = match broker {
            BrokerUnderTest::Embedded => None,
            BrokerUnderTest::Redis => Some(RedisServer::start_on(PortBlock::single(), None).await),
        };
        let mut sups = Vec::new();
        for _ in 0..machines {
            let options = Options {
                broker: redis
                    .as_ref()
                    .map_or(Broker::Embedded, |r| Broker::Redis(r.url())),
                session_keys: format!("resume_grace = \"{}s\"", GRACE.as_secs()),
                extra_config: format!(
                    "[hooks]\nevents_url = \"{}\"\nevents_timeout = \"2s\"\n\n[cluster]\nenabled = {}\n\n\
                     [limits]\nmax_sessions_per_ip = 100000\n",
                    sink.url(),
                    machines > 1
                ),
                ..Options::default()
            };
            let sup = Supervisor::start(options, PortBlock::find(2)).await;
            sup.wait_for("every worker ready", |h| h.all_ready_in(1))
                .await;
            sups.push(sup);
        }
        System {
            sups,
            _redis: redis,
        }
    }

    pub fn main_port(&self) -> u16 {
        self.sups[0].ports.main
    }

    /// The value of `key` in the private Redis (the system runs on one).
    pub async fn redis_get(&self, key: &str) -> Option<String> {
        let url = self._redis.as_ref().expect("a system on Redis").url();
        let client = redis::Client::open(url).expect("a Redis URL");
        let mut conn = actix_rt::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .expect("Redis answers in time")
            .expect("a connection to Redis");
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("GET")
    }
}

/// An answer of the server API: status and JSON body (`Null` if not JSON).
pub struct ApiReply {
    pub status: u16,
    pub body: Value,
}

/// `method path` on the server API of `main_port`, with `body` if any.
pub async fn api(main_port: u16, method: &str, path: &str, body: Option<Value>) -> ApiReply {
    let url = format!("http://127.0.0.1:{main_port}{path}");
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("a method");
    let request = http()
        .request(method, &url)
        .insert_header(("Authorization", format!("Bearer {API_KEY}")));
    let sent = match body {
        Some(body) => request.send_json(&body),
        None => request.send(),
    };
    let mut res = actix_rt::time::timeout(WAIT, sent)
        .await
        .unwrap_or_else(|_| panic!("{url}: no answer within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let bytes = actix_rt::time::timeout(WAIT, res.body().limit(1 << 26))
        .await
        .expect("the body in time")
        .expect("the body");
    ApiReply {
        status: res.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// How many sessions `GET /api/sessions?topic=...&count=1` counts.
pub async fn count(main_port: u16, topic: &str) -> u64 {
    let reply = api(
        main_port,
        "GET",
        &format!("/api/sessions?topic={topic}&count=1"),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["count"].as_u64().expect("a count")
}
