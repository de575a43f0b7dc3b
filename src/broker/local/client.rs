//! The client half of the local broker: the actor through which one worker process publishes,
//! subscribes and keeps session records in the supervisor's [`LocalBrokerServer`].
//!
//! It behaves as [`RedisBroker`](crate::broker::redis::RedisBroker) does, over one Unix socket
//! instead of two TCP connections.
//!
//! # The connection
//! Incoming frames are added to the actor as a stream: replies are matched to the waiting
//! command by request id, messages are handed to the router. Outgoing frames go through a
//! bounded queue to a writer task, so a handler never waits on the socket; requests reach the
//! server in the order the handlers ran, and the server answers in that order.
//!
//! # Subscriptions
//! As in the Redis broker, the subscriptions asked for (`wanted`) are kept apart from those the
//! server has confirmed on this connection (`applied`); at most one batch of changes, their
//! difference, is in flight. A message is handed on only while its subscription is wanted, so
//! one dropped a moment ago delivers nothing even before the server confirms it.
//!
//! # Losing the server
//! The connection counts as lost when the socket closes or fails, when a command gets no answer
//! within 2 s while the server answers nothing else (a command behind a backlog that the server
//! is working through waits up to 10 s), or when the ping sent every 5 s does not come back in time. The actor then logs
//! one `warn` line, drops the connection (every waiting command fails with
//! [`BrokerError::Unavailable`]) and connects again after 100 ms doubling up to 5 s. A new
//! connection counts as up, and is logged at `info`, once every wanted subscription is restored
//! on it. While down, commands fail at once and nothing is queued; the actor stops, within 5 s,
//! once no handle on it is left.
//!
//! [`LocalBrokerServer`]: super::LocalBrokerServer

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::fut::wrap_future;
use actix::prelude::*;
use bytes::Bytes;
use futures_util::{future, stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::link::{open, write_requests, Opened};
use super::wire::{self, Request, Response, MAX_BODY, MAX_NAME};
use crate::broker::log::{Follower, LogEntry, LogRead, Position, Subscriptions, Waiters};
use crate::broker::{
    backoff, detached, BrokerError, BrokerMessage, LinkLost, LinkRestored, WatchRestored,
    COMMAND_TIMEOUT,
};
use crate::topics::Pattern;

mod directory;
mod handlers;
mod link;

#[cfg(test)]
pub(super) use handlers::Settled;

/// Bytes of frames waiting for the writer task; past it, commands fail rather than queue (the
/// server is not reading, and the command timeouts will find out). A burst of client messages
/// from thousands of sessions at once is what fills it (`bench inbound`), so it is generous; the
/// channel's own bound only keeps the count of tiny frames finite.
const WRITE_QUEUE_BYTES: usize = 64 * 1024 * 1024;
const WRITE_QUEUE: usize = 1 << 20;

/// How long a command may wait behind a backlog while the server keeps answering the commands
/// before it; past this it fails even though the connection is alive.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the connection's stream of incoming frames yields.
enum Incoming {
    Frame(Response, Bytes),
    /// The connection `generation` closed or broke.
    Lost(u64, String),
}

/// The connection, up.
struct Connected {
    /// Counts connections, so that news about an older one is told apart.
    generation: u64,
    /// To the writer task.
    requests: mpsc::Sender<Bytes>,
    /// Bytes in `requests` not yet taken by the writer task.
    queued_bytes: Rc<Cell<usize>>,
    /// The stream of incoming frames, added to the actor.
    frames: SpawnHandle,
    /// Ends the writer task, even one blocked on a server that stopped reading.
    stop_writer: CancellationToken,
    /// Commands waiting for their answer, by request id.
    pending: HashMap<u64, oneshot::Sender<(Response, Bytes)>>,
    /// When the server last sent anything: a command that waits long while this stays fresh
    /// sits behind a backlog, which is not a lost server.
    progress: Rc<Cell<Instant>>,
    applied: HashSet<Pattern>,
    /// Whether a batch of subscription changes is in flight (at most one is).
    syncing: bool,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.stop_writer.cancel();
    }
}

impl Handler<WatchRestored> for LocalBroker {
    type Result = ();

    fn handle(&mut self, msg: WatchRestored, _ctx: &mut Context<Self>) {
        self.restored = Some(msg.0);
    }
}

impl Handler<LinkLost> for LocalBroker {
    type Result = ();

    fn handle(&mut self, msg: LinkLost, ctx: &mut Context<Self>) {
        self.lost(msg.generation, &msg.reason, ctx);
    }
}

/// The state of the link to the server.
enum Link {
    Up(Connected),
    /// Not connected: a connection attempt is under way or scheduled.
    Down {
        since: Instant,
        attempts: u32,
        /// Pauses before attempts so far; the next one is `backoff(pauses)`.
        pauses: u32,
        /// Whether this outage was logged at `warn` already (it is, once).
        warned: bool,
    },
}

