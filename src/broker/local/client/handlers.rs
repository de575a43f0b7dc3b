//! The [`LocalBroker`]'s message handlers: the broker interface, and the stream of frames from
//! the server.

use std::collections::hash_map::Entry;

use actix::prelude::*;

use crate::broker::ttl_ms;
use bytes::Bytes;

use super::{check_sizes, Incoming, Link, LocalBroker};
use crate::broker::local::wire::{Request, Response};
use crate::broker::log::{Confirm, LogRead, Position, PublishLogged, ReadLog};
use crate::broker::{
    BrokerError, IsConnected, LoadSession, Publish, SharedSecret, StoreSession, Subscribe,
    Unsubscribe, HEALTH_CHECK_EVERY,
};

/// A well-formed answer of the wrong kind: the server speaks another protocol version.
pub(super) fn unexpected(what: &str, answer: &Response) -> BrokerError {
    BrokerError::Server(format!("unexpected answer to {what}: {answer:?}"))
}

impl Actor for LocalBroker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
        ctx.run_interval(HEALTH_CHECK_EVERY, |act, ctx| {
            // The timers would keep an actor nobody can reach alive (and reconnecting) forever.
            if ctx.connected() {
                act.check_health(ctx);
            } else {
                log::info!(
                    "local broker client stopped path={} reason=unused",
                    act.path.display()
                );
                ctx.stop();
            }
        });
    }
}

impl StreamHandler<Incoming> for LocalBroker {
    fn handle(&mut self, incoming: Incoming, ctx: &mut Context<Self>) {
        if let (Incoming::Frame(..), Link::Up(connected)) = (&incoming, &self.link) {
            connected.progress.set(std::time::Instant::now());
        }
        match incoming {
            Incoming::Frame(
                Response::Message {
                    subscription,
                    channel,
                    logged,
                },
                payload,
            ) => self.deliver_message(&subscription, channel, payload, logged),
            Incoming::Frame(answer, body) => {
                let Link::Up(connected) = &mut self.link else {
                    return;
                };
                let waiting = answer.id().and_then(|id| connected.pending.remove(&id));
                match waiting {
                    Some(waiting) => {
                        let _ = waiting.send((answer, body));
                    }
                    None => log::debug!("local broker answer nobody waits for answer={answer:?}"),
                }
            }
            Incoming::Lost(generation, reason) => self.lost(generation, &reason, ctx),
        }
    }

    /// The end of a connection's stream was reported by its `Lost` event already; unlike the
    /// default, this keeps the actor running, since it outlives its connections.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<Subscribe> for LocalBroker {
    type Result = ();

    fn handle(&mut self, Subscribe(pattern): Subscribe, ctx: &mut Context<Self>) {
        if let Entry::Vacant(wanted) = self.wanted.entry(pattern.wire_name()) {
            log::debug!("local broker subscribe pattern={pattern}");
            wanted.insert(pattern);
            self.sync(ctx);
        }
    }
}

impl Handler<Unsubscribe> for LocalBroker {
    type Result = ();

    fn handle(&mut self, Unsubscribe(pattern): Unsubscribe, ctx: &mut Context<Self>) {
        if self.wanted.remove(&pattern.wire_name()).is_some() {
            log::debug!("local broker unsubscribe pattern={pattern}");
            self.sync(ctx);
        }
    }
}

impl Handler<Publish> for LocalBroker {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_sizes(&msg.channel, &msg.payload) {
            return Box::pin(futures_util::future::ready(Err(e)));
        }
        let channel = msg.channel.to_string();
        let publish = move |id| Request::Publish { id, channel };
        let answer = self.run("publish", publish, msg.payload, ctx);
        Box::pin(async move {
            match answer.await? {
                (Response::Done { .. }, _) => Ok(()),
                (other, _) => Err(unexpected("publish", &other)),
            }
        })
    }
}

impl Handler<PublishLogged> for LocalBroker {
    type Result = ResponseFuture<Result<Position, BrokerError>>;

