//! One logical client: a session followed across every connection it gets, as a client that
//! keeps its position does (issue 11's wire contract).
//!
//! A [`Tracker`] holds its session's resume token and the last position it saw — from the
//! welcome, from any message that carries a `pos`, or from a `rohrpost.pos` notice: always the
//! latest in arrival order. When its connection ends (a drain's `c[1012]`, or cut by a killed
//! worker) it asks `/connect` on the main port for a worker and resumes there with
//! `{"hello": 1, "resume": token, "since": pos}`, as a browser does.
//!
//! It records what it receives, in arrival order, as [`Seen`] events: numbered backend messages
//! (a `stream` name and a number `n` in their data), the notices that told it messages were lost
//! (`recovered: false` in a welcome or a `rohrpost.pos`), each move to another connection, and
//! anything else. [`books`](crate::books) counts those per client. Client messages with ids,
//! their acks and errors are the [`Outbox`]'s.
//!
//! A tracker never panics on what the server does: a resume that fails, a session that is gone,
//! a close it did not expect are recorded, and the books report them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{resume_since_through_connect, Client, Received, Welcome, ERROR, WELCOME};
use crate::main_port::handout;
use crate::outbox::Outbox;

/// Topic of position notices.
pub const POS: &str = "rohrpost.pos";
/// Topic of acks of client messages with an id.
pub const ACK: &str = "rohrpost.ack";
/// Close code of a connection whose session another connection resumed.
pub const TAKEN_OVER: u16 = 4001;
/// How long a tracker may take to be back in its session after its connection ended.
const RESUME_WAIT: Duration = Duration::from_secs(20);
/// How long a tracker waits for something to arrive before it looks at its condition again.
const STEP: Duration = Duration::from_millis(20);

/// What a tracker saw, in arrival order.
#[derive(Debug, Clone)]
pub enum Seen {
    /// A backend message whose data is `{"stream", "n", ...}`.
    Numbered {
        stream: String,
        n: u64,
        pos: Option<String>,
    },
    /// `recovered: false`: in the welcome of a resume (`notice` "welcome") or in a
    /// `rohrpost.pos` notice ("pos"). The server says it lost messages it cannot replay.
    Told {
        notice: &'static str,
        pos: Option<String>,
    },
    /// The connection ended and the session was resumed on a new one.
    Moved(Move),
    /// A `rohrpost.error` that names no client message.
    Error(Value),
    /// Anything else: topic and data.
    Other(String, Value),
}

/// One move of a tracker to a new connection.
#[derive(Debug, Clone)]
pub struct Move {
    /// The old connection's close code and reason; `None`: it was cut.
    pub close: Option<(u16, String)>,
    /// The position the resume asked to be caught up from.
    pub since: Option<String>,
    pub welcome: Welcome,
    /// From the end of the old connection to the welcome on the new one.
    pub gap: Duration,
}

/// A logical client.
pub struct Tracker {
    pub index: usize,
    main_port: u16,
    client: Client,
    /// The session of the first welcome.
    pub session: String,
    token: String,
    last_pos: Option<String>,
    /// The worker `/connect` handed out for the first connection.
    pub first_worker: Option<usize>,
    pub seen: Vec<Seen>,
    pub outbox: Outbox,
    /// Why the tracker stopped following for good (its session taken over, a resume failed).
    pub gone: Option<String>,
}

impl Tracker {
    /// A new session on the worker `/connect` on `main_port` hands out.
    pub async fn open(index: usize, main_port: u16) -> Result<Tracker, String> {
        let handout = handout(main_port).await?;
        let mut tracker = Tracker::open_on(index, main_port, &handout.ws_url()).await?;
        tracker.first_worker = handout.worker;
        Ok(tracker)
    }

    /// A new session on the worker at `ws_url` (raw websocket); it reconnects through
    /// `/connect` on `main_port`.
    pub async fn open_on(index: usize, main_port: u16, ws_url: &str) -> Result<Tracker, String> {
        let mut client = Client::connect(ws_url).await?;
        let welcome = client.handshake(json!({"hello": 1})).await?;
        Ok(Tracker {
            index,
            main_port,
            client,
            session: welcome.session.clone(),
            token: welcome.resume,
            last_pos: welcome.pos,
            first_worker: None,
            seen: Vec::new(),
            outbox: Outbox::new(index),
            gone: None,
        })
    }

    /// The numbers of `stream` received, in arrival order.
    pub fn numbers<'a>(&'a self, stream: &'a str) -> impl Iterator<Item = u64> + 'a {
        self.seen.iter().filter_map(move |seen| match seen {
            Seen::Numbered { stream: s, n, .. } if s == stream => Some(*n),
            _ => None,
        })
    }

    /// Whether number `n` of `stream` was received.
    pub fn has(&self, stream: &str, n: u64) -> bool {
        self.numbers(stream).any(|m| m == n)
    }

    /// The highest number of `stream` received (0: none).
    pub fn highest(&self, stream: &str) -> u64 {
        self.numbers(stream).max().unwrap_or(0)
    }