/// The broker actor of one worker process, speaking to the supervisor; see the module docs.
pub struct LocalBroker {
    path: PathBuf,
    deliver: Recipient<BrokerMessage>,
    /// Told when the server is back after an outage ([`WatchRestored`]).
    restored: Option<Recipient<LinkRestored>>,
    /// The subscriptions asked for, by wire name (the form messages name them in).
    wanted: HashMap<String, Pattern>,
    link: Link,
    generation: u64,
    /// The id of the next request; 0 is the restoring batch of a new connection.
    next_id: u64,
    /// Keeps logged deliveries gapless across reconnects.
    follower: Follower,
    /// [`Confirm`](crate::broker::log::Confirm)s waiting for their patterns to be applied.
    waiters: Waiters<Pattern>,
}

impl LocalBroker {
    /// Starts the actor on the current arbiter, connecting to the server at `path` in the
    /// background (and again after every loss); messages on subscriptions go to `deliver`.
    pub fn start(path: &Path, deliver: Recipient<BrokerMessage>) -> Addr<LocalBroker> {
        Actor::start(LocalBroker {
            path: path.to_owned(),
            deliver,
            restored: None,
            wanted: HashMap::new(),
            link: Link::Down {
                since: Instant::now(),
                attempts: 0,
                pauses: 0,
                warned: false,
            },
            generation: 0,
            next_id: 1,
            // Whether the server keeps a log is the server's; a worker reads it when it can.
            follower: Follower::new(true),
            waiters: Waiters::default(),
        })
    }

    /// Whether every one of `patterns` is applied on the current connection or no longer
    /// wanted.
    fn confirmed(&self, patterns: &[Pattern]) -> bool {
        let Link::Up(connected) = &self.link else {
            return false;
        };
        (patterns.iter())
            .all(|p| connected.applied.contains(p) || !self.wanted.contains_key(&p.wire_name()))
    }

    /// Answers the waiting [`Confirm`](crate::broker::log::Confirm)s that are confirmed now.
    fn wake_waiters(&mut self) {
        let mut waiters = std::mem::take(&mut self.waiters);
        waiters.wake(|patterns| self.confirmed(patterns));
        self.waiters = waiters;
    }

    /// After a reconnect: replays the logged messages missed while the link was down, then tells
    /// the watcher the link is back (and whether a gap remains).
    fn fill_gap(&mut self, ctx: &mut Context<Self>) {
        let Some(after) = self.follower.reconnected(self.restored.as_ref()) else {
            return;
        };
        let read = self.read_log(Some(after), ctx);
        ctx.spawn(wrap_future(read).map(|read, act: &mut Self, _ctx| {
            let wanted = Subscriptions::new(act.wanted.values());
            let restored = act.restored.as_ref();
            (act.follower).refill(read, &wanted, &act.deliver, restored, "local broker");
        }));
    }

