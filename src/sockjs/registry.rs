//! The session registry: which SockJS session id belongs to which running session actor.
//!
//! HTTP transports find their session here by the id in the URL; a receiving request for an
//! unknown id creates the session (with that request as its first receiver), a sending request
//! for an unknown id is a 404. Websocket sessions live exactly as long as their connection and
//! are not found by id (SockJS allows two websocket sessions to share an id), but the registry
//! tracks them too, so that it can count and close every session of the endpoint (a draining
//! worker tells each client to reconnect elsewhere).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use super::admission::{Admission, Pass, Refusal};
use super::opening::Opening;
use super::receiver::Receiver;
use super::session::{Attach, CloseSession, SessionGone, SessionHandle};

/// A token unique within the process, naming one session instance.
pub fn next_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Creates a session actor for an id with its first receiver and the request that opened it;
/// `gone` must be told when it stops.
pub type SessionFactory = Arc<
    dyn Fn(Arc<str>, Receiver, Recipient<SessionGone>, u64, &Opening) -> SessionHandle
        + Send
        + Sync,
>;

/// The registry actor of one endpoint.
pub struct Registry {
    /// HTTP sessions by id, with their token and their admission pass.
    sessions: HashMap<Arc<str>, (SessionHandle, u64, Pass)>,
    /// Websocket sessions, by token (their transport holds their pass).
    connections: HashMap<u64, SessionHandle>,
    factory: SessionFactory,
    admission: Arc<Admission>,
}

impl Registry {
    pub fn new(factory: SessionFactory, admission: Arc<Admission>) -> Self {
        Registry {
            sessions: HashMap::new(),
            connections: HashMap::new(),
            factory,
            admission,
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

/// A receiving request: attach to session `id`, creating it (opened by this request) if unknown
/// and if the client at `opening.address` may open one more session.
#[derive(Message)]
#[rtype(result = "Result<SessionHandle, Refusal>")]
pub struct Receive {
    pub id: Arc<str>,
    pub receiver: Receiver,
    pub opening: Opening,
}

/// A sending request: the session `id`, if it exists.
#[derive(Message)]
#[rtype(result = "Option<SessionHandle>")]
pub struct Lookup {
    pub id: Arc<str>,
}

/// How many sessions are open (HTTP and websocket).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Count;

/// A websocket session started; `token` is the one it reports in [`SessionGone`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct TrackConnection {
    pub token: u64,
    pub handle: SessionHandle,
}

/// Closes every session with a close frame (e.g. `1012 Service Restart` when draining).
#[derive(Message, Clone)]
#[rtype(result = "usize")]
pub struct CloseAll {
    pub code: u16,
    pub reason: String,
}

impl Handler<Receive> for Registry {
    type Result = Result<SessionHandle, Refusal>;

    fn handle(&mut self, msg: Receive, ctx: &mut Context<Self>) -> Self::Result {
        if let Some((handle, _, _)) = self.sessions.get(&msg.id) {
            handle.attach.do_send(Attach(msg.receiver));
            return Ok(handle.clone());
        }
        let pass = self.admission.admit(msg.opening.address)?;
        let token = next_token();
        let handle = (self.factory)(
            msg.id.clone(),
            msg.receiver,
            ctx.address().recipient(),
            token,
            &msg.opening,
        );
        self.sessions.insert(msg.id, (handle.clone(), token, pass));
        Ok(handle)
    }
}

impl Handler<Lookup> for Registry {
    type Result = Option<SessionHandle>;

    fn handle(&mut self, msg: Lookup, _ctx: &mut Context<Self>) -> Self::Result {
        self.sessions.get(&msg.id).map(|(h, _, _)| h.clone())
    }
}

impl Handler<Count> for Registry {
    type Result = usize;

    fn handle(&mut self, _msg: Count, _ctx: &mut Context<Self>) -> usize {
        self.sessions.len() + self.connections.len()
    }
}

impl Handler<TrackConnection> for Registry {
    type Result = ();

    fn handle(&mut self, msg: TrackConnection, _ctx: &mut Context<Self>) {
        self.connections.insert(msg.token, msg.handle);
    }
}

impl Handler<CloseAll> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: CloseAll, _ctx: &mut Context<Self>) -> usize {
        let all = self
            .sessions
            .values()
            .map(|(h, _, _)| h)
            .chain(self.connections.values());
        let mut closed = 0;
        for handle in all {
            handle.close.do_send(CloseSession {
                code: msg.code,
                reason: msg.reason.clone(),
            });
            closed += 1;
        }
        closed
    }
}

impl Handler<SessionGone> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SessionGone, _ctx: &mut Context<Self>) {
        // Only forget the entry if it is still the session that stopped, not a newer one
        // registered under the same id.
        if self
            .sessions
            .get(&msg.id)
            .is_some_and(|(_, t, _)| *t == msg.token)
        {
            self.sessions.remove(&msg.id);
        } else {
            // A websocket session (tracked by token only).
            self.connections.remove(&msg.token);
        }
    }
}
