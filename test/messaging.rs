//! The Rohrpost messaging core, driven through the real `rohrpost worker` binary over real
//! sockets, against both brokers and real HTTP backends.
//!
//! Clients speak to the worker's raw websocket `/rohrpost/websocket`, where one websocket text
//! message is one SockJS message holding one JSON envelope `{"topic", "data"}`. Backends speak
//! to the worker through the broker (the test publishes and subscribes itself) or through
//! `[[http_topics]]` rules pointing at an HTTP server the test starts.
//!
//! # Both brokers
//! Every test is an `async fn(BrokerKind)` run once per broker by [`for_both_brokers!`], as
//! `<module>::redis::<behaviour>` and `<module>::local::<behaviour>` (so `cargo test --test
//! messaging local::` runs the embedded broker's half):
//!
//! - `redis`: workers with `[broker] kind = "redis"` on the shared Redis on 127.0.0.1:6379 (the
//!   restart tests run a private `redis-server` of their own);
//! - `local`: workers with `[broker] kind = "local"` on an embedded broker that the test hosts
//!   in its own process, on a socket in a temporary directory of its own, and restarts by
//!   dropping the server and binding it again.
//!
//! The test acts as the backend with a client of the same broker (see [`broker`]). No test is
//! for one broker only: even the restart tests have their meaning for both (the broker goes
//! away and comes back empty; sessions stay, client publishes fail visibly meanwhile,
//! subscriptions and session records come back).
//!
//! # Isolation and timing
//! Every test starts its own worker on a free port with a config file in a temporary directory
//! (see [`worker`]). Tests run in parallel, and the Redis ones share one Redis, where a pattern
//! like `anonym.*` would catch what other tests publish; so each worker config has a random
//! namespace, the spec's patterns become `anonym.<namespace>.*` and so on, and topics get a
//! random suffix (see [`worker::WorkerConfig`]). Every wait is bounded: a worker that stops
//! answering fails the test instead of hanging it.
//!
//! Subscriptions are made asynchronously after the handshake, so a test never assumes that a
//! message published right after `rohrpost.welcome` arrives: it first waits until the session
//! receives on the channel ([`broker::settle`]) and only then checks the behaviour. "Nothing
//! else arrived" is checked with a fence: a marker published after the message under test on a
//! channel the session receives, which must be the very next thing the client sees.
//!
//! Support: [`worker`] (the process and its config), [`client`] (a Rohrpost websocket client),
//! [`broker`] (the broker of a test, publishing, subscribing, settling), [`backend`] (a scripted
//! HTTP backend).

// Only a few of the shared helpers are used here.
#[allow(unused_imports)]
mod common;

/// Defines, for each named `async fn(BrokerKind)` of the module it is invoked in, one test per
/// broker: `redis::<name>` and `local::<name>`.
macro_rules! for_both_brokers {
    ($($test:ident),+ $(,)?) => {
        mod redis {
            $(
                #[actix_rt::test]
                async fn $test() {
                    super::$test(crate::broker::BrokerKind::Redis).await;
                }
            )+
        }

        mod local {
            $(
                #[actix_rt::test]
                async fn $test() {
                    super::$test(crate::broker::BrokerKind::Local).await;
                }
            )+
        }
    };
}

#[path = "messaging/backend.rs"]
mod backend;
#[path = "messaging/broker.rs"]
mod broker;
#[path = "messaging/client.rs"]
mod client;
#[path = "messaging/worker.rs"]
mod worker;

#[path = "messaging/auth_hook.rs"]
mod auth_hook;
#[path = "messaging/auth_token.rs"]
mod auth_token;
#[path = "messaging/backend_failures.rs"]
mod backend_failures;
#[path = "messaging/broadcast.rs"]
mod broadcast;
#[path = "messaging/broker_restart.rs"]
mod broker_restart;
#[path = "messaging/client_errors.rs"]
mod client_errors;
#[path = "messaging/handshake.rs"]
mod handshake;
#[path = "messaging/http_topics.rs"]
mod http_topics;
#[path = "messaging/limits.rs"]
mod limits;
#[path = "messaging/pubsub.rs"]
mod pubsub;
#[path = "messaging/resume.rs"]
mod resume;
#[path = "messaging/whitelist.rs"]
mod whitelist;
