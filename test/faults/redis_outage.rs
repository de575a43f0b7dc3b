//! Redis stopped for 10 s and started again, empty (no persistence), while clients send and the
//! backend publishes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::broker::{settle, BrokerAddress, BrokerKind, Subscription, TestBroker};
use crate::client::Client;
use crate::common::WAIT;
use crate::process::{FaultWorker, Tweak};
use crate::traffic::{account, Arrivals, Collector, Newsroom, Traffic};
use crate::worker::WorkerConfig;

/// How long Redis is away.
const OUTAGE: Duration = Duration::from_secs(10);
/// Sessions on each of the two workers.
const CLIENTS_PER_WORKER: usize = 5;
/// How often each client sends a numbered message.
const SEND_EVERY: Duration = Duration::from_millis(200);
/// How often the backend publishes news.
const NEWS_EVERY: Duration = Duration::from_millis(100);
/// How long after Redis is back every session must receive again (the worker's reconnect
/// backoff is at most 5 s).
const RECOVERY: Duration = Duration::from_secs(8);
/// How long after Redis is back a connected session's record must be stored again: the worker
/// reconnects (backoff at most 5 s) and at once has every session store its record again.
const RECORD_BACK: Duration = Duration::from_secs(8);
/// The session TTL: the default, whose periodic refresh (every 200 s) cannot be what brings
/// the record back within [`RECORD_BACK`].
const TTL: &str = "10m";