    /// The moves, in order.
    pub fn moves(&self) -> impl Iterator<Item = &Move> {
        self.seen.iter().filter_map(|seen| match seen {
            Seen::Moved(m) => Some(m),
            _ => None,
        })
    }

    /// Reads, sends what the outbox has due, and follows every end of the connection, until
    /// `until` holds (true) or `deadline` passes or the tracker is gone (false).
    pub async fn follow(&mut self, until: &dyn Fn(&Tracker) -> bool, deadline: Instant) -> bool {
        loop {
            if until(self) {
                return true;
            }
            let now = Instant::now();
            if self.gone.is_some() || now >= deadline {
                return false;
            }
            self.outbox.queue_due(now);
            let flushed = self.outbox.flush(&mut self.client).await;
            let wait = if flushed {
                let due = self
                    .outbox
                    .next_due()
                    .map_or(STEP, |at| at.saturating_duration_since(now));
                STEP.min(due).min(deadline - now)
            } else {
                // The websocket refused a message: it is going away; read until it is gone.
                crate::common::WAIT
            };
            match self
                .client
                .next_envelope(wait.max(Duration::from_millis(1)))
                .await
            {
                Some(Received::Envelope(envelope)) => self.take(envelope),
                Some(Received::Closed(close)) => self.resume_elsewhere(close).await,
                None if !flushed => self.resume_elsewhere(None).await,
                None => {}
            }
        }
    }

    /// Leaves the current connection (a clean close: the client went away) and resumes on the
    /// worker at `ws_url`, caught up from the last position. For a session that expects nothing
    /// meanwhile: what arrives on the old connection while it closes is not recorded.
    pub async fn move_to(&mut self, ws_url: &str) -> Result<(), String> {
        let fresh = Client::connect(ws_url).await?;
        let old = std::mem::replace(&mut self.client, fresh);
        old.close().await;
        let since = self.last_pos.clone();
        let started = Instant::now();
        let welcome = self
            .client
            .resume_since(&self.token, since.as_deref())
            .await?;
        self.resumed(None, since, welcome, started.elapsed());
        Ok(())
    }

    /// Records one envelope.
    fn take(&mut self, envelope: Value) {
        let topic = envelope["topic"].as_str().unwrap_or_default();
        let data = &envelope["data"];
        let pos = envelope["pos"].as_str().map(str::to_owned);
        if let Some(pos) = &pos {
            self.last_pos = Some(pos.clone());
        }
        match topic {
            POS => {
                let notice_pos = data["pos"].as_str().map(str::to_owned);
                if let Some(pos) = &notice_pos {
                    self.last_pos = Some(pos.clone());
                }
                if data["recovered"] == json!(false) {
                    self.seen.push(Seen::Told {
                        notice: "pos",
                        pos: notice_pos,
                    });
                }
            }
            ACK => {
                if !self.outbox.acked(data["id"].as_str().unwrap_or_default()) {
                    self.seen.push(Seen::Other(topic.to_owned(), data.clone()));
                }
            }
            ERROR => match data["id"].as_str() {
                Some(id) if self.outbox.errored(id, data) => {}
                _ => self.seen.push(Seen::Error(data.clone())),
            },
            WELCOME => self.seen.push(Seen::Other(topic.to_owned(), data.clone())),
            _ => match (data["stream"].as_str(), data["n"].as_u64()) {
                (Some(stream), Some(n)) => self.seen.push(Seen::Numbered {
                    stream: stream.to_owned(),
                    n,
                    pos,
                }),
                _ => self.seen.push(Seen::Other(topic.to_owned(), data.clone())),
            },
        }
    }

    /// The connection ended with `close`: back in the session on the worker `/connect` hands
    /// out, caught up from the last position — unless another connection took the session over.
    async fn resume_elsewhere(&mut self, close: Option<(u16, String)>) {
        if let Some((TAKEN_OVER, reason)) = &close {
            self.gone = Some(format!("closed with {TAKEN_OVER} {reason:?}"));
            return;
        }
        let ended = Instant::now();
        let since = self.last_pos.clone();
        let resumed = resume_since_through_connect(
            self.main_port,
            &self.token,
            since.as_deref(),
            RESUME_WAIT,
        )
        .await;
        match resumed {
            Ok((client, welcome)) => {
                self.client = client;
                self.resumed(close, since, welcome, ended.elapsed());
            }
            Err(e) => self.gone = Some(format!("after close {close:?}: {e}")),
        }
    }

    /// Records a resume's welcome and takes its token and position.
    fn resumed(
        &mut self,
        close: Option<(u16, String)>,
        since: Option<String>,
        welcome: Welcome,
        gap: Duration,
    ) {
        self.token = welcome.resume.clone();
        if let Some(pos) = &welcome.pos {
            self.last_pos = Some(pos.clone());
        }
        let told = welcome.recovered == Some(false);
        let pos = welcome.pos.clone();
        self.seen.push(Seen::Moved(Move {
            close,
            since,
            welcome,
            gap,
        }));
        if told {
            self.seen.push(Seen::Told {
                notice: "welcome",
                pos,
            });
        }
    }
}
