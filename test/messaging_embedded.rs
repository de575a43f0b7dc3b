//! The messaging suite of `test/messaging.rs` again, with the embedded broker instead of Redis:
//! every worker is configured with `broker.kind = "local"` and reaches one embedded broker that
//! this test process hosts on a thread of its own (as the supervisor hosts it for its workers);
//! the tests act as the backend through a broker client of the crate on the same socket.
//!
//! Every test module runs unchanged except `redis_restart`, which stops and restarts a Redis
//! server and has no meaning here (the embedded broker's own reconnects are tested beside it,
//! in `src/broker/local`).

// Only a few of the shared helpers are used here.
#[allow(unused_imports)]
mod common;

/// The embedded broker is the broker of this test binary.
const EMBEDDED: bool = true;

#[path = "messaging/backend.rs"]
mod backend;
#[path = "messaging/broker.rs"]
#[allow(dead_code)] // the private Redis server is for the Redis-only restart tests
mod broker;
#[path = "messaging/client.rs"]
mod client;
#[path = "messaging/worker.rs"]
mod worker;

#[path = "messaging/backend_failures.rs"]
mod backend_failures;
#[path = "messaging/broadcast.rs"]
mod broadcast;
#[path = "messaging/client_errors.rs"]
mod client_errors;
#[path = "messaging/handshake.rs"]
mod handshake;
#[path = "messaging/http_topics.rs"]
mod http_topics;
#[path = "messaging/pubsub.rs"]
mod pubsub;
#[path = "messaging/resume.rs"]
mod resume;
#[path = "messaging/whitelist.rs"]
mod whitelist;
