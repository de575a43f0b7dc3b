//! What a fleet must have lived through a staged restart with: every session resumed with its
//! grants, and every numbered message at the backend.
//!
//! - [`assert_resumed_with_grants`]: each client was told 1012, came back to the same session
//!   with its granted pattern, and got no error.
//! - [`assert_grants_deliver`]: the backend publishes on each session's granted pattern and the
//!   client receives it, so the grant lives in the worker that now holds the session, not only
//!   in the welcome.
//! - [`Delivery::collect`]: what the backend's SUBSCRIBE saw, checked message by message
//!   (`fromClient`, the sender's session id, the granted session data), then counted: every
//!   numbered message of every client must be there; duplicates and messages overtaken by later
//!   ones of the same client are counted, not hidden.
//! - [`GapStats`]: how long clients were away, close to welcome.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::backend::{Backend, Subscriber};
use crate::client::SERVICE_RESTART;
use crate::fleet::{granted_pattern, Outcome};

/// How long the backend may take to see the last messages once the clients stopped.
const DELIVERY_WAIT: Duration = Duration::from_secs(15);
/// Silence after which no more messages are expected.
const QUIET: Duration = Duration::from_secs(3);
/// How long a granted-pattern probe may take to reach its client.
const PROBE_WAIT: Duration = Duration::from_secs(5);
/// How often a probe is published again (the resumed session subscribes asynchronously).
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Each client reconnected at least once, always after a 1012, always to its own session with
/// its granted pattern, and received no error.
pub fn assert_resumed_with_grants(outcomes: &[Outcome], namespace: &str) {
    for out in outcomes {
        let i = out.index;
        let granted = granted_pattern(namespace, i);
        assert!(!out.reconnects.is_empty(), "client {i} was never moved");
        for r in &out.reconnects {
            assert_eq!(
                r.close_code,
                Some(SERVICE_RESTART),
                "client {i}: close code"
            );
            assert!(
                r.welcome.resumed,
                "client {i}: not resumed: {:?}",
                r.welcome
            );
            assert_eq!(
                r.welcome.session, out.first.session,
                "client {i}: session id"
            );
            assert!(
                r.welcome.whitelist.contains(&granted),
                "client {i}: grant {granted} lost: {:?}",
                r.welcome.whitelist
            );
        }
        assert!(out.errors.is_empty(), "client {i}: errors {:?}", out.errors);
    }
}

/// Publishes on each session's granted pattern and waits until every client receives it.
pub async fn assert_grants_deliver(outcomes: &mut [Outcome], namespace: &str) {
    let backend = Backend::connect().await;
    let probes = outcomes.iter_mut().map(|out| {
        let mut backend = backend.clone();
        let topic = granted_pattern(namespace, out.index).replace('*', "probe");
        async move {
            let message = json!({"data": {"probe": out.index}});
            let deadline = Instant::now() + PROBE_WAIT;
            loop {
                backend.publish(&topic, &message).await;
                let got = out.client.wait_for_topic(&topic, PROBE_EVERY).await;
                if got == Some(json!({"probe": out.index})) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "client {}: nothing on its granted topic {topic} within {PROBE_WAIT:?}",
                    out.index
                );
            }
        }
    });
    join_all(probes).await;
}

/// What the backend received of the fleet's numbered messages.
pub struct Delivery {
    /// How often each `(client, seq)` arrived.
    counts: HashMap<(usize, u64), u32>,
    /// Messages that arrived wrong (not from a client, another session id, data not granted).
    wrong: Vec<String>,
    /// Highest sequence number seen so far per client.
    highest: HashMap<usize, u64>,
    /// Messages that arrived after a higher-numbered one of the same client.
    pub reordered: usize,
}