    /// Reads the publication log after `after` (or only its epoch and head).
    pub(super) fn read_log(
        &mut self,
        after: Option<Position>,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<LogRead, BrokerError>> {
        let after = after.map(|p| (p.epoch.to_string(), p.seq));
        let request = move |id| Request::ReadLog { id, after };
        let answer = self.run("read log", request, Bytes::new(), ctx);
        Box::pin(async move {
            match answer.await? {
                (
                    Response::Log {
                        epoch,
                        head,
                        complete,
                        entries,
                        ..
                    },
                    payloads,
                ) => {
                    let mut offset = 0;
                    let mut read = Vec::with_capacity(entries.len());
                    for (seq, channel, len) in entries {
                        let end = offset + len;
                        if end > payloads.len() {
                            return Err(BrokerError::Server("log answer cut short".into()));
                        }
                        read.push(LogEntry {
                            seq,
                            channel: Arc::from(channel),
                            payload: payloads.slice(offset..end),
                        });
                        offset = end;
                    }
                    Ok(LogRead {
                        epoch: Arc::from(epoch),
                        head,
                        entries: read,
                        complete,
                    })
                }
                (other, _) => Err(BrokerError::Server(format!(
                    "unexpected answer to read log: {other:?}"
                ))),
            }
        })
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if let Link::Down { attempts, .. } = &mut self.link {
            *attempts = attempts.saturating_add(1);
        }
        let subscriptions: Vec<Pattern> = self.wanted.values().cloned().collect();
        let opening = open(self.path.clone(), subscriptions);
        ctx.spawn(
            wrap_future(opening).map(|opened, act: &mut Self, ctx| match opened {
                Ok(opened) => act.up(opened, ctx),
                Err(e) => act.connect_failed(&e, ctx),
            }),
        );
    }

    fn up(&mut self, opened: Opened, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let incoming = opened.frames.map(move |frame| {
            let decoded = frame
                .map_err(|e| e.to_string())
                .and_then(|frame| wire::decode::<Response>(frame).map_err(|e| e.to_string()));
            match decoded {
                Ok((response, body)) => Incoming::Frame(response, body),
                Err(e) => Incoming::Lost(generation, e),
            }
        });
        let closed = stream::once(future::ready(Incoming::Lost(
            generation,
            "the server closed the connection".into(),
        )));
        let frames = ctx.add_stream(incoming.chain(closed));
        let (requests, queue) = mpsc::channel(WRITE_QUEUE);
        let queued_bytes = Rc::new(Cell::new(0));
        let stop_writer = CancellationToken::new();
        actix_rt::spawn(write_requests(
            opened.sink,
            queue,
            queued_bytes.clone(),
            stop_writer.clone(),
        ));
        let subscriptions = opened.applied.len();
        let connected = Connected {
            generation,
            requests,
            queued_bytes,
            frames,
            stop_writer,
            pending: HashMap::new(),
            progress: Rc::new(Cell::new(Instant::now())),
            applied: opened.applied,
            syncing: false,
        };
        let path = self.path.display();
        match std::mem::replace(&mut self.link, Link::Up(connected)) {
            Link::Down {
                since, attempts, ..
            } if generation > 1 => log::info!(
                "local broker reconnected path={path} subscriptions={subscriptions} attempts={attempts} downtime_ms={}",
                since.elapsed().as_millis()
            ),
            _ => log::info!("local broker connected path={path} subscriptions={subscriptions}"),
        }
        self.wake_waiters();
        if generation > 1 {
            self.fill_gap(ctx);
        }
        // Subscriptions changed while connecting are caught up now.
        self.sync(ctx);
    }

    fn connect_failed(&mut self, error: &BrokerError, ctx: &mut Context<Self>) {
        let Link::Down {
            attempts, warned, ..
        } = &mut self.link
        else {
            return;
        };
        let path = self.path.display();
        if *warned {
            log::debug!("local broker connect failed path={path} attempt={attempts} error={error}");
        } else {
            *warned = true;
            log::warn!("local broker unavailable path={path} error={error} retrying=true");
        }
        self.retry_later(ctx);
    }

    /// Drops connection `generation` if it is the current one, and schedules a reconnect.
    fn lost(&mut self, generation: u64, reason: &str, ctx: &mut Context<Self>) {
        let Link::Up(connected) = &self.link else {
            return;
        };
        if connected.generation != generation {
            return;
        }
        ctx.cancel_future(connected.frames);
        log::warn!(
            "local broker connection lost path={} error={reason} subscriptions={} reconnecting=true",
            self.path.display(),
            self.wanted.len()
        );
        // Dropping the connection fails every waiting command and ends the writer.
        self.link = Link::Down {
            since: Instant::now(),
            attempts: 0,
            pauses: 0,
            warned: true,
        };
        self.retry_later(ctx);
    }

    fn retry_later(&mut self, ctx: &mut Context<Self>) {
        if let Link::Down { pauses, .. } = &mut self.link {
            let pause = backoff(*pauses, rand::random());
            *pauses = pauses.saturating_add(1);
            ctx.run_later(pause, |act, ctx| act.connect(ctx));
        }
    }

    /// Sends the server the difference between the wanted and the applied subscriptions,
    /// unless a batch is in flight already (its completion calls this again).
    fn sync(&mut self, ctx: &mut Context<Self>) {
        let Link::Up(connected) = &mut self.link else {
            return;
        };
        if connected.syncing {
            return;
        }
        let add: Vec<Pattern> = (self.wanted.values())
            .filter(|p| !connected.applied.contains(*p))
            .cloned()
            .collect();
        let remove: Vec<Pattern> = (connected.applied.iter())
            .filter(|p| !self.wanted.contains_key(&p.wire_name()))
            .cloned()
            .collect();
        if add.is_empty() && remove.is_empty() {
            return;
        }
        connected.syncing = true;
        let generation = connected.generation;
        let request = subscriptions_request(&add, &remove);
        let answer = self.run("subscriptions", request, Bytes::new(), ctx);
        ctx.spawn(wrap_future(answer).map(move |result, act: &mut Self, ctx| {
            if let Err(e) = &result {
                match e {
                    // `run` has dropped the connection already.
                    BrokerError::Unavailable(_) | BrokerError::Uncertain(_) => return,
                    // Asking again would be refused again: log it and count it as done.
                    BrokerError::Server(e) => log::warn!(
                        "local broker refused subscription change added={} removed={} error={e}",
                        add.len(),
                        remove.len()
                    ),
                }
            }
            if let Link::Up(connected) = &mut act.link {
                if connected.generation == generation {
                    for pattern in &remove {
                        connected.applied.remove(pattern);
                    }
                    connected.applied.extend(add);
                    connected.syncing = false;
                }
            }
            act.wake_waiters();
            act.sync(ctx);
        }));
    }

    /// Hands a message on a subscription to the router, if the subscription is still wanted.
    fn deliver_message(
        &mut self,
        subscription: &str,
        channel: String,
        payload: Bytes,
        logged: Option<(String, u64)>,
    ) {
        let Some(pattern) = self.wanted.get(subscription) else {
            log::debug!("local broker message for a dropped subscription channel={channel}");
            return;
        };
        log::debug!(
            "local broker message subscription={pattern} channel={channel} bytes={}",
            payload.len()
        );
        let message = BrokerMessage {
            subscription: pattern.clone(),
            channel: Arc::from(channel),
            payload,
            position: logged.map(|(epoch, seq)| Position {
                epoch: Arc::from(epoch),
                seq,
            }),
        };
        if let Some(message) = self.follower.live(message) {
            self.deliver.do_send(message);
        }
    }

    /// Sends one request and waits, at most the command timeout, for its answer; a refusal is
    /// [`BrokerError::Server`], and a lost connection or a late answer counts as losing the
    /// server.
    ///
    /// The waiting runs outside the actor's context (see [`detached`]).
    fn run(
        &mut self,
        what: &'static str,
        request: impl FnOnce(u64) -> Request,
        body: Bytes,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<(Response, Bytes), BrokerError>> {
        let Link::Up(connected) = &mut self.link else {
            let down = format!(
                "no connection to the local broker at {}, reconnecting",
                self.path.display()
            );
            return Box::pin(future::ready(Err(BrokerError::Unavailable(down))));
        };
        let id = self.next_id;
        self.next_id += 1;
        let generation = connected.generation;
        let frame = wire::encode(&request(id), &body);
        let queued = connected.queued_bytes.get() + frame.len();
        if queued > WRITE_QUEUE_BYTES {
            let full = format!("{queued} bytes waiting to be written; {what} refused");
            return Box::pin(future::ready(Err(BrokerError::Unavailable(full))));
        }
        match connected.requests.try_send(frame) {
            Ok(()) => connected.queued_bytes.set(queued),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let full = format!("{WRITE_QUEUE} requests waiting to be written; {what} refused");
                return Box::pin(future::ready(Err(BrokerError::Unavailable(full))));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                let reason = "writing to the server failed";
                self.lost(generation, reason, ctx);
                let lost = BrokerError::Unavailable(reason.into());
                return Box::pin(future::ready(Err(lost)));
            }
        }
        let (answered, mut answer) = oneshot::channel();
        connected.pending.insert(id, answered);
        let progress = connected.progress.clone();
        let asked = Instant::now();
        let answer = async move {
            loop {
                return match tokio::time::timeout(COMMAND_TIMEOUT, &mut answer).await {
                    Ok(Ok((Response::Refused { reason, .. }, _))) => {
                        Err(BrokerError::Server(reason))
                    }
                    Ok(Ok(answer)) => Ok(answer),
                    Ok(Err(_)) => Err(BrokerError::Uncertain(format!(
                        "connection lost before {what} was answered"
                    ))),
                    // Late, but the server answers the commands before it: a backlog.
                    Err(_)
                        if progress.get().elapsed() < COMMAND_TIMEOUT
                            && asked.elapsed() < BACKLOG_WAIT =>
                    {
                        continue
                    }
                    Err(_) => Err(BrokerError::Uncertain(format!(
                        "no answer to {what} within {} ms",
                        asked.elapsed().as_millis()
                    ))),
                };
            }
        };
        detached(ctx.address(), generation, answer)
    }

    /// Pings the server; a late answer counts as losing it.
    fn check_health(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.link, Link::Up(_)) {
            let ping = self.run("ping", |id| Request::Ping { id }, Bytes::new(), ctx);
            actix_rt::spawn(ping);
        }
    }
}

/// The request changing subscriptions by `add` and `remove`, given its id.
fn subscriptions_request(add: &[Pattern], remove: &[Pattern]) -> impl FnOnce(u64) -> Request {
    let names = |patterns: &[Pattern]| patterns.iter().map(Pattern::wire_name).collect();
    let (add, remove) = (names(add), names(remove));
    move |id| Request::Subscriptions { id, add, remove }
}

/// Sizes the server would refuse, refused before sending.
fn check_sizes(channel: &str, body: &[u8]) -> Result<(), BrokerError> {
    if channel.len() > MAX_NAME || body.len() > MAX_BODY {
        return Err(BrokerError::Server(format!(
            "too large for the local broker: name of {} bytes (at most {MAX_NAME}), body of {} bytes (at most {MAX_BODY})",
            channel.len(),
            body.len()
        )));
    }
    Ok(())
}
