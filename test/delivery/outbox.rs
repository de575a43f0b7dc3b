//! A tracker's own client messages: numbered, each with an `id`, sent at a steady pace, and what
//! became of each (issue 11, acknowledged client messages).
//!
//! Message `n` of client `c` is `{"topic", "data": {"c": c, "n": n}, "id": "c<c>.<n>"}`. It is
//! queued when due and leaves the queue once the websocket took it; a message the websocket
//! refused (the connection is going away) stays queued and goes out on the next connection. It
//! is never sent again after that, with one exception the contract asks for: a
//! `backend_uncertain` error (the outcome is unknown) is answered by sending it again with the
//! same id, as a client must. Nothing else is resent, so a message that gets neither an ack nor
//! an error is visible as such ([`Outcome::Pending`]).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::Client;

/// The error code whose message is sent again with the same id.
pub const UNCERTAIN: &str = "backend_uncertain";
/// The error code that promises the message was not and will not be sent.
pub const UNAVAILABLE: &str = "backend_unavailable";
/// Sends of one message at most (the first and the retries after `backend_uncertain`).
const MAX_SENDS: u32 = 3;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Neither acked nor answered with an error (yet).
    Pending,
    Acked,
    /// Answered with this error code.
    Errored(String),
}

/// One numbered client message.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub n: u64,
    pub id: String,
    /// How often the websocket took it.
    pub sends: u32,
    pub outcome: Outcome,
    /// Every answer in arrival order: `ack`, or an error code.
    pub answers: Vec<String>,
}

/// The steady pace of a tracker's messages.
struct Pace {
    topic: String,
    every: Duration,
    next_at: Instant,
    stop: Rc<Cell<bool>>,
}

/// One tracker's client messages.
pub struct Outbox {
    client: usize,
    pace: Option<Pace>,
    messages: Vec<Outgoing>,
    /// Indices into `messages`, in sending order.
    queue: VecDeque<usize>,
    by_id: HashMap<String, usize>,
}

impl Outbox {
    pub fn new(client: usize) -> Outbox {
        Outbox {
            client,
            pace: None,
            messages: Vec::new(),
            queue: VecDeque::new(),
            by_id: HashMap::new(),
        }
    }

    /// Sends a numbered message on `topic` every `every` from now on, until `stop` is set.
    pub fn start(&mut self, topic: &str, every: Duration, stop: Rc<Cell<bool>>) {
        self.pace = Some(Pace {
            topic: topic.to_owned(),
            every,
            next_at: Instant::now(),
            stop,
        });
    }

    /// The id of message `n` of client `client`.
    pub fn id(client: usize, n: u64) -> String {
        format!("c{client}.{n}")
    }

    /// The client and number an id names, if it is one of [`Outbox::id`]'s.
    pub fn parse_id(id: &str) -> Option<(usize, u64)> {
        let (client, n) = id.strip_prefix('c')?.split_once('.')?;
        Some((client.parse().ok()?, n.parse().ok()?))
    }

    /// Queues every message due by `now`.
    pub fn queue_due(&mut self, now: Instant) {
        let Some(pace) = &mut self.pace else {
            return;
        };
        while !pace.stop.get() && now >= pace.next_at {
            let n = self.messages.len() as u64 + 1;
            let id = Outbox::id(self.client, n);
            self.by_id.insert(id.clone(), self.messages.len());
            self.queue.push_back(self.messages.len());
            self.messages.push(Outgoing {
                n,
                id,
                sends: 0,
                outcome: Outcome::Pending,
                answers: Vec::new(),
            });
            pace.next_at += pace.every;
        }
    }

    /// When the next message is due, while the pace runs.
    pub fn next_due(&self) -> Option<Instant> {
        self.pace
            .as_ref()
            .filter(|pace| !pace.stop.get())
            .map(|pace| pace.next_at)
    }

    /// Sends the queue in order on `client`; false when the websocket refused a message (it
    /// stays queued).
    pub async fn flush(&mut self, client: &mut Client) -> bool {
        let Some(pace) = &self.pace else {
            return true;
        };
        while let Some(&i) = self.queue.front() {
            let message = &mut self.messages[i];
            let envelope = json!({
                "topic": pace.topic,
                "data": {"c": self.client, "n": message.n},
                "id": message.id,
            });
            if client.send_json(&envelope).await.is_err() {
                return false;
            }
            message.sends += 1;
            self.queue.pop_front();
        }
        true
    }

    /// An ack of `id`; false when no message of this outbox has that id.
    pub fn acked(&mut self, id: &str) -> bool {
        let Some(&i) = self.by_id.get(id) else {
            return false;
        };
        let message = &mut self.messages[i];
        message.answers.push("ack".to_owned());
        if message.outcome == Outcome::Pending {
            message.outcome = Outcome::Acked;
        }
        true
    }

    /// An error about `id` (`data` of `rohrpost.error`); false when no message of this outbox
    /// has that id.
    pub fn errored(&mut self, id: &str, data: &Value) -> bool {
        let Some(&i) = self.by_id.get(id) else {
            return false;
        };
        let code = data["code"].as_str().unwrap_or("(no code)").to_owned();
        let message = &mut self.messages[i];
        message.answers.push(code.clone());
        if message.outcome != Outcome::Pending {
            return true;
        }
        if code == UNCERTAIN && message.sends < MAX_SENDS {
            self.queue.push_back(i);
        } else {
            message.outcome = Outcome::Errored(code);
        }
        true
    }

    /// Whether the pace has stopped, everything queued went out and every message is acked or
    /// answered with an error.
    pub fn all_resolved(&self) -> bool {
        self.next_due().is_none()
            && self.queue.is_empty()
            && self.messages.iter().all(|m| m.outcome != Outcome::Pending)
    }

    /// Every message so far, by number (`messages()[n - 1]`).
    pub fn messages(&self) -> &[Outgoing] {
        &self.messages
    }
}
