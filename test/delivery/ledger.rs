//! The books of client messages with ids: what the backend received (by `messageId`), checked
//! against what each client was told.
//!
//! A [`Ledger`] is the backend's side: how many copies of each `messageId` arrived (a client
//! that retries after `backend_uncertain` sends the same id again; the backend drops the copy,
//! so each id counts once after dedupe), and how many client messages came without one.
//! [`IdBooks::check`] holds each tracker's [`Outbox`](crate::outbox::Outbox) against it:
//!
//! - every message is acked or answered with an error — never neither;
//! - an acked message is at the backend;
//! - a `backend_unavailable` message is not (the error promises it was not and will not be sent);
//! - no other error code (nothing in these scenarios gives a reason for one);
//! - the backend has nothing no client sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::Value;

use crate::outbox::{Outbox, Outcome, UNAVAILABLE};
use crate::tracker::Tracker;

/// Ids listed per kind of failure and client.
const LISTED: usize = 10;

/// What the backend received.
#[derive(Debug, Default)]
pub struct Ledger {
    copies: HashMap<String, u32>,
    pub without_id: u32,
}

impl Ledger {
    /// Records one client message as the backend got it (`messageId` beside `data`); whether it
    /// is the first copy of its id.
    pub fn record(&mut self, payload: &Value) -> bool {
        let Some(id) = payload["messageId"].as_str() else {
            self.without_id += 1;
            return false;
        };
        let copies = self.copies.entry(id.to_owned()).or_default();
        *copies += 1;
        *copies == 1
    }

    pub fn has(&self, id: &str) -> bool {
        self.copies.contains_key(id)
    }

    /// The numbers of client `client`'s messages at the backend, ascending.
    pub fn numbers_of(&self, client: usize) -> Vec<u64> {
        let mut numbers: Vec<u64> = self
            .copies
            .keys()
            .filter_map(|id| Outbox::parse_id(id))
            .filter(|&(c, _)| c == client)
            .map(|(_, n)| n)
            .collect();
        numbers.sort_unstable();
        numbers
    }

    /// Distinct ids at the backend.
    pub fn distinct(&self) -> usize {
        self.copies.len()
    }

    /// Copies beyond the first, over every id.
    pub fn extra_copies(&self) -> u32 {
        self.copies.values().map(|c| c - 1).sum()
    }
}

/// One client's account of its messages.
#[derive(Debug, Default)]
pub struct ClientIds {
    pub client: usize,
    pub sent: usize,
    pub acked: usize,
    pub errors: BTreeMap<String, usize>,
    /// Neither acked nor errored: the id, whether the backend has it, and the answers it got
    /// (`backend_uncertain` ones, which it was sent again after).
    pub neither: Vec<(String, bool, Vec<String>)>,
    pub acked_not_at_backend: Vec<String>,
    /// `backend_unavailable`, yet the backend has it.
    pub untrue_unavailable: Vec<String>,
    /// Error codes no scenario here gives a reason for: id and code.
    pub unexpected_errors: Vec<(String, String)>,
    /// Messages sent more than once (after `backend_uncertain`).
    pub retried: usize,
}

impl ClientIds {
    fn ok(&self) -> bool {
        self.neither.is_empty()
            && self.acked_not_at_backend.is_empty()
            && self.untrue_unavailable.is_empty()
            && self.unexpected_errors.is_empty()
    }

    fn describe(&self) -> String {
        let mut text = format!(
            "client {}: {} sent, {} acked, errors {:?}, {} retried",
            self.client, self.sent, self.acked, self.errors, self.retried
        );
        let listed = |items: Vec<String>| {
            let more = items.len().saturating_sub(LISTED);
            let mut shown: Vec<String> = items.into_iter().take(LISTED).collect();
            if more > 0 {
                shown.push(format!("… and {more} more"));
            }
            shown.join(" ")
        };
        if !self.neither.is_empty() {
            let items = self
                .neither
                .iter()
                .map(|(id, at, answers)| {
                    let at = if *at { "at backend" } else { "not at backend" };
                    format!("{id} ({at}, answers {answers:?})")
                })
                .collect();
            let _ = write!(
                text,
                "\n  neither acked nor errored ({}): {}",
                self.neither.len(),
                listed(items)
            );
        }
        for (what, ids) in [
            ("acked but not at the backend", &self.acked_not_at_backend),
            (
                "backend_unavailable but at the backend",
                &self.untrue_unavailable,
            ),
        ] {
            if !ids.is_empty() {
                let _ = write!(text, "\n  {what} ({}): {}", ids.len(), listed(ids.clone()));
            }
        }
        if !self.unexpected_errors.is_empty() {
            let items = self
                .unexpected_errors
                .iter()
                .map(|(id, code)| format!("{id}:{code}"))
                .collect();
            let _ = write!(
                text,
                "\n  unexpected errors ({}): {}",
                self.unexpected_errors.len(),
                listed(items)
            );
        }
        text
    }
}

