//! The server's index of who is subscribed to what.
//!
//! Exact subscriptions are found by a hash lookup of the channel; wildcard subscriptions are
//! tested one by one with [`Pattern::matches`], so a publish costs one lookup plus one match per
//! distinct wildcard pattern on the server (a handful per worker in practice, and each is
//! tested once however many clients share it). Every subscription is kept once per pattern with
//! the set of clients holding it, so a message is encoded once per matching pattern and the
//! frame shared by its clients.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::topics::Pattern;

/// A connected client, numbered by the server.
pub(super) type ClientId = u64;

/// Who is subscribed to what; see the module docs.
#[derive(Default)]
pub(super) struct Subscriptions {
    /// Exact subscriptions by channel, with the pattern they were made as.
    exact: HashMap<Arc<str>, (Pattern, HashSet<ClientId>)>,
    /// Wildcard subscriptions.
    wildcard: HashMap<Pattern, HashSet<ClientId>>,
    /// Each client's subscriptions, to count them and to forget them when it leaves.
    by_client: HashMap<ClientId, HashSet<Pattern>>,
}

impl Subscriptions {
    /// Subscribes `client` to `pattern`; false if it was subscribed already.
    pub(super) fn add(&mut self, client: ClientId, pattern: Pattern) -> bool {
        if !self
            .by_client
            .entry(client)
            .or_default()
            .insert(pattern.clone())
        {
            return false;
        }
        let clients = if pattern.is_exact() {
            let key = Arc::from(pattern.as_str());
            &mut self
                .exact
                .entry(key)
                .or_insert_with(|| (pattern, HashSet::new()))
                .1
        } else {
            self.wildcard.entry(pattern).or_default()
        };
        clients.insert(client);
        true
    }

    /// Unsubscribes `client` from `pattern`; false if it was not subscribed.
    pub(super) fn remove(&mut self, client: ClientId, pattern: &Pattern) -> bool {
        let Some(mine) = self.by_client.get_mut(&client) else {
            return false;
        };
        if !mine.remove(pattern) {
            return false;
        }
        if mine.is_empty() {
            self.by_client.remove(&client);
        }
        if pattern.is_exact() {
            if let Some((_, clients)) = self.exact.get_mut(pattern.as_str()) {
                clients.remove(&client);
                if clients.is_empty() {
                    self.exact.remove(pattern.as_str());
                }
            }
        } else if let Some(clients) = self.wildcard.get_mut(pattern) {
            clients.remove(&client);
            if clients.is_empty() {
                self.wildcard.remove(pattern);
            }
        }
        true
    }

    /// Drops every subscription of `client`.
    pub(super) fn forget(&mut self, client: ClientId) {
        for pattern in self.by_client.get(&client).cloned().unwrap_or_default() {
            self.remove(client, &pattern);
        }
    }

    /// Whether `client` holds `pattern`.
    pub(super) fn has(&self, client: ClientId, pattern: &Pattern) -> bool {
        (self.by_client.get(&client)).is_some_and(|mine| mine.contains(pattern))
    }

    /// How many subscriptions `client` holds.
    pub(super) fn count(&self, client: ClientId) -> usize {
        self.by_client.get(&client).map_or(0, HashSet::len)
    }

    /// Every subscription matching `channel`, with the clients holding it.
    pub(super) fn matching<'a>(
        &'a self,
        channel: &'a str,
    ) -> impl Iterator<Item = (&'a Pattern, &'a HashSet<ClientId>)> + 'a {
        let exact = (self.exact.get(channel)).map(|(pattern, clients)| (pattern, clients));
        let wildcard = (self.wildcard.iter()).filter(move |(pattern, _)| pattern.matches(channel));
        exact.into_iter().chain(wildcard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::DEFAULT_MAX_TOPIC_LEN;

    fn pattern(s: &str) -> Pattern {
        Pattern::parse(s, DEFAULT_MAX_TOPIC_LEN).unwrap()
    }

    /// The matching subscriptions of `channel` as sorted (pattern, client) pairs.
    fn deliveries(index: &Subscriptions, channel: &str) -> Vec<(String, ClientId)> {
        let mut out: Vec<(String, ClientId)> = (index.matching(channel))
            .flat_map(|(p, clients)| clients.iter().map(|c| (p.to_string(), *c)))
            .collect();
        out.sort();
        out
    }

    fn pairs(expected: &[(&str, ClientId)]) -> Vec<(String, ClientId)> {
        expected.iter().map(|(p, c)| (p.to_string(), *c)).collect()
    }

    #[test]
    fn overlapping_subscriptions_match_once_each() {
        let mut index = Subscriptions::default();
        assert!(index.add(1, pattern("x.*")));
        assert!(index.add(1, pattern("x.y")));
        assert!(!index.add(1, pattern("x.y")));
        index.add(2, pattern("x.y"));
        let expected = pairs(&[("x.*", 1), ("x.y", 1), ("x.y", 2)]);
        assert_eq!(deliveries(&index, "x.y"), expected);
        assert_eq!(deliveries(&index, "x.z"), pairs(&[("x.*", 1)]));
    }

    #[test]
    fn glob_characters_other_than_star_are_literal() {
        let mut index = Subscriptions::default();
        index.add(1, pattern("a?b"));
        index.add(1, pattern("a[bc]*"));
        assert_eq!(deliveries(&index, "axb"), pairs(&[]));
        assert_eq!(deliveries(&index, "a?b"), pairs(&[("a?b", 1)]));
        assert_eq!(deliveries(&index, "ab"), pairs(&[]));
        assert_eq!(deliveries(&index, "a[bc]z"), pairs(&[("a[bc]*", 1)]));
    }

    #[test]
    fn removing_and_forgetting_leave_nothing_behind() {
        let mut index = Subscriptions::default();
        index.add(1, pattern("news"));
        index.add(1, pattern("chat.*"));
        index.add(2, pattern("chat.*"));
        assert!(index.remove(1, &pattern("news")));
        assert!(!index.remove(1, &pattern("news")));
        assert_eq!(index.count(1), 1);
        index.forget(1);
        assert_eq!(index.count(1), 0);
        assert!(!index.has(1, &pattern("chat.*")));
        assert_eq!(deliveries(&index, "chat.x"), pairs(&[("chat.*", 2)]));
        index.forget(2);
        assert!(index.exact.is_empty() && index.wildcard.is_empty() && index.by_client.is_empty());
    }
}