impl Delivery {
    /// Reads the subscriber until every message the clients sent is in, or it stays quiet.
    /// `sessions` holds each client's session id.
    pub async fn collect(
        subscriber: &mut Subscriber,
        outcomes: &[Outcome],
        sessions: &[String],
    ) -> Delivery {
        let expected: usize = outcomes.iter().map(|o| o.sent as usize).sum();
        let mut delivery = Delivery {
            counts: HashMap::with_capacity(expected),
            wrong: Vec::new(),
            highest: HashMap::new(),
            reordered: 0,
        };
        let deadline = Instant::now() + DELIVERY_WAIT;
        while Instant::now() < deadline {
            // Once complete, keep reading briefly: duplicates may still be on their way.
            let quiet = if delivery.counts.len() >= expected {
                Duration::from_millis(300)
            } else {
                QUIET
            };
            let Some(payload) = subscriber.next_within(quiet).await else {
                break;
            };
            delivery.record(&payload, sessions);
        }
        delivery
    }

    fn record(&mut self, payload: &Value, sessions: &[String]) {
        let client = payload["data"]["client"].as_u64().map(|c| c as usize);
        let seq = payload["data"]["seq"].as_u64();
        let (Some(client), Some(seq)) = (client, seq) else {
            self.wrong
                .push(format!("not a numbered message: {payload}"));
            return;
        };
        let right = payload["fromClient"] == json!(true)
            && sessions.get(client).map(String::as_str) == payload["sessionId"].as_str()
            && payload["sessionData"] == json!({"n": client});
        if !right {
            self.wrong.push(payload.to_string());
        }
        *self.counts.entry((client, seq)).or_default() += 1;
        let highest = self.highest.entry(client).or_default();
        if seq < *highest {
            self.reordered += 1;
        }
        *highest = (*highest).max(seq);
    }

    /// Numbered messages the clients sent that never arrived.
    pub fn missing(&self, outcomes: &[Outcome]) -> Vec<(usize, u64)> {
        outcomes
            .iter()
            .flat_map(|o| (1..=o.sent).map(move |seq| (o.index, seq)))
            .filter(|key| !self.counts.contains_key(key))
            .collect()
    }

    /// Messages that arrived more than once, and how many extra copies there were.
    pub fn duplicates(&self) -> (usize, u32) {
        let repeated = self.counts.values().filter(|&&n| n > 1);
        (repeated.clone().count(), repeated.map(|n| n - 1).sum())
    }

    /// Every message arrived, and arrived right; returns how many were expected.
    pub fn assert_complete(&self, outcomes: &[Outcome]) -> usize {
        let expected: usize = outcomes.iter().map(|o| o.sent as usize).sum();
        let missing = self.missing(outcomes);
        let named: Vec<String> = missing
            .iter()
            .take(20)
            .filter_map(|&(client, seq)| {
                let out = outcomes.iter().find(|o| o.index == client)?;
                let when = match out.reconnects.iter().position(|r| r.last_sent == seq) {
                    Some(n) => format!(", the last one sent before close #{}", n + 1),
                    None => String::new(),
                };
                let session = &out.first.session;
                Some(format!(
                    "client {client} seq {seq}{when} (session {session})"
                ))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {expected} client messages never reached the backend, e.g. {named:#?}",
            missing.len(),
        );
        assert!(
            self.wrong.is_empty(),
            "{} messages arrived wrong, e.g. {:?}",
            self.wrong.len(),
            &self.wrong[..self.wrong.len().min(5)]
        );
        expected
    }
}

/// Reconnect gaps (close → welcome) over every reconnect of a fleet.
#[derive(Debug)]
pub struct GapStats {
    pub reconnects: usize,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl GapStats {
    pub fn of(outcomes: &[Outcome]) -> GapStats {
        let mut gaps: Vec<Duration> = outcomes
            .iter()
            .flat_map(|o| o.reconnects.iter().map(|r| r.gap))
            .collect();
        assert!(!gaps.is_empty(), "no reconnects to measure");
        gaps.sort();
        let at = |fraction: f64| gaps[((gaps.len() - 1) as f64 * fraction).round() as usize];
        GapStats {
            reconnects: gaps.len(),
            median: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}
