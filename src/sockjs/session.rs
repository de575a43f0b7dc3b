//! The SockJS session actor: one per SockJS session, whatever the transport.
//!
//! A [`Session`] owns the protocol state of one session: its bounded outbound queue, the one
//! receiver (transport) currently attached, heartbeats, the disconnect timer and the close frame.
//! Transports are thin adapters that [`Attach`] a receiver, pass client messages in as
//! [`ClientMessages`], and detach by dropping their [`FrameStream`](super::receiver::FrameStream).
//!
//! What a session *does* with messages is the job of its [`SessionHandler`]: the echo handler of
//! the conformance server, or Rohrpost's own session logic. A handler sees four things: the
//! session opened, a message arrived, the endpoint drains (the handler names the close frame its
//! client gets), and the session closed; and it can send messages and close the session
//! through [`SessionCtx`]. Messages to send are encoded once
//! ([`EncodedMessage`]) and coalesced into one `a[...]` frame when several are pending.
//!
//! Lifecycle: a session starts with its first receiver and sends it the open frame. Without a
//! receiver for `disconnect_delay` it is gone. Once closed (by the handler, or by an interrupted
//! transport), every receiver that attaches gets the close frame until `disconnect_delay` passes.
//! A second receiver while one is attached gets `c[2010,"Another connection still open"]`.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use log::debug;

use super::frames::{EncodedMessage, Frame};
use super::options::SockjsOptions;
use super::receiver::{Detach, Receiver, ReceiverKind};

/// Close code and reason sent to a second receiver of a session.
pub const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");
/// Close code and reason when a receiving connection was cut by the network.
pub const INTERRUPTED: (u16, &str) = (1002, "Connection interrupted");
/// Close code and reason when a client does not read fast enough.
pub const QUEUE_FULL: (u16, &str) = (1013, "Outbound queue full");

/// The application logic of a session.
pub trait SessionHandler: Sized + Unpin + 'static {
    /// The session was opened (its open frame is on the way).
    fn on_open(&mut self, _session: &mut SessionCtx<'_, Self>) {}

    /// The client sent a message.
    fn on_message(&mut self, message: String, session: &mut SessionCtx<'_, Self>);

    /// The session is closed: by [`SessionCtx::close`], an interrupted transport, a full queue,
    /// or the disconnect timeout. Called exactly once.
    fn on_close(&mut self, _cause: CloseCause) {}

    /// The close frame the client gets when the session is closed from outside (the endpoint
    /// drains), given the one asked for. A handler whose client reconnects at once only on
    /// another code (Rohrpost 0.x clients: 100) names that one.
    fn drain_close<'a>(&self, asked: (u16, &'a str)) -> (u16, &'a str) {
        asked
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The application closed it.
    Closed,
    /// The receiving connection was cut (1002), or a websocket closed.
    Interrupted,
    /// No receiver for `disconnect_delay`.
    TimedOut,
    /// The client did not read and the outbound queue overflowed (1013).
    QueueFull,
}

/// Attaches a transport to a session.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Attach(pub Receiver);

/// Messages a client sent, in order.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ClientMessages(pub Vec<String>);

/// Closes a session from outside (a worker draining), with this close frame unless the handler
/// names another ([`SessionHandler::drain_close`]). The close is graceful: messages the client
/// sent before it saw the close frame still reach the handler, which is told of the close when
/// the session ends (the websocket's closing handshake is over, or `disconnect_delay`).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct CloseSession {
    pub code: u16,
    pub reason: String,
}

/// Told to the registry when a session actor stops.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SessionGone {
    pub id: Arc<str>,
    pub token: u64,
}

/// Type-erased handle on a running session, for transports and the registry.
#[derive(Clone)]
pub struct SessionHandle {
    pub attach: Recipient<Attach>,
    pub incoming: Recipient<ClientMessages>,
    pub detach: Recipient<Detach>,
    pub close: Recipient<CloseSession>,
}

impl<H: SessionHandler> From<&Addr<Session<H>>> for SessionHandle {
    fn from(addr: &Addr<Session<H>>) -> Self {
        SessionHandle {
            attach: addr.clone().recipient(),
            incoming: addr.clone().recipient(),
            detach: addr.clone().recipient(),
            close: addr.clone().recipient(),
        }
    }
}