/// What the clients see: their websockets stay open throughout; every message a client sends
/// while Redis is away (or before the worker has reconnected) comes back as a
/// `backend_unavailable` error naming its topic, every other one reaches the backend, none
/// twice (counted per client: arrived + errors = sent); news published before the outage all
/// arrive in order, news stop during it, and within seconds of Redis coming back every session
/// receives again by itself, every later number in order. A session whose whitelist the backend
/// changed before the outage resumes on the other worker after it, with that whitelist and its
/// data, although the restarted Redis started empty: the worker, back on Redis, had every
/// connected session store its record again.
#[actix_rt::test]
async fn redis_stopped_for_10_s_loses_nothing_and_sessions_come_back() {
    let mut broker = TestBroker::stoppable(BrokerKind::Redis).await;
    let BrokerAddress::Redis { url } = broker.address() else {
        unreachable!("a stoppable Redis broker has a URL")
    };
    let config = WorkerConfig::on(&broker);
    let tweaks: [Tweak; 1] = [("sessions", "ttl", TTL.into())];
    let mut workers = [
        FaultWorker::start(&config, &tweaks).await,
        FaultWorker::start(&config, &tweaks).await,
    ];
    let news = config.topic("anonym");
    let inbox = config.topic("anonym");
    let granted = config.pattern("granted");
    let mut backend = broker.connect().await;

    // Sessions alternate between the workers; client 0, on worker 0, gets a whitelist change.
    let mut clients = Vec::new();
    let mut first = None;
    for i in 0..2 * CLIENTS_PER_WORKER {
        let (mut client, welcome) = workers[i % 2].session().await;
        settle(&mut backend, &mut client, &news).await;
        if i == 0 {
            settle(&mut backend, &mut client, &welcome.direct_topic()).await;
            let grant = json!({"add": [granted], "sessionData": {"who": "first"}, "data": "ok"});
            backend.publish(&welcome.direct_topic(), &grant).await;
            client.expect(&welcome.direct_topic(), json!("ok")).await;
            backend
                .session_record(&welcome.session, |r| has_pattern(r, &granted))
                .await;
            first = Some(welcome);
        }
        clients.push(client);
    }
    let first = first.expect("client 0 exists");

    let arrivals = Arrivals::default();
    let collector = Collector::start(&url, &inbox, arrivals.clone()).await;
    let traffic = Traffic::start(clients, &inbox, &news, SEND_EVERY);
    let switches = traffic.switches.clone();
    let newsroom = Newsroom::start(&url, &news, NEWS_EVERY, switches.clone());
    switches.sending.set(true);
    switches.publishing.set(true);
    actix_rt::time::sleep(Duration::from_secs(2)).await;

    // News stop a moment before Redis does, so that every number published before is due;
    // clients pause for that moment too, so that no message is half-way through Redis (taken,
    // but not answered) when it dies.
    switches.publishing.set(false);
    switches.sending.set(false);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let before = newsroom.count();
    let sent_before = traffic.sent();
    broker.stop();
    drop(collector);
    switches.sending.set(true);
    actix_rt::time::sleep(OUTAGE).await;
    traffic.assert_all_connected();
    let sent_during = traffic.sent() - sent_before;

    // Clients pause for the instant between Redis answering and the backend's new subscription,
    // so that no client message can reach a Redis nobody listens on.
    switches.sending.set(false);
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    broker.restart().await;
    let restarted = Instant::now();
    let _collector = Collector::start(&url, &inbox, arrivals.clone()).await;
    switches.sending.set(true);
    switches.publishing.set(true);

    // Subscriptions come back by themselves: every session receives news again.
    let deadline = restarted + RECOVERY;
    let receiving_again = || {
        traffic
            .tallies()
            .iter()
            .all(|t| t.borrow().news.iter().any(|&(seq, _)| seq > before))
    };
    while !receiving_again() {
        assert!(
            Instant::now() < deadline,
            "not every session received news within {RECOVERY:?} of Redis coming back"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let recovery = traffic
        .tallies()
        .iter()
        .filter_map(|t| {
            let t = t.borrow();
            t.news
                .iter()
                .find(|&&(seq, _)| seq > before)
                .map(|&(_, at)| at)
        })
        .max()
        .expect("every session received news")
        - restarted;

    // A second more of traffic, then the books are closed.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    switches.publishing.set(false);
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    switches.sending.set(false);
    let totals = account(&traffic, &arrivals, Duration::from_secs(5)).await;
    traffic.assert_all_connected();
    let published = newsroom.count();
    for (id, tally) in traffic.tallies().iter().enumerate() {
        let tally = tally.borrow();
        assert!(
            !tally.unavailable.is_empty() || !tally.uncertain.is_empty(),
            "client {id} sent during the outage and got errors"
        );
        let seqs = tally.news_seqs();
        let (old, new): (Vec<u64>, Vec<u64>) = seqs.iter().partition(|&&s| s <= before);
        assert_eq!(
            old,
            (1..=before).collect::<Vec<_>>(),
            "client {id}: every news number before the outage, in order"
        );
        let resumed_at = new[0];
        assert_eq!(
            new,
            (resumed_at..=published).collect::<Vec<_>>(),
            "client {id}: every news number once receiving again, in order"
        );
    }
    for worker in &mut workers {
        assert!(worker.is_running(), "no worker exited");
    }
    // The session record is back although Redis restarted empty; it resumes on the other
    // worker (while its first connection is still open: no last save on close can help), which
    // takes the session over from that first connection.
    let record_back = wait_for_record(&url, &first.session, &granted, restarted).await;
    let mut resumed = Client::connect(&workers[1].ws_url()).await;
    let again = resumed.resume(&first.resume).await;
    assert!(again.resumed, "the session resumes: {again:?}");
    assert_eq!(again.session, first.session);
    assert!(
        again.whitelist.contains(&granted),
        "the changed whitelist survived the empty Redis: {:?}",
        again.whitelist
    );
    let whoami = config.topic("anonym");
    let mut seen = Subscription::redis(&url, &whoami).await;
    resumed.publish(&whoami, json!("who am I")).await;
    assert_eq!(
        seen.next_json().await["sessionData"],
        json!({"who": "first"})
    );

    let taken_over = Instant::now() + WAIT;
    while traffic.tallies()[0].borrow().closed.is_none() && Instant::now() < taken_over {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = traffic.tallies()[0]
        .borrow()
        .closed
        .clone()
        .unwrap_or_default();
    assert!(
        closed.contains("4001") && closed.contains("Session resumed elsewhere"),
        "the first connection was taken over: {closed:?}"
    );
    println!(
        "redis outage {OUTAGE:?}: {} sessions; client messages sent {} (during the outage {}), \
         arrived {}, backend_unavailable {}, backend_uncertain {}; news {} before, {published} in all; every session \
         receiving again {recovery:?} after Redis was back; session record back after \
         {record_back:?}",
        2 * CLIENTS_PER_WORKER,
        totals.sent,
        sent_during,
        totals.arrived,
        totals.errors,
        totals.uncertain,
        before,
    );
    traffic.finish().await;
}

fn has_pattern(record: &Value, pattern: &str) -> bool {
    record["whitelist"]
        .as_array()
        .is_some_and(|w| w.iter().any(|p| p == pattern))
}

/// Polls Redis at `url` until the record of session `id` holds `pattern`; returns how long after
/// `since` that was.
async fn wait_for_record(url: &str, id: &str, pattern: &str, since: Instant) -> Duration {
    let key = format!("rohrpost:session:{id}");
    let client = redis::Client::open(url).expect("the Redis URL parses");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the restarted Redis");
    loop {
        let record: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET a session record");
        let value: Value = record
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default();
        if has_pattern(&value, pattern) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < RECORD_BACK,
            "session {id}'s record not stored again within {RECORD_BACK:?} of Redis coming back"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}
