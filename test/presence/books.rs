//! Counting session events per session: exactly one `session.opened`, then exactly one
//! `session.closed` with the reason the scenario caused, nothing else, each event once.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The events of each session, in the order they were received.
pub struct EventBooks {
    by_session: BTreeMap<String, Vec<(String, Option<String>)>>,
    /// Events that came twice (the same `rohrpostPos`).
    pub repeats: usize,
    /// Events without a `rohrpostPos`.
    pub unpositioned: usize,
}

impl EventBooks {
    pub fn of(events: &[Value]) -> EventBooks {
        let mut by_session: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let (mut repeats, mut unpositioned) = (0, 0);
        for event in events {
            match event["rohrpostPos"].as_str() {
                Some(pos) if !seen.insert(pos.to_owned()) => {
                    repeats += 1;
                    continue;
                }
                Some(_) => {}
                None => unpositioned += 1,
            }
            let id = event["sessionId"].as_str().unwrap_or("?").to_owned();
            let kind = event["event"].as_str().unwrap_or("?").to_owned();
            let reason = event["reason"].as_str().map(str::to_owned);
            by_session.entry(id).or_default().push((kind, reason));
        }
        EventBooks {
            by_session,
            repeats,
            unpositioned,
        }
    }

    /// What is wrong with session `id`'s events, if it was opened and then closed for `reason`.
    pub fn check_closed(&self, id: &str, reason: &str) -> Option<String> {
        let got = self.by_session.get(id).cloned().unwrap_or_default();
        let want = vec![
            ("session.opened".to_owned(), None),
            ("session.closed".to_owned(), Some(reason.to_owned())),
        ];
        (got != want).then(|| format!("session {id}: expected {want:?}, got {got:?}"))
    }

    /// What is wrong with session `id`'s events, if it was opened and is still live.
    pub fn check_open(&self, id: &str) -> Option<String> {
        let got = self.by_session.get(id).cloned().unwrap_or_default();
        let want = vec![("session.opened".to_owned(), None)];
        (got != want).then(|| format!("session {id}: expected {want:?}, got {got:?}"))
    }

    /// Whether session `id` has a `session.closed`.
    pub fn closed(&self, id: &str) -> bool {
        self.by_session
            .get(id)
            .is_some_and(|e| e.iter().any(|(kind, _)| kind == "session.closed"))
    }

    /// Sessions with events that the test did not make.
    pub fn sessions(&self) -> impl Iterator<Item = &String> {
        self.by_session.keys()
    }
}
