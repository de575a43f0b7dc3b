//! A bounded memory of recently seen keys: how the demo backend drops repeats.
//!
//! Rohrpost delivers at least once — a client resends a message it saw no acknowledgement for,
//! and a session event can be POSTed again after a failover — so a backend remembers what it
//! has handled, by the id Rohrpost gives it (`messageId` per session, `rohrpostPos` per event).
//! Only the newest `limit` keys are kept: a repeat comes soon after the original, and a memory
//! without a bound would grow with every message for as long as the backend runs.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// The newest `limit` keys seen, oldest first.
pub(super) struct Recent<K> {
    limit: usize,
    order: VecDeque<K>,
    keys: HashSet<K>,
}

impl<K: Hash + Eq + Clone> Recent<K> {
    /// An empty memory of at most `limit` keys.
    pub(super) fn new(limit: usize) -> Self {
        Recent {
            limit,
            order: VecDeque::new(),
            keys: HashSet::new(),
        }
    }

    /// Whether `key` is new; remembers it, forgetting the oldest key beyond the limit.
    pub(super) fn first(&mut self, key: K) -> bool {
        if !self.keys.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.limit {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        true
    }

    /// Forgets `key` (it may come again).
    pub(super) fn forget(&mut self, key: &K) {
        if self.keys.remove(key) {
            self.order.retain(|k| k != key);
        }
    }

    /// Whether `key` is remembered.
    pub(super) fn contains(&self, key: &K) -> bool {
        self.keys.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_not_first() {
        let mut recent = Recent::new(10);
        assert!(recent.first(("s1", "m1")));
        assert!(!recent.first(("s1", "m1")));
        assert!(
            recent.first(("s2", "m1")),
            "the same id of another session is new"
        );
        assert!(recent.contains(&("s1", "m1")));
    }

    #[test]
    fn only_the_newest_keys_are_remembered() {
        let mut recent = Recent::new(3);
        for key in 0..5 {
            assert!(recent.first(key));
        }
        assert_eq!(recent.order.len(), 3);
        assert_eq!(recent.keys.len(), 3);
        assert!(!recent.contains(&1), "forgotten after `limit` newer keys");
        assert!(recent.contains(&2));
        assert!(recent.first(0), "a forgotten key is new again");
    }

    #[test]
    fn a_key_forgotten_on_purpose_is_new_again() {
        let mut recent = Recent::new(3);
        recent.first("a");
        recent.first("b");
        recent.forget(&"a");
        assert!(!recent.contains(&"a"));
        assert_eq!(recent.order, ["b"]);
        assert!(recent.first("a"));
    }
}
