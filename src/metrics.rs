//! Counters of what a worker did and dropped: every drop is counted (and logged at debug).
//!
//! One set of process-wide counters; cheap relaxed atomics, read by the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// Where a client message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Broker,
    Http,
}

struct Counters {
    in_broker: AtomicU64,
    in_http: AtomicU64,
    out_broker: AtomicU64,
    out_http: AtomicU64,
    delivered: AtomicU64,
    backend_errors: AtomicU64,
    drops: [AtomicU64; 5],
}

static COUNTERS: Counters = Counters {
    in_broker: AtomicU64::new(0),
    in_http: AtomicU64::new(0),
    out_broker: AtomicU64::new(0),
    out_http: AtomicU64::new(0),
    delivered: AtomicU64::new(0),
    backend_errors: AtomicU64::new(0),
    drops: [const { AtomicU64::new(0) }; 5],
};

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
    }
}
