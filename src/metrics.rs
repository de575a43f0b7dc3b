//! Counters of what a worker did and dropped: every drop is counted (and logged at debug).
//!
//! One set of process-wide counters; cheap relaxed atomics, read by the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sockjs::admission::Refusal;

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A client message refused with an error (the error code says why).
    ClientError,
    /// A backend payload that is not a JSON object.
    BackendNotObject,
    /// A message published by a client, seen again on the broker.
    FromClient,
    /// A backend message whose topic the session may not receive.
    NotWhitelisted,
    /// A message for a session that is gone.
    SessionGone,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::ClientError,
        DropReason::BackendNotObject,
        DropReason::FromClient,
        DropReason::NotWhitelisted,
        DropReason::SessionGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::ClientError => "client_error",
            DropReason::BackendNotObject => "backend_not_object",
            DropReason::FromClient => "from_client",
            DropReason::NotWhitelisted => "not_whitelisted",
            DropReason::SessionGone => "session_gone",
        }
    }
}

/// Why the server closed a session on its own (not a restart, not the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForcedClose {
    /// The client kept sending into an empty token bucket (close 1008).
    RateLimit,
    /// The client did not read and its outbound queue overflowed (close 1013).
    SlowConsumer,
}

impl ForcedClose {
    pub const ALL: [ForcedClose; 2] = [ForcedClose::RateLimit, ForcedClose::SlowConsumer];

    pub fn as_str(self) -> &'static str {
        match self {
            ForcedClose::RateLimit => "rate_limit",
            ForcedClose::SlowConsumer => "slow_consumer",
        }
    }
}

/// Where a client message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Broker,
    Http,
}

/// Upper bounds (seconds) of the HTTP backend latency histogram buckets; `+Inf` follows.
pub const HTTP_LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

struct Counters {
    in_broker: AtomicU64,
    in_http: AtomicU64,
    out_broker: AtomicU64,
    out_http: AtomicU64,
    delivered: AtomicU64,
    backend_errors: AtomicU64,
    drops: [AtomicU64; 5],
    forced_closes: [AtomicU64; 2],
    refused_sessions: [AtomicU64; 3],
    /// Cumulative-free bucket counts (`+Inf` last), the sum in microseconds, and the count.
    http_latency: [AtomicU64; 13],
    http_latency_sum_us: AtomicU64,
    http_latency_count: AtomicU64,
}

static COUNTERS: Counters = Counters {
    in_broker: AtomicU64::new(0),
    in_http: AtomicU64::new(0),
    out_broker: AtomicU64::new(0),
    out_http: AtomicU64::new(0),
    delivered: AtomicU64::new(0),
    backend_errors: AtomicU64::new(0),
    drops: [const { AtomicU64::new(0) }; 5],
    forced_closes: [const { AtomicU64::new(0) }; 2],
    refused_sessions: [const { AtomicU64::new(0) }; 3],
    http_latency: [const { AtomicU64::new(0) }; 13],
    http_latency_sum_us: AtomicU64::new(0),
    http_latency_count: AtomicU64::new(0),
};

/// An HTTP backend request took `elapsed` (answered or failed).
pub fn http_latency(elapsed: std::time::Duration) {
    let secs = elapsed.as_secs_f64();
    let bucket = HTTP_LATENCY_BUCKETS
        .iter()
        .position(|&le| secs <= le)
        .unwrap_or(HTTP_LATENCY_BUCKETS.len());
    COUNTERS.http_latency[bucket].fetch_add(1, Ordering::Relaxed);
    COUNTERS
        .http_latency_sum_us
        .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    COUNTERS.http_latency_count.fetch_add(1, Ordering::Relaxed);
}

/// A client message passed to a backend.
pub fn client_message_out(path: Path) {
    match path {
        Path::Broker => &COUNTERS.out_broker,
        Path::Http => &COUNTERS.out_http,
    }
    .fetch_add(1, Ordering::Relaxed);
}

/// A backend message received (broker message or HTTP answer).
pub fn backend_message_in(path: Path) {
    match path {
        Path::Broker => &COUNTERS.in_broker,
        Path::Http => &COUNTERS.in_http,
    }
    .fetch_add(1, Ordering::Relaxed);
}

/// A message handed to a client session.
pub fn delivered() {
    COUNTERS.delivered.fetch_add(1, Ordering::Relaxed);
}

/// A backend request that failed.
pub fn backend_error() {
    COUNTERS.backend_errors.fetch_add(1, Ordering::Relaxed);
}

/// A message dropped, with the reason.
pub fn dropped(reason: DropReason) {
    COUNTERS.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
}

/// A session closed by the server for `why`.
pub fn forced_close(why: ForcedClose) {
    COUNTERS.forced_closes[why as usize].fetch_add(1, Ordering::Relaxed);
}

/// A new session refused for `why`.
pub fn session_refused(why: Refusal) {
    COUNTERS.refused_sessions[why.index()].fetch_add(1, Ordering::Relaxed);
}

/// A copy of every counter (workers report it to the supervisor, which sums them up).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub messages_in_broker: u64,
    pub messages_in_http: u64,
    pub messages_out_broker: u64,
    pub messages_out_http: u64,
    pub delivered: u64,
    pub backend_errors: u64,
    /// Drops by reason.
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Sessions closed by the server, by reason.
    #[serde(default)]
    pub forced_closes: std::collections::BTreeMap<String, u64>,
    /// New sessions refused, by reason.
    #[serde(default)]
    pub refused_sessions: std::collections::BTreeMap<String, u64>,
    /// HTTP backend latency: per-bucket counts (not cumulative; `+Inf` last), sum in
    /// microseconds, count.
    #[serde(default)]
    pub http_latency_buckets: Vec<u64>,
    #[serde(default)]
    pub http_latency_sum_us: u64,
    #[serde(default)]
    pub http_latency_count: u64,
}

pub fn snapshot() -> Snapshot {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Snapshot {
        messages_in_broker: get(&COUNTERS.in_broker),
        messages_in_http: get(&COUNTERS.in_http),
        messages_out_broker: get(&COUNTERS.out_broker),
        messages_out_http: get(&COUNTERS.out_http),
        delivered: get(&COUNTERS.delivered),
        backend_errors: get(&COUNTERS.backend_errors),
        drops: DropReason::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), get(&COUNTERS.drops[*r as usize])))
            .collect(),
        forced_closes: ForcedClose::ALL
            .iter()
            .map(|r| {
                let n = get(&COUNTERS.forced_closes[*r as usize]);
                (r.as_str().to_string(), n)
            })
            .collect(),
        refused_sessions: Refusal::ALL
            .iter()
            .map(|r| {
                let n = get(&COUNTERS.refused_sessions[r.index()]);
                (r.as_str().to_string(), n)
            })
            .collect(),
        http_latency_buckets: COUNTERS.http_latency.iter().map(get).collect(),
        http_latency_sum_us: get(&COUNTERS.http_latency_sum_us),
        http_latency_count: get(&COUNTERS.http_latency_count),
    }
}
