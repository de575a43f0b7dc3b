//! The counting tests of issue 11, "Delivery you can count on": the real supervisor and its
//! workers, both brokers, and clients that number every message and account for each one per
//! logical client — across every reconnect and resume — at every seam where a message could
//! vanish: right after the welcome, a staged restart, a killed worker, Redis restarted with and
//! without its data, the network to Redis cut, HTTP answers in flight during a drain, client
//! messages sent across a drain, two connections on one session, and quiet sessions while the log
//! runs far past its history.
//!
//! Pass means, for each client, every message it is owed arrived exactly once and in order, or
//! the client saw a `recovered: false` right where the gap is (where the scenario allows a gap at
//! all); for client messages with ids: each acked or answered with an error, never neither, and
//! each at the backend once after dropping copies with the same `messageId`. A test waits for
//! what it counts (the last number published, every answer the backend gave), never for a time;
//! its deadlines only bound a failing run, and the books then say what is missing, for which
//! client, and what that client lived through around the gap.
//!
//! The system under test ([`setup`]): the supervisor of the supervisor suite ([`process`], on a
//! [`ports`] block below the ephemeral range), on its embedded broker or a private
//! `redis-server` ([`redis_server`]) of the test's own, maybe behind a [`proxy`] that cuts the
//! network. The clients are [`tracker`]s (one logical
//! client each: resume token, last position, resume with `since` after every close), opened and
//! followed as a [`crowd`]; they may send numbered messages with ids of their own ([`outbox`]).
//! The backend publishes through the server API ([`publisher`], [`main_port`]), answers on an
//! HTTP topic ([`http_backend`]) or listens on Redis ([`backend`]). [`books`] counts backend
//! messages per client, [`ledger`] client messages per id; [`fan_out`] is the shape shared by
//! the scenarios that fan out through a fault.
//!
//! The scenarios: [`first_messages`], [`staged_restart`], [`worker_kill`], [`redis_restart`],
//! [`network_cut`], [`http_answers`], [`client_ids`], [`takeover`]. Run with `--nocapture` to see each one's
//! figures. `ROHRPOST_TEST_LOG=debug` raises the log level of the processes under test; a failed
//! test prints the end of the supervisor's log and keeps all of it in `$TMPDIR`.

// The suites share these modules; each uses a part of them.
#[path = "supervisor/backend.rs"]
#[allow(dead_code)]
mod backend;
#[path = "supervisor/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "common/mod.rs"]
#[allow(unused_imports)]
mod common;
#[path = "messaging/backend.rs"]
#[allow(dead_code)]
mod http_backend;
#[path = "supervisor/main_port.rs"]
#[allow(dead_code)]
mod main_port;
#[path = "supervisor/ports.rs"]
#[allow(dead_code)]
mod ports;
#[path = "supervisor/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "faults/proxy.rs"]
#[allow(dead_code)]
mod proxy;
#[path = "messaging/broker/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

#[path = "delivery/books.rs"]
mod books;
#[path = "delivery/crowd.rs"]
mod crowd;
#[path = "delivery/fan_out.rs"]
mod fan_out;
#[path = "delivery/ledger.rs"]
mod ledger;
#[path = "delivery/outbox.rs"]
mod outbox;
#[path = "delivery/publisher.rs"]
mod publisher;
#[path = "delivery/setup.rs"]
mod setup;
#[path = "delivery/tracker.rs"]
mod tracker;

#[path = "delivery/client_ids.rs"]
mod client_ids;
#[path = "delivery/first_messages.rs"]
mod first_messages;
#[path = "delivery/http_answers.rs"]
mod http_answers;
#[path = "delivery/network_cut.rs"]
mod network_cut;
#[path = "delivery/redis_restart.rs"]
mod redis_restart;
#[path = "delivery/staged_restart.rs"]
mod staged_restart;
#[path = "delivery/takeover.rs"]
mod takeover;
#[path = "delivery/worker_kill.rs"]
mod worker_kill;
