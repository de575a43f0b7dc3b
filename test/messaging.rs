//! The Rohrpost messaging core, driven through the real `rohrpost worker` binary over real
//! sockets, against a real Redis and real HTTP backends.
//!
//! Clients speak to the worker's raw websocket `/rohrpost/websocket`, where one websocket text
//! message is one SockJS message holding one JSON envelope `{"topic", "data"}`. Backends speak
//! to the worker through Redis pub/sub (the test publishes and subscribes itself) or through
//! `[[http_topics]]` rules pointing at an HTTP server the test starts.
//!
//! Every test starts its own worker on a free port with a config file in a temporary directory
//! (see [`worker`]). Tests run in parallel against the shared Redis on 127.0.0.1:6379, where a
//! pattern like `anonym.*` would catch what other tests publish; so each worker config has a
//! random namespace, the spec's patterns become `anonym.<namespace>.*` and so on, and topics get
//! a random suffix (see [`worker::WorkerConfig`]). The Redis restart tests run a private
//! `redis-server` of their own. Every wait is bounded: a worker that stops answering fails the
//! test instead of hanging it.
//!
//! Subscriptions are made asynchronously after the handshake, so a test never assumes that a
//! message published right after `rohrpost.welcome` arrives: it first waits until the session
//! receives on the channel ([`broker::settle`]) and only then checks the behaviour. "Nothing
//! else arrived" is checked with a fence: a marker published after the message under test on a
//! channel the session receives, which must be the very next thing the client sees.
//!
//! Support: [`worker`] (the process and its config), [`client`] (a Rohrpost websocket client),
//! [`broker`] (Redis publishing, subscribing, settling, and a private server), [`backend`]
//! (a scripted HTTP backend).

// Only a few of the shared helpers are used here.
#[allow(unused_imports)]
mod common;

/// Redis is the broker of this test binary (see `messaging_embedded` for the embedded one).
const EMBEDDED: bool = false;

#[path = "messaging/backend.rs"]
mod backend;
#[path = "messaging/broker.rs"]
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
#[path = "messaging/redis_restart.rs"]
mod redis_restart;
#[path = "messaging/resume.rs"]
mod resume;
#[path = "messaging/whitelist.rs"]
mod whitelist;
