//! Rohrpost: a front-facing real-time gateway.
//!
//! Browsers keep SockJS (websocket and HTTP fallback) sessions with Rohrpost's worker processes;
//! backends talk to Rohrpost through Redis pub/sub or plain HTTP and never hold a long-lived
//! connection themselves.
//!
//! The crate is laid out by concern:
//! - [`config`]: the typed, validated configuration (file, environment, defaults);
//! - [`auth`]: connect-time authentication (tokens in the hello, the connect hook);
//! - [`sockjs`]: a complete SockJS 0.3.3 server — one session actor per SockJS session whatever
//!   the transport, with the application hung on it as a [`sockjs::SessionHandler`];
//! - [`worker`]: one worker process serving the SockJS endpoint;
//! - [`echo`]: the SockJS conformance server (`rohrpost sockjs-test-server`);
//! - [`tls`]: rustls setup and development certificates.

pub mod auth;
pub mod bench;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod control;
pub mod demo_backend;
pub mod echo;
pub mod event_hook;
pub mod fuzzing;
pub mod http_backend;
pub mod leases;
pub mod legacy;
pub mod main_port;
pub mod metrics;
pub mod open_files;
pub mod pending;
pub mod protocol;
pub mod rate_limit;
pub mod recovery;
pub mod request_body;
pub mod resume;
pub mod router;
pub mod session;
pub mod sockjs;
pub mod supervisor;
pub mod tls;
pub mod topics;
pub mod worker;
