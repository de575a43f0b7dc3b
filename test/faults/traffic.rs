//! Traffic through a worker while a fault happens, and the bookkeeping that proves nothing was
//! lost silently.
//!
//! - [`Traffic`]: clients that each publish numbered messages `{"c": client, "seq": n}` on one
//!   topic at a steady pace while [`Switches::sending`] is on, and record what comes back to
//!   them: `backend_unavailable` errors about that topic, numbered news `{"seq": n}` on another
//!   topic, anything else (which a test treats as a failure), and whether the server closed them.
//! - [`Collector`]: the backend's side of the client messages, a Redis subscription that counts
//!   every `(client, seq)` it sees, into a table several collectors may share (one per Redis
//!   lifetime).
//! - [`Newsroom`]: the backend publishing numbered news on Redis while
//!   [`Switches::publishing`] is on, reconnecting when Redis went away, and remembering which
//!   numbers Redis accepted and when.
//! - [`account`]: every message a client sent either reached the backend or came back as an
//!   error, none twice.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
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
    /// `backend_unavailable` errors naming the traffic topic.
    pub unavailable: u64,
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
                client
                    .publish(&self.topic, json!({"c": self.id, "seq": seq}))
                    .await;
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
        if value["topic"] == ERROR
            && data["code"] == "backend_unavailable"
            && data["topic"] == self.topic.as_str()
        {
            tally.unavailable += 1;
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
    pub errors: u64,
}

/// Waits (at most `within`) until every message of every client is accounted for, then asserts
/// it: for each client, the messages the backend saw plus the `backend_unavailable` errors it got
/// equal what it sent, every number the backend saw was sent, and none arrived twice.
pub async fn account(traffic: &Traffic, arrivals: &Arrivals, within: Duration) -> Totals {
    let deadline = Instant::now() + within;
    let per_client =
        |id: u64| -> u64 { arrivals.borrow().keys().filter(|&&(c, _)| c == id).count() as u64 };
    let balanced = || {
        traffic.tallies().iter().enumerate().all(|(id, t)| {
            let t = t.borrow();
            per_client(id as u64) + t.unavailable == t.sent
        })
    };
    while !balanced() && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let mut totals = Totals::default();
    for (id, tally) in traffic.tallies().iter().enumerate() {
        let tally = tally.borrow();
        let arrived = per_client(id as u64);
        assert_eq!(
            arrived + tally.unavailable,
            tally.sent,
            "client {id}: {arrived} arrived + {} errors != {} sent",
            tally.unavailable,
            tally.sent
        );
        totals.sent += tally.sent;
        totals.arrived += arrived;
        totals.errors += tally.unavailable;
    }
    for (&(c, seq), &count) in arrivals.borrow().iter() {
        assert_eq!(count, 1, "client {c}'s message {seq} arrived {count} times");
        let sent = traffic.tallies()[c as usize].borrow().sent;
        assert!(
            (1..=sent).contains(&seq),
            "client {c}'s message {seq} arrived but was never sent"
        );
    }
    totals
}
