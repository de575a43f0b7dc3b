//! Network faults between a worker and Redis: the worker reaches Redis through a [`Proxy`] of
//! the test's own, which delays, black-holes or resets the link while clients send and the
//! backend (connected to Redis directly) publishes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::broker::{settle, BrokerAddress, BrokerKind, TestBroker};
use crate::process::{cpu_time, FaultWorker};
use crate::proxy::{Fault, Proxy};
use crate::traffic::{account, Arrivals, Collector, Newsroom, Totals, Traffic};
use crate::worker::WorkerConfig;

/// Sessions on the worker.
const CLIENTS: usize = 4;
/// How often each client sends a numbered message.
const SEND_EVERY: Duration = Duration::from_millis(200);
/// How often the backend publishes news.
const NEWS_EVERY: Duration = Duration::from_millis(100);
/// How long after the link is healthy again every session must receive again: the worker's
/// reconnect backoff is at most 5 s, its connect timeout 2 s.
const RECOVERY: Duration = Duration::from_secs(8);
/// The most CPU a worker may use while its Redis link is a black hole, in percent of one core.
const MAX_IDLE_CPU: f64 = 20.0;

/// A worker behind a proxy, with traffic flowing.
struct Rig {
    /// The private Redis; kept for the rig's lifetime.
    _redis: TestBroker,
    proxy: Proxy,
    worker: FaultWorker,
    traffic: Traffic,
    newsroom: Newsroom,
    arrivals: Arrivals,
    _collector: Collector,
}

