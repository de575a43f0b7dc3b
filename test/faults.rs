//! Fault injection against the real binary: a Redis that goes away, a flaky network between
//! Rohrpost and Redis, HTTP backends that misbehave, a worker killed mid fan-out.
//!
//! Each test runs real processes (`rohrpost worker`, the supervisor, private `redis-server`s on
//! free ports, never the shared Redis on 127.0.0.1:6379), breaks one thing, and states in its
//! doc comment what the client sees and how the test proves nothing was lost silently: every
//! message a client sends either reaches the backend or comes back as an error, and every
//! message a backend publishes reaches every session that should get it (or, for the sessions
//! of a dead worker or a dead Redis, the loss is bounded to the fault and the session itself is
//! not lost). Every loop is bounded and every wait has a deadline.
//!
//! Support: [`process`] (a worker with extra config keys, pids, CPU time), [`proxy`] (a TCP
//! proxy that delays, black-holes and resets), [`traffic`] (clients sending numbered messages,
//! a backend collecting them and publishing numbered news, the books), [`tcp_backend`] (an HTTP
//! backend that misbehaves at the TCP level), [`supervisor`] (the real supervisor with its
//! embedded broker); the messaging suite's broker, client and worker config helpers are shared.
//!
//! The tests: [`redis_outage`] (Redis stopped for 10 s), [`network`] (delay, reset, black hole
//! between a worker and Redis), [`http_backend`] (a backend that hangs, closes or resets; the
//! in-flight bound), [`worker_kill`] (SIGKILL mid fan-out).

#[allow(unused_imports)]
mod common;

#[path = "messaging/broker.rs"]
#[allow(dead_code)]
mod broker;
#[path = "messaging/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "messaging/worker.rs"]
#[allow(dead_code)]
mod worker;

#[path = "supervisor/ports.rs"]
#[allow(dead_code)]
mod ports;

#[path = "faults/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "faults/proxy.rs"]
mod proxy;
#[path = "faults/supervisor.rs"]
mod supervisor;
#[path = "faults/tcp_backend.rs"]
mod tcp_backend;
#[path = "faults/traffic.rs"]
#[allow(dead_code)]
mod traffic;

#[path = "faults/http_backend.rs"]
mod http_backend;
#[path = "faults/network.rs"]
mod network;
#[path = "faults/redis_outage.rs"]
mod redis_outage;
#[path = "faults/worker_kill.rs"]
mod worker_kill;
