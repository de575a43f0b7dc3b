//! The server half of the local broker, hosted by the supervisor.
//!
//! # Shape
//! One actix actor, [`LocalBrokerServer`], owns all the state: the clients, who is subscribed to
//! what, the session records and the shared secret. Everything that touches the state is a
//! typed message to it, so it needs no locks and handles one thing at a time, which is what
//! makes delivery ordered: publishes are handled in the order they reach the actor, and each
//! queues its deliveries on the clients' outbound queues before the next one is looked at.
//! Around it, plain tasks do the I/O: one accepts connections ([`bind`](LocalBrokerServer::bind)),
//! and one per connection reads requests and writes the client's queue
//! (`connection`). An actor fits because the supervisor runs on actix
//! already and the server's state is exactly what an actor is for; the tasks fit because
//! socket I/O is a loop, not a conversation.
//!
//! # Bounds
//! Frames are at most [`MAX_FRAME`](super::wire::MAX_FRAME) bytes; every name (channel,
//! pattern, session id) at most [`MAX_NAME`]. [`ServerLimits`] bounds the
//! clients, each client's subscriptions and outbound queue, and the session store. A client
//! whose queue is full is not reading: it is disconnected with a `warn` line and never slows the
//! others down. Expired session records are swept every second.
//!
//! # Lifetime
//! [`LocalBrokerServer::bind`] returns a [`LocalBrokerServerHandle`]; dropping it (or calling
//! [`shutdown`](LocalBrokerServerHandle::shutdown)) stops accepting, disconnects every client,
//! stops the actor and removes the socket file. The supervisor publishes through the handle.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use self::handle::{accept, remove_stale_socket};
use super::connection::Outbound;
use super::directory::DirectoryStore;
use super::history::PublicationLog;
use super::sessions::SessionStore;
use super::subscriptions::{ClientId, Subscriptions};
use super::wire::{self, Request, Response, MAX_BODY, MAX_NAME};
use crate::broker::directory::REAP_EVERY;
use crate::broker::log::{HistorySettings, Position, HEAD_CHANNEL};
use crate::topics::Pattern;

mod directory;
mod handle;

pub use handle::LocalBrokerServerHandle;

/// How often expired session records are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The server's limits; see the module docs. The defaults suit one machine's workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Clients connected at once; more are turned away (closed at once, logged).
    pub clients: usize,
    /// Bytes queued for one client before it counts as not reading and is disconnected. At
    /// least the largest frame, or a client could never be sent one.
    pub client_queue_bytes: usize,
    /// Subscriptions one client may hold; a change that would pass it is refused.
    pub subscriptions_per_client: usize,
    /// Session records held; storing a new one past it is refused.
    pub session_records: usize,
    /// Bytes of session records held; storing past it is refused.
    pub session_bytes: usize,
    /// The publication log's entries and age (`history`); disabled, logged publishes are
    /// refused.
    pub history: HistorySettings,
    /// Bytes of payload the log holds at most (the oldest entries go first).
    pub history_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            clients: 1024,
            client_queue_bytes: 64 * 1024 * 1024,
            subscriptions_per_client: 1 << 20,
            session_records: 1 << 20,
            session_bytes: 1 << 30,
            history: HistorySettings {
                enabled: true,
                size: 10_000,
                ttl: Duration::from_secs(300),
            },
            history_bytes: 256 << 20,
        }
    }
}

/// A connected client as the actor knows it.
struct Client {
    outbound: Outbound,
    /// Cancelling it ends the client's connection task, and so closes its socket.
    stop: CancellationToken,
}

/// The local broker's state and logic; see the module docs.
pub struct LocalBrokerServer {
    limits: ServerLimits,
    clients: HashMap<ClientId, Client>,
    next_client: ClientId,
    subscriptions: Subscriptions,
    sessions: SessionStore,
    /// The session directory (presence) and its leases.
    directory: DirectoryStore,
    secret: Option<String>,
    log: Option<PublicationLog>,
}