impl Rig {
    /// A private Redis, a proxy to it, a worker using the proxy, [`CLIENTS`] sessions on it
    /// receiving news, and traffic flowing: clients sending, the backend publishing.
    async fn start() -> Rig {
        let redis = TestBroker::stoppable(BrokerKind::Redis).await;
        let BrokerAddress::Redis { url } = redis.address() else {
            unreachable!("a stoppable Redis broker has a URL")
        };
        let address: SocketAddr = url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .parse()
            .expect("the private Redis is at 127.0.0.1:<port>");
        let proxy = Proxy::start(address);
        let mut config = WorkerConfig::on(&redis);
        config.broker = BrokerAddress::Redis {
            url: proxy.redis_url(),
        };
        let worker = FaultWorker::start(&config, &[]).await;
        let news = config.topic("anonym");
        let inbox = config.topic("anonym");
        let mut backend = redis.connect().await;
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let (mut client, _) = worker.session().await;
            settle(&mut backend, &mut client, &news).await;
            clients.push(client);
        }
        let arrivals = Arrivals::default();
        let collector = Collector::start(&url, &inbox, arrivals.clone()).await;
        let traffic = Traffic::start(clients, &inbox, &news, SEND_EVERY);
        let newsroom = Newsroom::start(&url, &news, NEWS_EVERY, traffic.switches.clone());
        traffic.switches.sending.set(true);
        traffic.switches.publishing.set(true);
        Rig {
            _redis: redis,
            proxy,
            worker,
            traffic,
            newsroom,
            arrivals,
            _collector: collector,
        }
    }

    /// Switches the link to `fault` with client sends paused around the switch, so that no
    /// client message is half-way through the proxy at that instant; news stop a moment
    /// before. Returns how many news numbers were published before, all due to every client.
    async fn break_link(&self, fault: Fault) -> u64 {
        let switches = &self.traffic.switches;
        switches.publishing.set(false);
        switches.sending.set(false);
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        let before = self.newsroom.count();
        self.proxy.set(fault);
        switches.sending.set(true);
        switches.publishing.set(true);
        before
    }

    /// Heals the link; returns when.
    fn heal(&self) -> Instant {
        self.proxy.set(Fault::None);
        Instant::now()
    }

    /// Waits until every client received news numbered above `after`; returns how long after
    /// `since` the last of them did.
    async fn receiving_again(&self, after: u64, since: Instant) -> Duration {
        let deadline = since + RECOVERY;
        loop {
            let firsts: Vec<Option<Instant>> = self
                .traffic
                .tallies()
                .iter()
                .map(|t| {
                    let t = t.borrow();
                    t.news
                        .iter()
                        .find(|&&(seq, _)| seq > after)
                        .map(|&(_, at)| at)
                })
                .collect();
            if firsts.iter().all(Option::is_some) {
                let last = firsts.into_iter().flatten().max().expect("clients exist");
                return last.saturating_duration_since(since);
            }
            assert!(
                Instant::now() < deadline,
                "not every session received news within {RECOVERY:?} of the link healing"
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs traffic for `tail` more, stops it, lets everything due arrive, and checks the
    /// books: exactly (each message arrived or errored) or, after a black hole, at least (a
    /// message the worker gave up on may still have reached Redis once the link healed).
    /// Asserts that news before the fault all arrived in order and, from the first one after
    /// it, every later one did. Returns the totals and how many messages both errored and
    /// arrived.
    async fn close_books(&mut self, before: u64, tail: Duration, exact: bool) -> (Totals, u64) {
        actix_rt::time::sleep(tail).await;
        let switches = &self.traffic.switches;
        switches.publishing.set(false);
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        switches.sending.set(false);
        let totals = account(&self.traffic, &self.arrivals, Duration::from_secs(5)).await;
        if exact {
            assert_eq!(
                totals.uncertain, 0,
                "no outcome is uncertain without a black hole"
            );
        }
        let late = totals.uncertain_arrived;
        self.traffic.assert_all_connected();
        let published = self.newsroom.count();
        for (id, tally) in self.traffic.tallies().iter().enumerate() {
            let seqs = tally.borrow().news_seqs();
            let (old, new): (Vec<u64>, Vec<u64>) = seqs.iter().partition(|&&s| s <= before);
            assert_eq!(
                old,
                (1..=before).collect::<Vec<_>>(),
                "client {id}: news before"
            );
            let from = new.first().copied().unwrap_or(published + 1);
            assert_eq!(
                new,
                (from..=published).collect::<Vec<_>>(),
                "client {id}: every news number once receiving again, in order"
            );
        }
        assert!(self.worker.is_running(), "the worker did not exit");
        (totals, late)
    }
}

/// What the clients see while every byte between worker and Redis takes 400 ms longer each
/// way, for 4 s: nothing but latency. Every client message reaches the backend (no errors,
/// since a round trip stays under the worker's 2 s command timeout), every news number reaches
/// every session in order, later; once the delay is gone, news arrive promptly again.
#[actix_rt::test]
async fn delayed_redis_link_delivers_everything_late() {
    const DELAY: Duration = Duration::from_millis(400);
    let mut rig = Rig::start().await;
    let pid = rig.worker.pid();
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let before = rig.break_link(Fault::Delay(DELAY)).await;
    let delayed_from = rig.newsroom.count();
    actix_rt::time::sleep(Duration::from_secs(4)).await;
    let delayed_to = rig.newsroom.count();
    let healed = rig.heal();
    let (totals, _) = rig.close_books(before, Duration::from_secs(2), true).await;
    assert_eq!(totals.errors, 0, "a 400 ms delay is no outage");
    assert_eq!(rig.worker.pid(), pid);

    // Latency of each news number per session: at least the delay while it was on; back to
    // prompt after.
    let published = rig.newsroom.published.borrow().clone();
    let mut during = Vec::new();
    let mut prompt_again: Option<Duration> = None;
    for tally in rig.traffic.tallies() {
        let tally = tally.borrow();
        assert_eq!(
            tally.news_seqs(),
            (1..=published.len() as u64).collect::<Vec<_>>(),
            "every news number reaches every session in order"
        );
        for &(seq, arrived) in &tally.news {
            let sent = published[seq as usize - 1].1;
            let latency = arrived.saturating_duration_since(sent);
            if seq > delayed_from && seq <= delayed_to {
                during.push(latency);
            }
            if sent > healed && latency < Duration::from_millis(100) {
                let after = sent.saturating_duration_since(healed);
                prompt_again = Some(prompt_again.map_or(after, |p| p.min(after)));
            }
        }
    }
    during.sort();
    let min = *during.first().expect("news published during the delay");
    assert!(
        min >= DELAY - Duration::from_millis(20),
        "news were delayed by the proxy: {min:?}"
    );
    let prompt_again = prompt_again.expect("news prompt again after the delay");
    assert!(prompt_again < Duration::from_secs(2), "{prompt_again:?}");
    println!(
        "redis link delayed {DELAY:?} for 4 s: client messages sent {}, arrived {}, errors {}; \
         news latency during the delay min {min:?} median {:?} max {:?}; first prompt (<100 ms) \
         news published {prompt_again:?} after the delay ended",
        totals.sent,
        totals.arrived,
        totals.errors,
        during[during.len() / 2],
        during[during.len() - 1],
    );
}

/// What the clients see while every connection between worker and Redis is reset and every
/// new one refused with a reset, for 3 s: their sessions stay open; each message they send
/// meanwhile comes back as `backend_unavailable`, every other one reaches the backend, none
/// twice; within seconds of the link healing the worker is connected again (same process, no
/// crash) and every session receives news again, every later number in order.
#[actix_rt::test]
async fn reset_redis_link_recovers_within_seconds() {
    let mut rig = Rig::start().await;
    let pid = rig.worker.pid();
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let accepted_before = rig.proxy.accepted();
    let before = rig.break_link(Fault::Reset).await;
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    let attempts = rig.proxy.accepted() - accepted_before;
    let healed = rig.heal();
    let recovery = rig.receiving_again(rig.newsroom.count(), healed).await;
    let (totals, _) = rig.close_books(before, Duration::from_secs(1), false).await;
    assert!(
        totals.errors + totals.uncertain > 0,
        "messages sent during the fault got errors"
    );
    assert_eq!(rig.worker.pid(), pid);
    println!(
        "redis link reset for 3 s: client messages sent {}, arrived {}, backend_unavailable {}, \
         backend_uncertain {} ({} of them arrived); {attempts} connection attempts during the \
         fault; every session receiving again {recovery:?} after the link healed",
        totals.sent, totals.arrived, totals.errors, totals.uncertain, totals.uncertain_arrived,
    );
}

/// What the clients see while the link between worker and Redis is a black hole for 5 s (no
/// byte passes, nothing is closed): their sessions stay open; each message they send meanwhile
/// comes back as an error, so none is lost silently: `backend_uncertain` for those written into
/// the hole (no answer within the worker's 2 s command timeout: they may still reach Redis once
/// the route is back, their bytes being in flight, as in TCP), `backend_unavailable` for those
/// sent once the worker knew Redis was gone (they never arrive). The books check exactly that,
/// and the test reports how many uncertain ones did arrive. The worker does not spin while it cannot
/// reach Redis (its CPU time over the 5 s stays well under 20 % of a core), does not crash,
/// and within seconds of the route healing every session receives news again.
#[actix_rt::test]
async fn black_hole_to_redis_is_no_busy_loop_and_heals() {
    const HOLE: Duration = Duration::from_secs(5);
    let mut rig = Rig::start().await;
    let pid = rig.worker.pid();
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let accepted_before = rig.proxy.accepted();
    let before = rig.break_link(Fault::BlackHole).await;
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    actix_rt::time::sleep(HOLE).await;
    let cpu = cpu_time(pid) - cpu_before;
    let percent = 100.0 * cpu.as_secs_f64() / started.elapsed().as_secs_f64();
    let attempts = rig.proxy.accepted() - accepted_before;
    rig.traffic.assert_all_connected();
    let errors_in_hole: u64 = rig
        .traffic
        .tallies()
        .iter()
        .map(|t| {
            let t = t.borrow();
            (t.unavailable.len() + t.uncertain.len()) as u64
        })
        .sum();
    let healed = rig.heal();
    let recovery = rig.receiving_again(rig.newsroom.count(), healed).await;
    let (totals, late) = rig.close_books(before, Duration::from_secs(1), false).await;
    assert_eq!(rig.worker.pid(), pid, "the worker did not crash");
    assert!(
        percent < MAX_IDLE_CPU,
        "the worker used {percent:.1} % of a core during the black hole ({cpu:?})"
    );
    assert!(errors_in_hole > 0, "messages sent into the hole got errors");
    println!(
        "redis link black-holed {HOLE:?}: worker CPU {percent:.1} % of a core ({cpu:?}); \
         {attempts} connection attempts; client messages sent {}, arrived {}, \
         backend_unavailable {}, backend_uncertain {} ({errors_in_hole} errors during the hole), \
         {late} uncertain ones arrived late; every session receiving again {recovery:?} after \
         the route healed",
        totals.sent, totals.arrived, totals.errors, totals.uncertain,
    );
}
