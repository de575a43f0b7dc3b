//! A fleet of Rohrpost clients that keep talking while workers go away under them.
//!
//! [`Fleet::open`] starts sessions through `/connect` and has the backend grant each one a
//! pattern of its own and session data. [`Fleet::start_traffic`] then drives every client in its
//! own task, as a well-behaved browser client would:
//!
//! - every [`SEND_EVERY`] it numbers a message (`{"client": i, "seq": n}`) and queues it;
//! - while connected, it sends its queue in order; a message leaves the queue once the websocket
//!   took it, and is never sent again;
//! - when the server closes the websocket (code 1012 on a drain), it answers the close, asks
//!   `/connect` for a worker, resumes with its token and sends what queued up meanwhile;
//! - it records each reconnect: the gap from the close to the welcome, and that welcome.
//!
//! [`Traffic::stop`] stops numbering, lets each client send what is queued and hands back an
//! [`Outcome`] per client, with its still-open connection.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::backend::Backend;
use crate::client::{resume_through_connect, Client, Event, Welcome, ERROR};
use crate::common::WAIT;
use crate::main_port::handout;

/// How often each client sends a numbered message.
pub const SEND_EVERY: Duration = Duration::from_millis(50);
/// How long a client may take to be back after its websocket closed.
const RECONNECT_WAIT: Duration = Duration::from_secs(20);
/// Sessions opened at the same time by [`Fleet::open`].
const OPEN_AT_ONCE: usize = 25;

/// One client of the fleet, connected and granted.
pub struct Member {
    pub index: usize,
    client: Client,
    pub welcome: Welcome,
    /// The worker `/connect` handed out for the first connection.
    pub worker: Option<usize>,
}

/// Sessions of one test, in the namespace `namespace` on the shared Redis.
pub struct Fleet {
    pub namespace: String,
    main_port: u16,
    pub members: Vec<Member>,
}

impl Fleet {
    /// Opens `size` sessions through `/connect` on `main_port`; session i is granted
    /// [`Fleet::granted_pattern`] and the data `{"n": i}`.
    pub async fn open(main_port: u16, namespace: &str, size: usize) -> Fleet {
        let backend = Backend::connect().await;
        let mut members = Vec::with_capacity(size);
        let indices: Vec<usize> = (0..size).collect();
        for chunk in indices.chunks(OPEN_AT_ONCE) {
            let opening = chunk.iter().map(|&index| {
                let mut backend = backend.clone();
                async move {
                    let handout = handout(main_port).await.unwrap_or_else(|e| panic!("{e}"));
                    let (mut client, welcome) = Client::new_session(&handout.ws_url()).await;
                    let pattern = granted_pattern(namespace, index);
                    backend
                        .grant(&mut client, &welcome, &pattern, json!({"n": index}))
                        .await;
                    Member {
                        index,
                        client,
                        welcome,
                        worker: handout.worker,
                    }
                }
            });
            members.extend(join_all(opening).await);
        }
        Fleet {
            namespace: namespace.to_owned(),
            main_port,
            members,
        }
    }

    /// The whitelisted topic every client sends its numbered messages on.
    pub fn traffic_topic(&self) -> String {
        format!("anonym.{}.traffic", self.namespace)
    }

    /// Session ids by client index.
    pub fn sessions(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.welcome.session.clone())
            .collect()
    }

    /// Starts every client's task.
    pub fn start_traffic(self) -> Traffic {
        let stop = Rc::new(Cell::new(false));
        let topic = self.traffic_topic();
        let tasks = self
            .members
            .into_iter()
            .map(|member| {
                let driver = Driver {
                    main_port: self.main_port,
                    topic: topic.clone(),
                    stop: stop.clone(),
                };
                actix_rt::spawn(driver.run(member))
            })
            .collect();
        Traffic { stop, tasks }
    }
}

/// The pattern the backend grants session `index` of `namespace`: outside the default
/// whitelist, so only the grant lets it through.
pub fn granted_pattern(namespace: &str, index: usize) -> String {
    format!("{namespace}.{index}.*")
}

