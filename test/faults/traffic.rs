//! Traffic through a worker while a fault happens, and the bookkeeping that proves nothing was
//! lost silently.
//!
//! - [`Traffic`]: clients that each publish numbered messages `{"c": client, "seq": n}` (with the
//!   number as the message's `id`) on one topic at a steady pace while [`Switches::sending`] is
//!   on, and record what comes back to them: the ack or the error for each number, numbered news
//!   `{"seq": n}` on another topic, anything else (which a test treats as a failure), and whether
//!   the server closed them.
//! - [`Collector`]: the backend's side of the client messages, a Redis subscription that counts
//!   every `(client, seq)` it sees, into a table several collectors may share (one per Redis
//!   lifetime).
//! - [`Newsroom`]: the backend publishing numbered news on Redis while
//!   [`Switches::publishing`] is on, reconnecting when Redis went away, and remembering which
//!   numbers Redis accepted and when.
//! - [`account`]: every message a client sent was acked and reached the backend once, or came
//!   back as `backend_unavailable` and never reached it, or as `backend_uncertain` and reached
//!   it at most once: never neither, never a false error, none twice.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_rt::task::JoinHandle;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::broker::BrokerClient;
use crate::client::{Client, Event, ERROR};
use crate::common::WAIT;

/// How long a client task waits for something to arrive before it looks at its switches again.
const POLL: Duration = Duration::from_millis(50);

/// What a test switches on and off while its traffic runs.
#[derive(Default)]
pub struct Switches {
    /// Clients send their numbered messages.
    pub sending: Cell<bool>,
    /// The newsroom publishes.
    pub publishing: Cell<bool>,
    /// Every task ends.
    pub stop: Cell<bool>,
}

/// What one client did and saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    /// The numbers acked, and those answered `backend_unavailable` and `backend_uncertain`.
    pub acked: HashSet<u64>,
    pub unavailable: HashSet<u64>,
    pub uncertain: HashSet<u64>,
    /// News numbers in the order they arrived, with their arrival time.
    pub news: Vec<(u64, Instant)>,
    /// Everything else the client received (other errors, unknown messages).
    pub unexpected: Vec<String>,
    /// Set if the server closed the connection.
    pub closed: Option<String>,
}

impl Tally {
    /// The news numbers received, in order.
    pub fn news_seqs(&self) -> Vec<u64> {
        self.news.iter().map(|&(seq, _)| seq).collect()
    }
}

/// Clients sending and receiving on their own tasks.
pub struct Traffic {
    pub switches: Rc<Switches>,
    tallies: Vec<Rc<RefCell<Tally>>>,
    tasks: Vec<JoinHandle<Client>>,
}

impl Traffic {
    /// Runs each of `clients` on its own task: client `i` sends `{"c": i, "seq": n}` on `topic`
    /// every `every` while sending is on, and records what arrives (news on `news`).
    pub fn start(clients: Vec<Client>, topic: &str, news: &str, every: Duration) -> Traffic {
        let switches = Rc::new(Switches::default());
        let mut tallies = Vec::new();
        let mut tasks = Vec::new();
        for (id, client) in clients.into_iter().enumerate() {
            let tally = Rc::new(RefCell::new(Tally::default()));
            let run = ClientRun {
                id: id as u64,
                topic: topic.to_owned(),
                news: news.to_owned(),
                every,
                switches: switches.clone(),
                tally: tally.clone(),
            };
            tasks.push(actix_rt::spawn(run.run(client)));
            tallies.push(tally);
        }
        Traffic {
            switches,
            tallies,
            tasks,
        }
    }

    pub fn tallies(&self) -> &[Rc<RefCell<Tally>>] {
        &self.tallies
    }

    /// Total messages sent so far by every client.
    pub fn sent(&self) -> u64 {
        self.tallies.iter().map(|t| t.borrow().sent).sum()
    }

    /// Ends every client task and hands the clients back, with what each saw.
    pub async fn finish(self) -> Vec<(Client, Tally)> {
        self.switches.stop.set(true);
        let mut out = Vec::new();
        for (task, tally) in self.tasks.into_iter().zip(self.tallies) {
            let client = actix_rt::time::timeout(WAIT, task)
                .await
                .expect("client task ends")
                .expect("client task did not panic");
            out.push((client, tally.take()));
        }
        out
    }