/// Sent by a new connection's task: registers the client, or `None` when there are too many.
#[derive(Message)]
#[rtype(result = "Option<ClientId>")]
pub(super) struct Join {
    pub outbound: Outbound,
    pub stop: CancellationToken,
}

/// Sent by a connection's task when the connection ended: forgets the client.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Leave {
    pub client: ClientId,
}

/// Sent by a connection's task for each request the client made, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct FromClient {
    pub client: ClientId,
    pub request: Request,
    pub body: Bytes,
}

/// Sent by the handle: publishes on behalf of the supervisor (through the log when `logged`);
/// answers how many deliveries were queued and the position it got, if logged.
#[derive(Message)]
#[rtype(result = "Result<(usize, Option<Position>), String>")]
struct PublishFromSupervisor {
    channel: Arc<str>,
    payload: Bytes,
    logged: bool,
}

/// Sent by the handle when it is dropped.
#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

impl LocalBrokerServer {
    /// Serves the local broker on a Unix socket at `path` with the default limits.
    pub async fn bind(path: &Path) -> io::Result<LocalBrokerServerHandle> {
        LocalBrokerServer::bind_with(path, ServerLimits::default()).await
    }

    /// Serves the local broker on a Unix socket at `path`, on the current actix arbiter.
    ///
    /// A socket file left at `path` by a server that is gone is replaced; a live server there,
    /// or a file that is not a socket, is an error. The socket file gets mode 0600 (only the
    /// supervisor's user may connect); put it in a directory only that user can write to, so
    /// that nobody can reach it between `bind` and `chmod` either.
    pub async fn bind_with(
        path: &Path,
        limits: ServerLimits,
    ) -> io::Result<LocalBrokerServerHandle> {
        remove_stale_socket(path)?;
        let listener = UnixListener::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        let bound = fs::metadata(path)?;
        let queue_bytes = limits.client_queue_bytes;
        let server = LocalBrokerServer {
            clients: HashMap::new(),
            next_client: 1,
            subscriptions: Subscriptions::default(),
            sessions: SessionStore::new(limits.session_records, limits.session_bytes),
            directory: DirectoryStore::new(limits.session_records, limits.session_bytes),
            secret: None,
            log: (limits.history.enabled).then(|| {
                let h = limits.history;
                PublicationLog::new(h.size, h.ttl, limits.history_bytes)
            }),
            limits,
        }
        .start();
        let stop = CancellationToken::new();
        actix_rt::spawn(accept(listener, server.clone(), stop.clone(), queue_bytes));
        log::info!("local broker listening path={}", path.display());
        Ok(LocalBrokerServerHandle {
            path: path.to_owned(),
            server,
            stop,
            socket_file: (bound.dev(), bound.ino()),
        })
    }

    /// Answers one request; `Err` is the reason it is refused.
    fn answer(
        &mut self,
        client: ClientId,
        request: Request,
        body: Bytes,
    ) -> Result<(Response, Bytes), String> {
        let none = Bytes::new();
        match request {
            Request::Subscriptions { id, add, remove } => {
                self.change_subscriptions(client, &add, &remove)?;
                Ok((Response::Done { id }, none))
            }
            Request::Publish { id, channel } => {
                check_name("channel", &channel)?;
                check_body(&body)?;
                self.publish(&channel, &body, None);
                Ok((Response::Done { id }, none))
            }
            Request::PublishLogged { id, channel } => {
                check_name("channel", &channel)?;
                check_body(&body)?;
                let (_, position) = self.publish_logged(&channel, &body)?;
                let (epoch, seq) = (position.epoch.to_string(), position.seq);
                Ok((Response::Logged { id, epoch, seq }, none))
            }
            Request::ReadLog { id, after } => {
                let log = self.log.as_mut().ok_or("history is disabled")?;
                let after = after.map(|(epoch, seq)| Position {
                    epoch: Arc::from(epoch),
                    seq,
                });
                let read = log.read(after.as_ref(), Instant::now());
                let mut payloads = Vec::new();
                let entries = (read.entries.iter())
                    .map(|e| {
                        payloads.extend_from_slice(&e.payload);
                        (e.seq, e.channel.to_string(), e.payload.len())
                    })
                    .collect();
                let answer = Response::Log {
                    id,
                    epoch: read.epoch.to_string(),
                    head: read.head,
                    complete: read.complete,
                    entries,
                };
                Ok((answer, Bytes::from(payloads)))
            }
            Request::Store {
                id,
                session,
                ttl_ms,
            } => {
                check_name("session id", &session)?;
                check_body(&body)?;
                let ttl = Duration::from_millis(ttl_ms.max(1));
                let stored = self.sessions.set(&session, body, ttl, Instant::now());
                stored.map_err(|e| e.to_string())?;
                Ok((Response::Done { id }, none))
            }
            Request::Load { id, session } => {
                Ok(match self.sessions.get(&session, Instant::now()) {
                    Some(record) => (Response::Record { id, found: true }, record),
                    None => (Response::Record { id, found: false }, none),
                })
            }
            Request::Secret { id, proposed } => {
                check_name("secret", &proposed)?;
                let secret = self.secret.get_or_insert(proposed).clone();
                Ok((Response::Secret { id, secret }, none))
            }
            Request::Ping { id } => Ok((Response::Done { id }, none)),
            request => self.answer_directory(request, body),
        }
    }