/// The fleet's clients, talking.
pub struct Traffic {
    stop: Rc<Cell<bool>>,
    tasks: Vec<JoinHandle<Outcome>>,
}

impl Traffic {
    /// Stops numbering messages and waits until every client has sent its queue.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.set(true);
        let done = actix_rt::time::timeout(RECONNECT_WAIT + WAIT, join_all(self.tasks))
            .await
            .expect("every client finishes sending its queue");
        done.into_iter()
            .map(|outcome| outcome.expect("a client task failed (see its panic above)"))
            .collect()
    }
}

/// One reconnect of a client.
#[derive(Debug)]
pub struct Reconnect {
    /// From the close of the old websocket to the welcome on the new one.
    pub gap: Duration,
    /// Close code of the old websocket (`None`: it just ended).
    pub close_code: Option<u16>,
    /// The last numbered message the old websocket took before the close was read.
    pub last_sent: u64,
    pub welcome: Welcome,
}

/// What one client did, and its connection, still open.
pub struct Outcome {
    pub index: usize,
    pub client: Client,
    /// The welcome of the session's first connection.
    pub first: Welcome,
    /// Numbered messages sent (1..=sent).
    pub sent: u64,
    pub reconnects: Vec<Reconnect>,
    /// Data of every `rohrpost.error` the client received.
    pub errors: Vec<Value>,
}

/// How one client behaves under traffic.
struct Driver {
    main_port: u16,
    topic: String,
    stop: Rc<Cell<bool>>,
}

impl Driver {
    async fn run(self, member: Member) -> Outcome {
        let mut out = Outcome {
            index: member.index,
            client: member.client,
            first: member.welcome,
            sent: 0,
            reconnects: Vec::new(),
            errors: Vec::new(),
        };
        let mut token = out.first.resume.clone();
        let mut queue = VecDeque::new();
        let mut last_sent = 0;
        let mut next_number = Instant::now();
        loop {
            if !self.stop.get() {
                while Instant::now() >= next_number {
                    out.sent += 1;
                    queue.push_back(out.sent);
                    next_number += SEND_EVERY;
                }
            } else if queue.is_empty() {
                return out;
            }
            let taken = self.send_queue(&mut out, &mut queue, &mut last_sent).await;
            let wait = if taken {
                next_number.saturating_duration_since(Instant::now())
            } else {
                // The websocket refused a message: it is going away; read until it is gone.
                WAIT
            };
            match out
                .client
                .next_event(wait.max(Duration::from_millis(1)))
                .await
            {
                Some(Event::Closed(close_code)) => {
                    let closed = (close_code, last_sent);
                    let reconnect = self.reconnect(&mut out, &token, closed).await;
                    token = reconnect.welcome.resume.clone();
                    out.reconnects.push(reconnect);
                }
                Some(Event::Message { topic, data }) if topic == ERROR => out.errors.push(data),
                Some(Event::Message { .. }) => {}
                None if !taken => panic!("client {}: send failed but no close", out.index),
                None => {}
            }
        }
    }

    /// Sends the queue in order, noting the last message sent; false when the websocket refused
    /// a message (kept queued).
    async fn send_queue(
        &self,
        out: &mut Outcome,
        queue: &mut VecDeque<u64>,
        last_sent: &mut u64,
    ) -> bool {
        while let Some(&seq) = queue.front() {
            let message = json!({"client": out.index, "seq": seq});
            if out.client.publish(&self.topic, message).await.is_err() {
                return false;
            }
            queue.pop_front();
            *last_sent = seq;
        }
        true
    }

    /// Gets a worker from `/connect` and resumes there. `closed` is the old websocket's close
    /// code and the last message it took.
    async fn reconnect(
        &self,
        out: &mut Outcome,
        token: &str,
        (close_code, last_sent): (Option<u16>, u64),
    ) -> Reconnect {
        let closed_at = Instant::now();
        let (client, welcome) = resume_through_connect(self.main_port, token, RECONNECT_WAIT)
            .await
            .unwrap_or_else(|e| panic!("client {}: {e}", out.index));
        out.client = client;
        Reconnect {
            gap: closed_at.elapsed(),
            close_code,
            last_sent,
            welcome,
        }
    }
}
