//! The tests of issue 13's session events and presence: the real supervisor and its workers,
//! both brokers, and a hook of the test's own ([`sink`]) that every session event is POSTed
//! to (`hooks.events_url`).
//!
//! [`lifecycle`] counts, per session, the events of every way a session ends or moves — a
//! goodbye, a close without one, a vanished connection, a kick, a takeover, a staged restart,
//! a killed worker — exactly one `session.opened`, exactly one `session.closed` with its reason;
//! [`crowd`] counts presence with 1,000 sessions over the workers of two supervisors sharing
//! Redis (and over one supervisor on the embedded broker), and that the hook, refusing its
//! first POSTs, still gets every event once, from one of the two supervisors; [`failover`] kills
//! the supervisor that POSTs the events while sessions end, and the other one delivers them.
//!
//! The processes are those of the supervisor suite ([`process`], on [`ports`] blocks), with a
//! private `redis-server` ([`redis_server`]) per test on Redis: the session directory is
//! cluster-wide, so a test sharing Redis with others would count their sessions too.

#[path = "supervisor/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "common/mod.rs"]
#[allow(unused_imports)]
mod common;
#[path = "supervisor/main_port.rs"]
#[allow(dead_code)]
mod main_port;
#[path = "supervisor/ports.rs"]
#[allow(dead_code)]
mod ports;
#[path = "supervisor/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "messaging/broker/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

#[path = "presence/books.rs"]
mod books;
#[path = "presence/crowd.rs"]
mod crowd;
#[path = "presence/failover.rs"]
mod failover;
#[path = "presence/lifecycle.rs"]
mod lifecycle;
#[path = "presence/sink.rs"]
mod sink;
#[path = "presence/system.rs"]
mod system;