    /// Drops `remove` and adds `add` to the client's subscriptions, or changes nothing if the
    /// result would hold too many or a name is not a pattern.
    fn change_subscriptions(
        &mut self,
        client: ClientId,
        add: &[String],
        remove: &[String],
    ) -> Result<(), String> {
        let parse = |names: &[String]| -> Result<Vec<Pattern>, String> {
            (names.iter())
                .map(|name| {
                    Pattern::from_wire_name(name, MAX_NAME)
                        .map_err(|e| format!("subscription: {e}"))
                })
                .collect()
        };
        let (add, remove) = (parse(add)?, parse(remove)?);
        let subs = &self.subscriptions;
        let removed: HashSet<&Pattern> = (remove.iter()).filter(|p| subs.has(client, p)).collect();
        let added: HashSet<&Pattern> = (add.iter())
            .filter(|p| !subs.has(client, p) || removed.contains(p))
            .collect();
        let count = subs.count(client) - removed.len() + added.len();
        let max = self.limits.subscriptions_per_client;
        if count > max {
            return Err(format!(
                "{count} subscriptions requested, at most {max} allowed"
            ));
        }
        for pattern in &remove {
            self.subscriptions.remove(client, pattern);
        }
        for pattern in add {
            self.subscriptions.add(client, pattern);
        }
        Ok(())
    }

    /// Appends a publish to the log and delivers it with its position; answers how many
    /// deliveries were queued, and the position.
    fn publish_logged(
        &mut self,
        channel: &str,
        payload: &Bytes,
    ) -> Result<(usize, Position), String> {
        let log = self.log.as_mut().ok_or("history is disabled")?;
        let position = log.append(channel, payload, Instant::now());
        let beacon = log.beacon_after(&position);
        let delivered = self.publish(channel, payload, Some(&position));
        if beacon {
            self.publish(HEAD_CHANNEL, &Bytes::from_static(b"{}"), Some(&position));
        }
        Ok((delivered, position))
    }

    /// Queues one delivery per matching subscription per client; answers how many were queued.
    /// Clients whose queue overflows are disconnected afterwards.
    fn publish(&mut self, channel: &str, payload: &Bytes, position: Option<&Position>) -> usize {
        let mut delivered = 0;
        let mut overflowing = Vec::new();
        let logged = position.map(|p| (p.epoch.to_string(), p.seq));
        for (pattern, clients) in self.subscriptions.matching(channel) {
            let message = Response::Message {
                subscription: pattern.wire_name(),
                channel: channel.to_owned(),
                logged: logged.clone(),
            };
            let frame = wire::encode(&message, payload);
            for id in clients {
                match self.clients.get(id) {
                    Some(client) if client.outbound.push(frame.clone()) => delivered += 1,
                    Some(_) => overflowing.push(*id),
                    None => {}
                }
            }
        }
        log::debug!(
            "local broker publish channel={channel} bytes={} deliveries={delivered}",
            payload.len()
        );
        for client in overflowing {
            self.disconnect(client, "outbound queue full (client is not reading)");
        }
        delivered
    }