    /// Asserts that no client was closed and none saw anything unexpected.
    pub fn assert_all_connected(&self) {
        for (id, tally) in self.tallies.iter().enumerate() {
            let tally = tally.borrow();
            assert_eq!(tally.closed, None, "client {id} was disconnected");
            assert!(
                tally.unexpected.is_empty(),
                "client {id} received unexpected messages: {:?}",
                tally.unexpected
            );
        }
    }
}

/// One client's task.
struct ClientRun {
    id: u64,
    topic: String,
    news: String,
    every: Duration,
    switches: Rc<Switches>,
    tally: Rc<RefCell<Tally>>,
}

impl ClientRun {
    async fn run(self, mut client: Client) -> Client {
        let mut next_send = Instant::now();
        while !self.switches.stop.get() {
            let now = Instant::now();
            if !self.switches.sending.get() {
                next_send = now;
            } else if now >= next_send {
                let seq = self.tally.borrow().sent + 1;
                let message = json!({
                    "topic": self.topic,
                    "data": {"c": self.id, "seq": seq},
                    "id": seq.to_string(),
                });
                client.send_json(&message).await;
                self.tally.borrow_mut().sent = seq;
                next_send = now + self.every;
            }
            let wait = next_send
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), POLL);
            match client.next_event(wait).await {
                None => {}
                Some(Event::Text(text)) => self.record(&text),
                Some(Event::Closed(reason)) => {
                    self.tally.borrow_mut().closed = Some(format!("{reason:?}"));
                    break;
                }
            }
        }
        client
    }

    fn record(&self, text: &str) {
        let value: Value = serde_json::from_str(text).unwrap_or_default();
        let data = &value["data"];
        let mut tally = self.tally.borrow_mut();
        let id = data["id"].as_str().and_then(|id| id.parse::<u64>().ok());
        if let (true, Some(seq)) = (value["topic"] == "rohrpost.ack", id) {
            tally.acked.insert(seq);
        } else if let (true, Some(seq)) = (
            value["topic"] == ERROR && data["topic"] == self.topic.as_str(),
            id,
        ) {
            match data["code"].as_str() {
                Some("backend_unavailable") => tally.unavailable.insert(seq),
                Some("backend_uncertain") => tally.uncertain.insert(seq),
                _ => {
                    tally.unexpected.push(text.to_owned());
                    false
                }
            };
        } else if value["topic"] == self.news.as_str() && data["seq"].is_u64() {
            let seq = data["seq"].as_u64().unwrap_or_default();
            tally.news.push((seq, Instant::now()));
        } else if data.get("probe").is_none() && data.get("fence").is_none() {
            tally.unexpected.push(text.to_owned());
        }
    }
}

/// `(client, seq)` → how often the backend saw it.
pub type Arrivals = Rc<RefCell<HashMap<(u64, u64), u32>>>;

/// The backend's subscription to the client messages on one Redis; ends with that Redis.
pub struct Collector {
    task: JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    /// Subscribes to `channel` on the Redis at `url` (live on return) and counts every client
    /// message seen into `arrivals`.
    pub async fn start(url: &str, channel: &str, arrivals: Arrivals) -> Collector {
        let pubsub = crate::broker::redis_pubsub(url, channel).await;
        let task = actix_rt::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let payload: String = message.get_payload().unwrap_or_default();
                let value: Value = serde_json::from_str(&payload).unwrap_or_default();
                let data = &value["data"];
                if let (Some(c), Some(seq)) = (data["c"].as_u64(), data["seq"].as_u64()) {
                    *arrivals.borrow_mut().entry((c, seq)).or_default() += 1;
                }
            }
        });
        Collector { task }
    }
}

/// The backend publishing numbered news on Redis.
pub struct Newsroom {
    /// `(seq, when Redis accepted it)`, in order.
    pub published: Rc<RefCell<Vec<(u64, Instant)>>>,
    task: JoinHandle<()>,
}

