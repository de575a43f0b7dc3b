//! The embedded broker: publish/subscribe, session records and the shared secret for the
//! workers of one machine, hosted by the supervisor and reached over a Unix domain socket.
//!
//! It is what `broker.kind = "local"` means: no Redis to run, the same semantics as the Redis
//! broker. A worker's [`LocalBroker`] actor speaks the [`Broker`](super::Broker) messages
//! exactly as [`RedisBroker`](super::redis::RedisBroker) does; the supervisor's
//! [`LocalBrokerServer`] plays the part of Redis.
//!
//! ```text
//!  supervisor                                    worker (one per core)
//!  ┌──────────────────────────────┐              ┌──────────────────────────┐
//!  │ LocalBrokerServer (actor)    │  Unix socket │ LocalBroker (actor)      │
//!  │  clients, subscriptions,     │◄────────────►│  wanted / applied subs,  │
//!  │  sessions, secret            │  frames      │  pending requests        │
//!  │ accept task, 1 task/client   │              │ frame stream + writer    │
//!  └──────────────────────────────┘              └────────────┬─────────────┘
//!    ▲ LocalBrokerServerHandle::publish                       │ BrokerMessage
//!    │ (the supervisor's HTTP API)                            ▼
//!                                                         topic router
//! ```
//!
//! - [`wire`]: frames and the request/response types both halves share;
//! - [`server`]: the actor owning the state, binding and shutting down;
//! - `connection`: one client connection on the server side, with its bounded outbound queue;
//! - `subscriptions`, `sessions`: the server's subscription index and session store;
//! - [`client`]: the worker's actor, its reconnects and timeouts.
//!
//! Matching is Rohrpost's own ([`Pattern::matches`](crate::topics::Pattern::matches)), so
//! there is no glob escaping to get wrong: `a?b` matches only `a?b`.

pub mod client;
mod connection;
mod directory;
mod history;
pub mod server;
mod sessions;
mod subscriptions;
pub mod wire;

pub use client::LocalBroker;
pub use server::{LocalBrokerServer, LocalBrokerServerHandle, ServerLimits};

#[cfg(test)]
mod tests;
