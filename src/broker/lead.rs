//! Leadership among processes that share a broker server, and a mark the leader keeps there:
//! what the session event hook ([`crate::event_hook`]) needs so that, with several supervisors
//! on one Redis, one of them POSTs the events and the next one goes on where it stopped.
//! Kept by brokers that several machines share (Redis); with the embedded broker there is
//! one supervisor, always the leader.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::BrokerError;

/// Takes or keeps the lease `name` for `holder` for `ttl`; answers whether `holder` has it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<bool, BrokerError>")]
pub struct Lead {
    pub name: Arc<str>,
    pub holder: Arc<str>,
    pub ttl: Duration,
}

/// Stores `value` under `name`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct SetMark {
    pub name: Arc<str>,
    pub value: String,
}

/// The value stored under `name`, if any.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<String>, BrokerError>")]
pub struct GetMark {
    pub name: Arc<str>,
}

/// A handle on a broker's leases and marks.
#[derive(Clone)]
pub struct Leadership {
    pub lead: Recipient<Lead>,
    pub set: Recipient<SetMark>,
    pub get: Recipient<GetMark>,
}

impl Leadership {
    pub fn of<A>(addr: &Addr<A>) -> Leadership
    where
        A: Actor<Context = Context<A>> + Handler<Lead> + Handler<SetMark> + Handler<GetMark>,
    {
        Leadership {
            lead: addr.clone().recipient(),
            set: addr.clone().recipient(),
            get: addr.clone().recipient(),
        }
    }
}