impl Drop for Newsroom {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Newsroom {
    /// Publishes `{"data": {"seq": n}}` on `channel` of the Redis at `url` every `every` while
    /// `switches.publishing` is on. A number counts as published once Redis accepted it; while
    /// Redis is away the newsroom keeps trying to reconnect, numbering on where it left off.
    pub fn start(url: &str, channel: &str, every: Duration, switches: Rc<Switches>) -> Newsroom {
        let published: Rc<RefCell<Vec<(u64, Instant)>>> = Rc::default();
        let (url, channel, log) = (url.to_owned(), channel.to_owned(), published.clone());
        let task = actix_rt::spawn(async move {
            let mut redis: Option<BrokerClient> = None;
            while !switches.stop.get() {
                actix_rt::time::sleep(every).await;
                if !switches.publishing.get() {
                    continue;
                }
                if redis.is_none() {
                    redis = BrokerClient::try_connect(&url).await.ok();
                }
                let Some(conn) = redis.as_mut() else {
                    continue;
                };
                let seq = log.borrow().len() as u64 + 1;
                let message = json!({"data": {"seq": seq}}).to_string();
                match conn.try_publish_raw(&channel, &message).await {
                    Ok(()) => log.borrow_mut().push((seq, Instant::now())),
                    Err(_) => redis = None,
                }
            }
        });
        Newsroom { published, task }
    }

    /// How many numbers Redis has accepted so far.
    pub fn count(&self) -> u64 {
        self.published.borrow().len() as u64
    }
}

/// Totals of a run, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub sent: u64,
    pub arrived: u64,
    /// `backend_unavailable` errors (each message certainly not delivered).
    pub errors: u64,
    /// `backend_uncertain` errors, and how many of those messages arrived all the same.
    pub uncertain: u64,
    pub uncertain_arrived: u64,
}

/// Waits (at most `within`) until every message of every client has its outcome (an ack or an
/// error) and every acked one has reached the backend, then asserts the books: an acked message
/// arrived exactly once, a `backend_unavailable` one never, a `backend_uncertain` one at most
/// once; each number has one outcome; nothing arrived that was not sent.
pub async fn account(traffic: &Traffic, arrivals: &Arrivals, within: Duration) -> Totals {
    let deadline = Instant::now() + within;
    let arrived = |c: u64, seq: u64| arrivals.borrow().get(&(c, seq)).copied().unwrap_or(0);
    let settled = || {
        traffic.tallies().iter().enumerate().all(|(id, t)| {
            let t = t.borrow();
            (1..=t.sent).all(|seq| {
                t.unavailable.contains(&seq)
                    || t.uncertain.contains(&seq)
                    || (t.acked.contains(&seq) && arrived(id as u64, seq) > 0)
            })
        })
    };
    while !settled() && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let mut totals = Totals::default();
    for (id, tally) in traffic.tallies().iter().enumerate() {
        let c = id as u64;
        let t = tally.borrow();
        for seq in 1..=t.sent {
            let n = arrived(c, seq);
            let outcomes = [&t.acked, &t.unavailable, &t.uncertain]
                .iter()
                .filter(|set| set.contains(&seq))
                .count();
            assert_eq!(
                outcomes, 1,
                "client {c}'s message {seq}: {outcomes} outcomes (acked, unavailable, uncertain)"
            );
            if t.acked.contains(&seq) {
                assert_eq!(n, 1, "client {c}'s acked message {seq} arrived {n} times");
            } else if t.unavailable.contains(&seq) {
                assert_eq!(
                    n, 0,
                    "client {c}'s message {seq}: backend_unavailable, but it arrived"
                );
            } else {
                assert!(
                    n <= 1,
                    "client {c}'s uncertain message {seq} arrived {n} times"
                );
                totals.uncertain_arrived += u64::from(n);
            }
            totals.arrived += u64::from(n);
        }
        totals.sent += t.sent;
        totals.errors += t.unavailable.len() as u64;
        totals.uncertain += t.uncertain.len() as u64;
    }
    for (&(c, seq), &count) in arrivals.borrow().iter() {
        let sent = traffic.tallies()[c as usize].borrow().sent;
        assert!(
            (1..=sent).contains(&seq),
            "client {c}'s message {seq} arrived ({count} times) but was never sent"
        );
    }
    totals
}
