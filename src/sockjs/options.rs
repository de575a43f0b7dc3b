//! Settings of one SockJS endpoint (one prefix).

use std::time::Duration;

use crate::config::Config;

/// What one SockJS endpoint needs to know; shared by its sessions and transports.
#[derive(Debug, Clone)]
pub struct SockjsOptions {
    /// URL prefix, without a trailing slash (e.g. `/rohrpost`).
    pub prefix: String,
    /// Interval between heartbeat frames sent to an attached receiver.
    pub heartbeat: Duration,
    /// How long a session lives without a receiver, and how long a closed session keeps
    /// answering with its close frame.
    pub disconnect_delay: Duration,
    /// Bytes of frames a streaming response carries before it is ended (the client reconnects).
    pub response_limit: usize,
    /// Whether websocket transports are offered (`/info`) and served.
    pub websocket: bool,
    /// Whether `JSESSIONID` cookies are set for sticky load balancers.
    pub cookie_needed: bool,
    /// Script URL the iframe page loads.
    pub client_url: String,
    /// Largest request body or websocket message accepted, in bytes.
    pub max_frame_bytes: usize,
    /// How long a sending request's body may take to arrive (`http.body_timeout`).
    pub body_timeout: Duration,
    /// Messages a session holds for a client that is not receiving before it gives up on it.
    pub outbound_queue: usize,
    /// Origins (`scheme://host[:port]`, lower case) whose pages may use the endpoint; empty:
    /// any. A page's own server (the `Host` it asked) is always allowed.
    pub allowed_origins: Vec<String>,
    /// Sessions the endpoint holds at once; beyond, new ones are refused (close 1013).
    pub max_sessions: usize,
    /// Sessions one client address may hold at once; beyond, refused (close 1013).
    pub max_sessions_per_address: usize,
}

impl SockjsOptions {
    /// The options of a worker's Rohrpost endpoint, from the configuration.
    pub fn from_config(config: &Config) -> Self {
        SockjsOptions {
            prefix: config.sockjs.prefix.clone(),
            heartbeat: config.sockjs.heartbeat,
            disconnect_delay: config.sockjs.disconnect_delay,
            response_limit: config.sockjs.response_limit,
            websocket: config.sockjs.websocket,
            cookie_needed: config.sockjs.cookie_needed,
            client_url: config.sockjs_client_url(),
            max_frame_bytes: config.limits.max_frame_bytes,
            body_timeout: config.http.body_timeout,
            outbound_queue: config.limits.outbound_queue,
            allowed_origins: config.http.allowed_origins.clone(),
            max_sessions: config.limits.max_sessions_per_worker,
            max_sessions_per_address: config.limits.max_sessions_per_ip,
        }
    }
}

impl Default for SockjsOptions {
    fn default() -> Self {
        SockjsOptions {
            prefix: "/rohrpost".into(),
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            websocket: true,
            cookie_needed: false,
            client_url: "/js/sockjs.min.js".into(),
            max_frame_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            outbound_queue: 1024,
            allowed_origins: Vec::new(),
            max_sessions: 20_000,
            max_sessions_per_address: 1_000,
        }
    }
}
