//! `inbound`: every session publishes K messages, and a subscriber beside the server counts
//! what arrives (on Redis with `--redis`, on the embedded broker with `--local-broker`; with
//! `--target nchan` the sessions are on nchan's publishing websocket location and the
//! subscriber is a websocket on its subscriber location).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::client::{self, Tally};
use super::nchan::{self, Location};
use super::scenarios::{open_sessions, wait_for, Clients};
use super::system::{self, CpuMeter};
use super::{BenchArgs, BenchError, Target};
use crate::broker::local::LocalBroker;
use crate::broker::{BrokerMessage, Subscribe};
use crate::topics::Pattern;

/// Counts the messages a broker subscription delivers, and when the last one came.
struct ArrivalCounter(Rc<Arrivals>);

#[derive(Default)]
struct Arrivals {
    count: Cell<u64>,
    last: Cell<Option<Instant>>,
}

impl Arrivals {
    fn arrived(&self) {
        self.count.set(self.count.get() + 1);
        self.last.set(Some(Instant::now()));
    }

    fn reset(&self) {
        self.count.set(0);
        self.last.set(None);
    }
}

impl Actor for ArrivalCounter {
    type Context = Context<Self>;
}

impl Handler<BrokerMessage> for ArrivalCounter {
    type Result = ();

    fn handle(&mut self, _msg: BrokerMessage, _ctx: &mut Context<Self>) {
        self.0.arrived();
    }
}

/// Subscribes to the bench topic on Redis, the embedded broker or nchan's subscriber location;
/// arrivals are counted. The embedded broker's client actor comes back too: it lives as long as
/// its address is held.
async fn count_arrivals(
    args: &BenchArgs,
    http: &awc::Client,
) -> Result<(Rc<Arrivals>, Option<actix::Addr<LocalBroker>>), BenchError> {
    let arrivals = Rc::new(Arrivals::default());
    let mut local = None;
    if args.target == Target::Nchan {
        let counter = arrivals.clone();
        let url = nchan::websocket_url(&args.url, Location::Subscriber, &args.topic);
        client::listen(http, &url, move || counter.arrived()).await?;
    } else if let Some(url) = &args.redis {
        let client = redis::Client::open(url.as_str())
            .map_err(|e| BenchError::Usage(format!("--redis: {e}")))?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| BenchError::Server(format!("redis: {e}")))?;
        pubsub
            .subscribe(&args.topic)
            .await
            .map_err(|e| BenchError::Server(format!("redis: {e}")))?;
        let counter = arrivals.clone();
        let mut stream = pubsub.into_on_message();
        actix_rt::spawn(async move {
            while stream.next().await.is_some() {
                counter.arrived();
            }
        });
    } else if let Some(path) = &args.local_broker {
        let pattern = Pattern::parse(&args.topic, 1024)
            .map_err(|e| BenchError::Usage(format!("--topic: {e}")))?;
        let counter = ArrivalCounter(arrivals.clone()).start();
        let broker = LocalBroker::start(path, counter.recipient());
        broker.do_send(Subscribe(pattern));
        local = Some(broker);
    } else {
        return Err(BenchError::Usage(
            "inbound counts arrivals with a broker subscriber: give --redis URL (server with \
             broker.kind = \"redis\") or --local-broker SOCKET (the server's broker.socket)"
                .into(),
        ));
    }
    Ok((arrivals, local))
}

pub(super) async fn inbound(
    args: &BenchArgs,
    clients: &Clients,
    server: &[u32],
    deadline: Instant,
) -> Result<Value, BenchError> {
    let (arrivals, _local_broker) = count_arrivals(args, clients.first()).await?;
    let tally = Tally::new();
    let gateway = nchan::gateway(args, Location::Publisher);
    let (sessions, open_time) = open_sessions(args, clients, &gateway, &tally).await?;
    // Warm up: one session publishes until the subscriber sees it.
    while arrivals.count.get() == 0 {
        if Instant::now() > deadline {
            return Err(BenchError::Server(
                "the subscriber never saw a message (is the topic on the default whitelist, \
                 and --redis / --local-broker the server's broker?)"
                    .into(),
            ));
        }
        sessions[0].publish(&args.topic, &json!({"warm": true}));
        actix_rt::time::sleep(Duration::from_millis(300)).await;
    }
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    arrivals.reset();
    let cpu = CpuMeter::start(server);
    let started = Instant::now();
    for (s, session) in sessions.iter().enumerate() {
        for i in 0..args.per_session {
            session.publish(&args.topic, &json!({"s": s, "i": i}));
        }
    }
    let expected = (args.sessions * args.per_session) as u64;
    wait_for(|| arrivals.count.get(), expected, deadline).await;
    let cpu_percent = cpu.percent();
    let got = arrivals.count.get();
    let seconds = arrivals
        .last
        .get()
        .map_or(0.0, |last| last.duration_since(started).as_secs_f64());
    Ok(json!({
        "scenario": "inbound",
        "sessions": args.sessions,
        "messages": expected,
        "arrived": got,
        "loss": expected.saturating_sub(got),
        "msgs_per_second": if seconds > 0.0 { (got as f64 / seconds).round() } else { 0.0 },
        "seconds": seconds,
        "open_seconds": open_time.as_secs_f64(),
        "sessions_lost": tally.borrow().dropped_sessions,
        "server": {"cpu_percent": cpu_percent, "rss_kib": system::rss_kib(server)},
    }))
}
