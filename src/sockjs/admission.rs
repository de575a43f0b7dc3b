//! Session admission: how many sessions one endpoint, and one client address, may hold at once.
//!
//! Every new session — a websocket connection or the first receiving request of an HTTP
//! session — asks for a [`Pass`] first. The pass is held as long as the session lives (by the
//! websocket transport, or by the registry beside the HTTP session) and gives its place back when
//! dropped. A refused client gets a SockJS close frame `c[1013,"..."]` in its transport's framing:
//! "Try Again Later", which clients take as a reason to back off, not to reconnect at once.
//!
//! Once the endpoint drains (a worker about to restart closes every session with
//! `1012 Service Restart`), it admits nobody: a client that was handed this worker just before
//! the drain and arrives after it gets the drain's close frame too (`c[1012,"Service Restart"]`,
//! or Rohrpost 0.x's code 100 in legacy mode), and goes elsewhere, instead of opening a session
//! that the drain has already passed by.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::metrics;

/// Close code of a session refused for a cap ("Try Again Later").
pub const REFUSED_CODE: u16 = 1013;

/// Why a new session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `limits.max_sessions_per_worker` sessions are open.
    #[error("Too many sessions on this server; try again later")]
    WorkerFull,
    /// `limits.max_sessions_per_ip` sessions are open from the client's address.
    #[error("Too many sessions from your address; close some and try again later")]
    AddressFull,
    /// The endpoint is draining before a restart; the close code and reason its clients get.
    #[error("{}", .0.1)]
    Draining((u16, &'static str)),
}

impl Refusal {
    /// One of each kind (the draining one with any close), for the metrics' labels.
    pub const ALL: [Refusal; 3] = [
        Refusal::WorkerFull,
        Refusal::AddressFull,
        Refusal::Draining((1012, "Service Restart")),
    ];

    /// Its place in [`Refusal::ALL`] (and among the metrics' counters).
    pub fn index(self) -> usize {
        match self {
            Refusal::WorkerFull => 0,
            Refusal::AddressFull => 1,
            Refusal::Draining(_) => 2,
        }
    }

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::WorkerFull => "worker_full",
            Refusal::AddressFull => "address_full",
            Refusal::Draining(_) => "draining",
        }
    }

    /// The close code the client sees.
    pub fn code(self) -> u16 {
        match self {
            Refusal::Draining((code, _)) => code,
            Refusal::WorkerFull | Refusal::AddressFull => REFUSED_CODE,
        }
    }

    /// The close reason the client sees.
    pub fn reason(self) -> String {
        self.to_string()
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The admission counters of one endpoint.
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
    /// Once draining: the close frame refused clients get.
    draining: OnceLock<(u16, &'static str)>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_address,
            counts: Mutex::new(Counts::default()),
            draining: OnceLock::new(),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counters stay consistent even if a holder panicked: every update is one statement.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more session from `address` (`None`: no address known, only the total
    /// counts), or why not. Refusals are counted in the metrics.
    pub fn admit(self: &Arc<Self>, address: Option<IpAddr>) -> Result<Pass, Refusal> {
        let mut counts = self.counts();
        let refusal = if let Some(close) = self.draining.get() {
            Some(Refusal::Draining(*close))
        } else if counts.total >= self.max_total {
            Some(Refusal::WorkerFull)
        } else if address.is_some_and(|a| {
            counts.per_address.get(&a).copied().unwrap_or(0) >= self.max_per_address
        }) {
            Some(Refusal::AddressFull)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            drop(counts);
            metrics::session_refused(refusal);
            return Err(refusal);
        }
        counts.total += 1;
        if let Some(a) = address {
            *counts.per_address.entry(a).or_insert(0) += 1;
        }
        Ok(Pass {
            admission: self.clone(),
            address,
        })
    }

    /// From now on, admits nobody: [`Refusal::Draining`] with `close` (the first drain's).
    pub fn drain(&self, close: (u16, &'static str)) {
        let _ = self.draining.set(close);
    }

    fn release(&self, address: Option<IpAddr>) {
        let mut counts = self.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(a) = address {
            if let Some(n) = counts.per_address.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    counts.per_address.remove(&a);
                }
            }
        }
    }
}

/// One admitted session's place; given back when dropped.
pub struct Pass {
    admission: Arc<Admission>,
    address: Option<IpAddr>,
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass")
            .field("address", &self.address)
            .finish()
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.admission.release(self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn the_total_is_capped_and_places_come_back() {
        let admission = Admission::new(2, 10);
        let a = admission.admit(ip(1)).unwrap();
        let _b = admission.admit(ip(2)).unwrap();
        assert_eq!(admission.admit(ip(3)).unwrap_err(), Refusal::WorkerFull);
        assert_eq!(admission.counts().total, 2);
        drop(a);
        assert_eq!(admission.counts().total, 1);
        assert!(admission.admit(ip(3)).is_ok());
    }

    #[test]
    fn each_address_is_capped_on_its_own() {
        let admission = Admission::new(100, 2);
        let first = admission.admit(ip(1)).unwrap();
        let _second = admission.admit(ip(1)).unwrap();
        assert_eq!(admission.admit(ip(1)).unwrap_err(), Refusal::AddressFull);
        // Other addresses, and clients with no known address, are not affected.
        assert!(admission.admit(ip(2)).is_ok());
        assert!(admission.admit(None).is_ok());
        drop(first);
        assert!(admission.admit(ip(1)).is_ok());
    }

    #[test]
    fn released_addresses_are_forgotten() {
        let admission = Admission::new(10, 10);
        let passes: Vec<Pass> = (1..=5).map(|i| admission.admit(ip(i)).unwrap()).collect();
        assert_eq!(admission.counts().per_address.len(), 5);
        drop(passes);
        assert_eq!(admission.counts().total, 0);
        assert!(admission.counts().per_address.is_empty());
    }

    #[test]
    fn a_draining_endpoint_admits_nobody() {
        let admission = Admission::new(10, 10);
        let held = admission.admit(ip(1)).unwrap();
        admission.drain((1012, "Service Restart"));
        let refusal = admission.admit(ip(2)).unwrap_err();
        assert_eq!(refusal, Refusal::Draining((1012, "Service Restart")));
        assert_eq!(
            (refusal.code(), refusal.reason().as_str()),
            (1012, "Service Restart")
        );
        drop(held);
        // A second drain does not change what the first one tells clients.
        admission.drain((100, "another"));
        assert_eq!(admission.admit(None).unwrap_err().code(), 1012);
    }

    #[test]
    fn every_kind_has_its_place_in_all() {
        for (i, refusal) in Refusal::ALL.iter().enumerate() {
            assert_eq!(refusal.index(), i);
        }
        assert_eq!(Refusal::Draining((100, "x")).index(), 2);
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert!(Refusal::WorkerFull.reason().contains("try again later"));
        assert!(Refusal::AddressFull.reason().contains("your address"));
    }
}