/// How a session is tied to its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Lives across receivers until `disconnect_delay` without one (HTTP transports).
    Detachable,
    /// Lives exactly as long as its one connection (websockets).
    Connection,
}

/// The session actor.
pub struct Session<H: SessionHandler> {
    core: SessionCore,
    handler: H,
    gone: Option<(Recipient<SessionGone>, u64)>,
}

/// Protocol state of a session, separate from the handler so both can be borrowed at once.
pub struct SessionCore {
    id: Arc<str>,
    options: Arc<SockjsOptions>,
    lifetime: Lifetime,
    queue: VecDeque<EncodedMessage>,
    receiver: Option<Receiver>,
    /// Set once closed: the frame every later receiver gets.
    closed: Option<Frame>,
    /// The cause not yet reported to the handler.
    pending_cause: Option<CloseCause>,
    close_reported: bool,
    /// Closed from outside, gracefully (see [`CloseSession`]).
    graceful: bool,
    /// A wait for channel capacity is under way.
    awaiting_capacity: bool,
    disconnect_timer: Option<SpawnHandle>,
}

impl<H: SessionHandler> Session<H> {
    /// Starts a session with its first receiver. `gone` is told when the session stops.
    pub fn start(
        id: Arc<str>,
        options: Arc<SockjsOptions>,
        lifetime: Lifetime,
        first: Receiver,
        handler: H,
        gone: Option<(Recipient<SessionGone>, u64)>,
    ) -> Addr<Self> {
        let core = SessionCore {
            id,
            options,
            lifetime,
            queue: VecDeque::new(),
            receiver: Some(first),
            closed: None,
            pending_cause: None,
            close_reported: false,
            graceful: false,
            awaiting_capacity: false,
            disconnect_timer: None,
        };
        Session {
            core,
            handler,
            gone,
        }
        .start()
    }

    /// Runs `f` on the handler with a context, then reports a close it caused. This is how
    /// messages the application defines for its sessions reach the handler.
    pub fn with_handler(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut H, &mut SessionCtx<'_, H>),
    ) {
        let mut session = SessionCtx {
            core: &mut self.core,
            ctx,
        };
        f(&mut self.handler, &mut session);
        self.report_close();
    }

    fn report_close(&mut self) {
        if self.core.graceful {
            // Told when the session stops: messages in flight still reach the handler.
            return;
        }
        if let Some(cause) = self.core.pending_cause.take() {
            if !self.core.close_reported {
                self.core.close_reported = true;
                self.handler.on_close(cause);
            }
        }
    }
}

impl<H: SessionHandler> Actor for Session<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        debug!("sockjs session opened session={}", self.core.id);
        self.core.send_frame(Frame::open(), ctx);
        let heartbeat = self.core.options.heartbeat;
        ctx.run_interval(heartbeat, |act, ctx| act.core.heartbeat(ctx));
        self.with_handler(ctx, |h, s| h.on_open(s));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if !self.core.close_reported {
            self.core.close_reported = true;
            let cause = self
                .core
                .pending_cause
                .take()
                .unwrap_or(CloseCause::TimedOut);
            self.handler.on_close(cause);
        }
        if let Some((gone, token)) = self.gone.take() {
            gone.do_send(SessionGone {
                id: self.core.id.clone(),
                token,
            });
        }
        debug!("sockjs session gone session={}", self.core.id);
    }
}

impl<H: SessionHandler> Handler<Attach> for Session<H> {
    type Result = ();

    fn handle(&mut self, Attach(receiver): Attach, ctx: &mut Context<Self>) {
        self.core.attach(receiver, ctx);
    }
}

impl<H: SessionHandler> Handler<Detach> for Session<H> {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        self.core.detach(msg, ctx);
        self.report_close();
    }
}

impl<H: SessionHandler> Handler<ClientMessages> for Session<H> {
    type Result = ();

    fn handle(&mut self, ClientMessages(messages): ClientMessages, ctx: &mut Context<Self>) {
        for message in messages {
            if self.core.closed.is_some() && !self.core.graceful {
                debug!(
                    "sockjs message after close dropped session={}",
                    self.core.id
                );
                break;
            }
            self.with_handler(ctx, |h, s| h.on_message(message, s));
        }
    }
}