    /// Forgets `client` and closes its connection, logged at `warn`.
    fn disconnect(&mut self, id: ClientId, reason: &str) {
        if let Some(client) = self.clients.remove(&id) {
            self.subscriptions.forget(id);
            client.stop.cancel();
            log::warn!(
                "local broker client disconnected client={id} reason={reason:?} queued_bytes={}",
                client.outbound.queued_bytes()
            );
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!(
            "{what} of {} bytes, at most {MAX_NAME} allowed",
            name.len()
        ));
    }
    Ok(())
}

fn check_body(body: &[u8]) -> Result<(), String> {
    if body.len() > MAX_BODY {
        return Err(format!(
            "body of {} bytes, at most {MAX_BODY} allowed",
            body.len()
        ));
    }
    Ok(())
}

impl Actor for LocalBrokerServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(REAP_EVERY, |act, _ctx| act.reap(Instant::now()));
        ctx.run_interval(SWEEP_EVERY, |act, _ctx| {
            if let Some(log) = &mut act.log {
                log.sweep(Instant::now());
            }
            let dropped = act.sessions.sweep(Instant::now());
            if dropped > 0 {
                log::debug!(
                    "local broker sessions expired={dropped} held={}",
                    act.sessions.len()
                );
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        for client in self.clients.values() {
            client.stop.cancel();
        }
        log::info!("local broker server stopped");
    }
}

impl Handler<Join> for LocalBrokerServer {
    type Result = Option<ClientId>;

    fn handle(&mut self, join: Join, _ctx: &mut Context<Self>) -> Option<ClientId> {
        if self.clients.len() >= self.limits.clients {
            log::warn!(
                "local broker turned a client away clients={} limit={}",
                self.clients.len(),
                self.limits.clients
            );
            return None;
        }
        let id = self.next_client;
        self.next_client += 1;
        let client = Client {
            outbound: join.outbound,
            stop: join.stop,
        };
        self.clients.insert(id, client);
        log::info!(
            "local broker client joined client={id} clients={}",
            self.clients.len()
        );
        Some(id)
    }
}

impl Handler<Leave> for LocalBrokerServer {
    type Result = ();

    fn handle(&mut self, Leave { client }: Leave, _ctx: &mut Context<Self>) {
        if self.clients.remove(&client).is_some() {
            self.subscriptions.forget(client);
        }
    }
}

impl Handler<FromClient> for LocalBrokerServer {
    type Result = ();

    fn handle(&mut self, msg: FromClient, _ctx: &mut Context<Self>) {
        if !self.clients.contains_key(&msg.client) {
            return; // disconnected while the request was on its way
        }
        let id = msg.request.id();
        let (response, body) = match self.answer(msg.client, msg.request, msg.body) {
            Ok(answer) => answer,
            Err(reason) => {
                log::warn!(
                    "local broker refused a request client={} reason={reason:?}",
                    msg.client
                );
                (Response::Refused { id, reason }, Bytes::new())
            }
        };
        let queued = (self.clients.get(&msg.client))
            .is_some_and(|client| client.outbound.push(wire::encode(&response, &body)));
        if !queued {
            self.disconnect(msg.client, "outbound queue full (client is not reading)");
        }
    }
}

impl Handler<PublishFromSupervisor> for LocalBrokerServer {
    type Result = Result<(usize, Option<Position>), String>;

    fn handle(&mut self, msg: PublishFromSupervisor, _ctx: &mut Context<Self>) -> Self::Result {
        if msg.logged {
            let (delivered, position) = self.publish_logged(&msg.channel, &msg.payload)?;
            Ok((delivered, Some(position)))
        } else {
            Ok((self.publish(&msg.channel, &msg.payload, None), None))
        }
    }
}

impl Handler<Stop> for LocalBrokerServer {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