/// The client-message books of one scenario.
pub struct IdBooks {
    pub scenario: String,
    pub clients: Vec<ClientIds>,
    /// Ids at the backend that no client sent.
    pub phantoms: usize,
    pub distinct_at_backend: usize,
    pub extra_copies: u32,
    pub without_id: u32,
}

impl IdBooks {
    /// Holds each tracker's outbox against what the backend received.
    pub fn check(scenario: &str, trackers: &[Tracker], ledger: &Ledger) -> IdBooks {
        let mut sent_ids = HashSet::new();
        let clients = trackers
            .iter()
            .map(|t| {
                let mut ids = ClientIds {
                    client: t.index,
                    ..ClientIds::default()
                };
                for m in t.outbox.messages().iter().filter(|m| m.sends > 0) {
                    sent_ids.insert(m.id.as_str());
                    ids.sent += 1;
                    if m.sends > 1 {
                        ids.retried += 1;
                    }
                    let at_backend = ledger.has(&m.id);
                    match &m.outcome {
                        Outcome::Pending => {
                            ids.neither
                                .push((m.id.clone(), at_backend, m.answers.clone()))
                        }
                        Outcome::Acked => {
                            ids.acked += 1;
                            if !at_backend {
                                ids.acked_not_at_backend.push(m.id.clone());
                            }
                        }
                        Outcome::Errored(code) => {
                            *ids.errors.entry(code.clone()).or_default() += 1;
                            if code != UNAVAILABLE {
                                ids.unexpected_errors.push((m.id.clone(), code.clone()));
                            } else if at_backend {
                                ids.untrue_unavailable.push(m.id.clone());
                            }
                        }
                    }
                }
                ids
            })
            .collect();
        IdBooks {
            scenario: scenario.to_owned(),
            clients,
            phantoms: ledger
                .copies
                .keys()
                .filter(|id| !sent_ids.contains(id.as_str()))
                .count(),
            distinct_at_backend: ledger.distinct(),
            extra_copies: ledger.extra_copies(),
            without_id: ledger.without_id,
        }
    }

    pub fn figures(&self) -> String {
        let sum = |f: fn(&ClientIds) -> usize| self.clients.iter().map(f).sum::<usize>();
        let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &self.clients {
            for (code, n) in &c.errors {
                *errors.entry(code).or_default() += n;
            }
        }
        format!(
            "{}: {} client messages sent, {} acked, errors {errors:?}, {} neither, {} retried \
             after backend_uncertain; at the backend {} distinct ids ({} extra copies, {} not \
             sent by any client, {} without an id); {} clients failing",
            self.scenario,
            sum(|c| c.sent),
            sum(|c| c.acked),
            sum(|c| c.neither.len()),
            sum(|c| c.retried),
            self.distinct_at_backend,
            self.extra_copies,
            self.phantoms,
            self.without_id,
            self.clients.iter().filter(|c| !c.ok()).count(),
        )
    }

    /// Prints the figures; fails the test with every failing client otherwise.
    pub fn assert_ok(&self) {
        println!("{}", self.figures());
        let failing: Vec<String> = self
            .clients
            .iter()
            .filter(|c| !c.ok())
            .map(ClientIds::describe)
            .collect();
        assert!(
            failing.is_empty() && self.phantoms == 0 && self.without_id == 0,
            "{}\n{}",
            self.figures(),
            failing.join("\n")
        );
    }
}