impl<H: SessionHandler> Handler<CloseSession> for Session<H> {
    type Result = ();

    fn handle(&mut self, msg: CloseSession, ctx: &mut Context<Self>) {
        if self.core.closed.is_none() {
            self.core.graceful = true;
        }
        let (code, reason) = self.handler.drain_close((msg.code, &msg.reason));
        self.core.close(code, reason, CloseCause::Closed, ctx);
        self.report_close();
    }
}

/// What a handler can do with its session.
pub struct SessionCtx<'a, H: SessionHandler> {
    core: &'a mut SessionCore,
    ctx: &'a mut Context<Session<H>>,
}

impl<H: SessionHandler> SessionCtx<'_, H> {
    /// The SockJS session id (chosen by the client; never an authority for anything).
    pub fn id(&self) -> &str {
        &self.core.id
    }

    /// Sends one message to the client.
    pub fn send(&mut self, message: &str) {
        self.send_encoded(EncodedMessage::new(message));
    }

    /// Sends a message encoded once and shared with other sessions.
    pub fn send_encoded(&mut self, message: EncodedMessage) {
        self.core.push(message, self.ctx);
    }

    /// Closes the session with a close frame; pending messages are delivered first.
    pub fn close(&mut self, code: u16, reason: &str) {
        self.core.close(code, reason, CloseCause::Closed, self.ctx);
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.core.closed.is_some()
    }

    /// The actor context, to spawn futures or timers that come back to the session.
    pub fn context(&mut self) -> &mut Context<Session<H>> {
        self.ctx
    }
}

impl SessionCore {
    fn attach<H: SessionHandler>(&mut self, receiver: Receiver, ctx: &mut Context<Session<H>>) {
        if let Some(close) = &self.closed {
            // Polling or streaming, a closed session answers with its close frame and lets go.
            let _ = receiver.tx.try_send(close.clone());
            return;
        }
        if let Some(current) = &self.receiver {
            if !current.tx.is_closed() {
                let (code, reason) = ANOTHER_CONNECTION;
                let _ = receiver.tx.try_send(Frame::close(code, reason));
                return;
            }
        }
        if let Some(timer) = self.disconnect_timer.take() {
            ctx.cancel_future(timer);
        }
        self.receiver = Some(receiver);
        self.awaiting_capacity = false;
        self.flush(ctx);
    }

    fn detach<H: SessionHandler>(&mut self, msg: Detach, ctx: &mut Context<Session<H>>) {
        let current = self.receiver.as_ref().map(|r| r.id);
        if current != Some(msg.id) {
            return;
        }
        self.receiver = None;
        if self.lifetime == Lifetime::Connection {
            // A websocket session ends with its connection.
            if self.closed.is_none() {
                self.mark_closed(INTERRUPTED.0, INTERRUPTED.1, CloseCause::Interrupted);
            }
            ctx.stop();
            return;
        }
        if msg.interrupted && self.closed.is_none() {
            debug!("sockjs receiver interrupted session={}", self.id);
            self.mark_closed(INTERRUPTED.0, INTERRUPTED.1, CloseCause::Interrupted);
        }
        self.start_disconnect_timer(ctx);
    }

    fn push<H: SessionHandler>(&mut self, message: EncodedMessage, ctx: &mut Context<Session<H>>) {
        if self.closed.is_some() {
            debug!("sockjs send after close dropped session={}", self.id);
            return;
        }
        if self.queue.len() >= self.options.outbound_queue {
            debug!(
                "sockjs outbound queue full session={} limit={}",
                self.id, self.options.outbound_queue
            );
            self.queue.clear();
            crate::metrics::forced_close(crate::metrics::ForcedClose::SlowConsumer);
            self.close(QUEUE_FULL.0, QUEUE_FULL.1, CloseCause::QueueFull, ctx);
            return;
        }
        self.queue.push_back(message);
        self.flush(ctx);
    }