    fn handle(&mut self, msg: PublishLogged, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_sizes(&msg.channel, &msg.payload) {
            return Box::pin(futures_util::future::ready(Err(e)));
        }
        let channel = msg.channel.to_string();
        let publish = move |id| Request::PublishLogged { id, channel };
        let answer = self.run("publish", publish, msg.payload, ctx);
        Box::pin(async move {
            match answer.await? {
                (Response::Logged { epoch, seq, .. }, _) => Ok(Position {
                    epoch: epoch.into(),
                    seq,
                }),
                (other, _) => Err(unexpected("publish", &other)),
            }
        })
    }
}

impl Handler<ReadLog> for LocalBroker {
    type Result = ResponseFuture<Result<LogRead, BrokerError>>;

    fn handle(&mut self, msg: ReadLog, ctx: &mut Context<Self>) -> Self::Result {
        self.read_log(msg.after, ctx)
    }
}

impl Handler<Confirm> for LocalBroker {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, Confirm(patterns): Confirm, _ctx: &mut Context<Self>) -> Self::Result {
        if !matches!(self.link, Link::Up(_)) {
            return Box::pin(futures_util::future::ready(false));
        }
        let confirmed = self.confirmed(&patterns);
        self.waiters.confirm(patterns, confirmed)
    }
}

impl Handler<StoreSession> for LocalBroker {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: StoreSession, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_sizes(&msg.id, &msg.record) {
            return Box::pin(futures_util::future::ready(Err(e)));
        }
        let ttl_ms = ttl_ms(msg.ttl);
        let session = msg.id.to_string();
        let store = move |id| Request::Store {
            id,
            session,
            ttl_ms,
        };
        let answer = self.run("store", store, msg.record, ctx);
        Box::pin(async move {
            match answer.await? {
                (Response::Done { .. }, _) => Ok(()),
                (other, _) => Err(unexpected("store", &other)),
            }
        })
    }
}

impl Handler<LoadSession> for LocalBroker {
    type Result = ResponseFuture<Result<Option<Bytes>, BrokerError>>;

    fn handle(&mut self, msg: LoadSession, ctx: &mut Context<Self>) -> Self::Result {
        let session = msg.id.to_string();
        let load = move |id| Request::Load { id, session };
        let answer = self.run("load", load, Bytes::new(), ctx);
        Box::pin(async move {
            match answer.await? {
                (Response::Record { found: true, .. }, record) => Ok(Some(record)),
                (Response::Record { found: false, .. }, _) => Ok(None),
                (other, _) => Err(unexpected("load", &other)),
            }
        })
    }
}

impl Handler<SharedSecret> for LocalBroker {
    type Result = ResponseFuture<Result<String, BrokerError>>;

    fn handle(&mut self, msg: SharedSecret, ctx: &mut Context<Self>) -> Self::Result {
        let proposed = msg.proposed;
        let exchange = move |id| Request::Secret { id, proposed };
        let answer = self.run("secret", exchange, Bytes::new(), ctx);
        Box::pin(async move {
            match answer.await? {
                (Response::Secret { secret, .. }, _) => Ok(secret),
                (other, _) => Err(unexpected("secret", &other)),
            }
        })
    }
}

impl Handler<IsConnected> for LocalBroker {
    type Result = bool;

    fn handle(&mut self, _msg: IsConnected, _ctx: &mut Context<Self>) -> bool {
        matches!(self.link, Link::Up(_))
    }
}

/// Test hook: whether the server has confirmed exactly the wanted subscriptions.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "bool")]
pub(in crate::broker::local) struct Settled;

#[cfg(test)]
impl Handler<Settled> for LocalBroker {
    type Result = bool;

    fn handle(&mut self, _msg: Settled, _ctx: &mut Context<Self>) -> bool {
        match &self.link {
            Link::Up(connected) => {
                !connected.syncing
                    && connected.applied.len() == self.wanted.len()
                    && (connected.applied.iter()).all(|p| self.wanted.contains_key(&p.wire_name()))
            }
            Link::Down { .. } => false,
        }
    }
}