    /// Sends pending messages (as one frame) to the receiver, if it can take them now; otherwise
    /// waits for room once and tries again, coalescing whatever arrived meanwhile.
    fn flush<H: SessionHandler>(&mut self, ctx: &mut Context<Session<H>>) {
        if self.queue.is_empty() || self.awaiting_capacity {
            return;
        }
        let Some(receiver) = &self.receiver else {
            return;
        };
        let reserved = receiver.tx.try_reserve().map(|permit| {
            permit.send(Frame::messages(self.queue.iter()));
        });
        match reserved {
            Ok(()) => {
                self.queue.clear();
                self.after_frame(ctx);
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {
                self.awaiting_capacity = true;
                let tx = receiver.tx.clone();
                let id = receiver.id;
                ctx.spawn(
                    actix::fut::wrap_future::<_, Session<H>>(async move {
                        tx.reserve_owned().await.is_ok()
                    })
                    .map(move |ok, act: &mut Session<H>, ctx| {
                        let core = &mut act.core;
                        if core.receiver.as_ref().map(|r| r.id) != Some(id) {
                            return;
                        }
                        core.awaiting_capacity = false;
                        if ok {
                            core.flush(ctx);
                        }
                    }),
                );
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => {
                // The transport is gone; its Detach is on the way and the queue waits.
            }
        }
    }

    /// Sends a non-message frame (open, heartbeat) if the receiver has room.
    fn send_frame<H: SessionHandler>(&mut self, frame: Frame, ctx: &mut Context<Session<H>>) {
        if let Some(receiver) = &self.receiver {
            if receiver.tx.try_send(frame).is_ok() {
                self.after_frame(ctx);
            }
        }
    }

    /// A polling receiver gets one frame per request: let it go after it.
    fn after_frame<H: SessionHandler>(&mut self, ctx: &mut Context<Session<H>>) {
        if self
            .receiver
            .as_ref()
            .is_some_and(|r| r.kind == ReceiverKind::Polling)
        {
            self.receiver = None;
            self.start_disconnect_timer(ctx);
        }
    }

    fn heartbeat<H: SessionHandler>(&mut self, ctx: &mut Context<Session<H>>) {
        if self.closed.is_none() && self.queue.is_empty() && !self.awaiting_capacity {
            self.send_frame(Frame::heartbeat(), ctx);
        }
    }

    fn mark_closed(&mut self, code: u16, reason: &str, cause: CloseCause) {
        self.closed = Some(Frame::close(code, reason));
        self.pending_cause = Some(cause);
    }

    fn close<H: SessionHandler>(
        &mut self,
        code: u16,
        reason: &str,
        cause: CloseCause,
        ctx: &mut Context<Session<H>>,
    ) {
        if self.closed.is_some() {
            return;
        }
        debug!(
            "sockjs session closing session={} code={} reason={:?}",
            self.id, code, reason
        );
        self.mark_closed(code, reason, cause);
        let keep = self.graceful && self.lifetime == Lifetime::Connection;
        let receiver = if keep {
            self.receiver.as_ref().map(|r| (r.tx.clone(), r.kind))
        } else {
            self.receiver.take().map(|r| (r.tx, r.kind))
        };
        if let Some((tx, kind)) = receiver {
            // Deliver what is pending, then the close frame; the transport ends on it.
            if !self.queue.is_empty() && kind == ReceiverKind::Streaming {
                let _ = tx.try_send(Frame::messages(self.queue.iter()));
            }
            if let Some(close) = &self.closed {
                let _ = tx.try_send(close.clone());
            }
        }
        self.queue.clear();
        if keep {
            // The websocket transport answers the client's close and then goes; until then the
            // session still takes the client's messages. Stop anyway if that takes too long.
            let delay = self.options.disconnect_delay;
            ctx.run_later(delay, |_act, ctx| ctx.stop());
        } else if self.lifetime == Lifetime::Connection {
            // The websocket transport closes its connection on the close frame; the session
            // itself has nothing left to serve.
            ctx.stop();
        } else {
            self.start_disconnect_timer(ctx);
        }
    }

    fn start_disconnect_timer<H: SessionHandler>(&mut self, ctx: &mut Context<Session<H>>) {
        if let Some(timer) = self.disconnect_timer.take() {
            ctx.cancel_future(timer);
        }
        let delay = self.options.disconnect_delay;
        self.disconnect_timer = Some(ctx.run_later(delay, |act, ctx| {
            if act.core.receiver.is_none() {
                if act.core.closed.is_none() {
                    act.core.pending_cause = Some(CloseCause::TimedOut);
                }
                ctx.stop();
            }
        }));
    }
}

#[cfg(test)]
mod tests;
