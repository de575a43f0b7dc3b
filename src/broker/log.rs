//! The publication log: one ordered log per broker that every logged publish goes through, and
//! what a worker needs to follow it.
//!
//! A logged publish (the server API, HTTP-topic answers, `FCALL rohrpost_publish`) gets the next
//! [`Position`] of the log and is delivered on its channel with that position; the log keeps the
//! newest `history.size` entries for `history.ttl`. Its *epoch* names one life of the log: it
//! changes whenever the history is lost (Redis restarted without its data, the embedded broker
//! restarted), so a position of another epoch can never be mistaken for one of this.
//!
//! [`ReadLog`] reads the entries after a position; [`Follower`] is the part of each broker actor
//! that keeps a worker's deliveries gapless across a lost connection: it remembers the newest
//! position handed on, and after a reconnect replays what the log holds after it (holding live
//! messages back meanwhile) and reports when it cannot.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use tokio::sync::oneshot;

use super::{BrokerError, BrokerMessage, LinkRestored};
use crate::topics::Pattern;

/// The channel of the log's head beacons: every [`beacon_every`]-th logged publish is followed,
/// in the same atomic step, by a payload-less message on it carrying that publish's position.
/// Every worker subscribes to it, so each learns how far the log has gone even when none of its
/// sessions is on a busy topic, in order with what it receives: once the beacon of position p
/// arrived, every logged message up to p that the worker's subscriptions match has too.
pub const HEAD_CHANNEL: &str = "rohrpost.log.head";

/// How many logged publishes a head beacon follows: often enough that a quiet session told its
/// position from beacons stays well inside a history of `size` entries.
pub fn beacon_every(size: usize) -> u64 {
    (size as u64 / 4).clamp(1, 64)
}

/// Where a message stands in the log: its epoch and its sequence number (from 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub epoch: Arc<str>,
    pub seq: u64,
}

impl Position {
    /// Parses the wire form `<epoch>:<seq>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Position> {
        let (epoch, seq) = text.rsplit_once(':')?;
        let valid_epoch = !epoch.is_empty()
            && epoch.len() <= 64
            && epoch.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid_epoch || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Position {
            epoch: Arc::from(epoch),
            seq: seq.parse().ok()?,
        })
    }

    /// Whether `self` is at or behind `other` in the same epoch (a message at `self` was seen
    /// by whoever is caught up to `other`).
    pub fn not_after(&self, other: &Position) -> bool {
        self.epoch == other.epoch && self.seq <= other.seq
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

/// One entry of the log, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub channel: Arc<str>,
    pub payload: Bytes,
}

/// What a read of the log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    pub epoch: Arc<str>,
    /// The newest position published (0: nothing yet in this epoch).
    pub head: u64,
    /// The entries after the position asked for, oldest first.
    pub entries: Vec<LogEntry>,
    /// Whether `entries` holds every entry after the position asked for: false when some have
    /// been dropped from the history already, or the position is ahead of the log (a Redis that
    /// came back from an older snapshot).
    pub complete: bool,
}

impl LogRead {
    /// The head as a position.
    pub fn head_position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            seq: self.head,
        }
    }

    /// Whether the entries after `after` (in this read's epoch) are all held, given the head
    /// and the first entry held: `after` is the head, or the entry right after it is held.
    pub fn covers(after: u64, head: u64, first: Option<u64>) -> bool {
        after == head || (after < head && first.is_some_and(|first| first <= after + 1))
    }

    /// The sequence number a read after `after` starts from in epoch `epoch`: after it in the
    /// same epoch, from the beginning in another.
    pub fn start(after: Option<&Position>, epoch: &str) -> Option<u64> {
        after.map(|a| if &*a.epoch == epoch { a.seq } else { 0 })
    }
}

/// Reads the log: its epoch and head and, with `after`, every entry after that position (every
/// entry of the log when `after` is of another epoch).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<LogRead, BrokerError>")]
pub struct ReadLog {
    pub after: Option<Position>,
}

/// Publishes `payload` on `channel` through the log; answers the position it got.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Position, BrokerError>")]
pub struct PublishLogged {
    pub channel: Arc<str>,
    pub payload: Bytes,
}

/// Answers `true` once the broker server has confirmed every one of `0` on the current
/// connection (a pattern no longer wanted counts as confirmed): after that, anything published
/// on them reaches the worker. Answers `false` at once while the broker is down (nothing can be
/// confirmed; the broker restores the subscriptions when it is back, and replays what the log
/// got meanwhile).
#[derive(Message, Debug, Clone)]
#[rtype(result = "bool")]
pub struct Confirm(pub Vec<Pattern>);

/// The `history` settings a broker needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    pub enabled: bool,
    pub size: usize,
    pub ttl: std::time::Duration,
}

impl HistorySettings {
    pub fn of(config: &crate::config::HistoryConfig) -> HistorySettings {
        HistorySettings {
            enabled: config.enabled,
            size: config.size,
            ttl: config.ttl,
        }
    }
}

/// Keeps one worker's logged deliveries gapless across lost connections; see the module docs.
#[derive(Default)]
pub(crate) struct Follower {
    /// Whether the broker can read its log (`false`: history disabled; nothing is ever filled).
    disabled: bool,
    /// The newest logged position handed on.
    seen: Option<Position>,
    /// While a gap fill runs: the live messages that arrived meanwhile, in order.
    held: Option<Vec<BrokerMessage>>,
    /// Live messages at or before this (in `seen`'s epoch) were replayed already.
    replayed: Option<Position>,
}

/// What a finished gap fill hands on.
pub(crate) struct Filled {
    /// Replayed entries, then the held live messages, in order.
    pub messages: Vec<BrokerMessage>,
    /// Whether messages may have been lost that no replay can bring back.
    pub gap: bool,
}

impl Follower {
    /// The follower of a broker whose log can be read (`history` on), or not.
    pub fn new(history: bool) -> Follower {
        Follower {
            disabled: !history,
            ..Follower::default()
        }
    }

    /// A new connection is up after a lost one: the position to read the log after (live
    /// messages are held from now until [`Follower::refill`]), or `None` when there is nothing
    /// to fill — then `restored` is told at once that the link is back, with no gap.
    pub fn reconnected(&mut self, restored: Option<&Recipient<LinkRestored>>) -> Option<Position> {
        let after = if self.disabled { None } else { self.begin() };
        if after.is_none() {
            if let Some(restored) = restored {
                restored.do_send(LinkRestored { gap: false });
            }
        }
        after
    }

    /// A live message: handed on (`Some`), held back during a gap fill, or dropped as replayed.
    pub fn live(&mut self, message: BrokerMessage) -> Option<BrokerMessage> {
        if let Some(held) = &mut self.held {
            held.push(message);
            return None;
        }
        self.pass(message)
    }

    fn pass(&mut self, message: BrokerMessage) -> Option<BrokerMessage> {
        if let Some(position) = &message.position {
            if self
                .replayed
                .as_ref()
                .is_some_and(|r| position.not_after(r))
            {
                return None;
            }
            self.seen = Some(position.clone());
        }
        Some(message)
    }

    /// A new connection is up: from now on live messages are held until [`Follower::finish`].
    /// Answers the position to read after, or `None` when there is nothing to fill (nothing
    /// logged was seen yet), in which case nothing is held.
    pub fn begin(&mut self) -> Option<Position> {
        let seen = self.seen.clone()?;
        self.held.get_or_insert_with(Vec::new);
        Some(seen)
    }

    /// Ends a gap fill with what the log read found (`Err`: the read failed), replaying the
    /// entries after the newest position seen through the subscriptions `wanted` matches.
    pub fn finish(
        &mut self,
        read: Result<LogRead, BrokerError>,
        wanted: &Subscriptions<'_>,
    ) -> Filled {
        let held = self.held.take().unwrap_or_default();
        let mut messages = Vec::new();
        let mut gap = false;
        match (read, self.seen.clone()) {
            (Ok(read), Some(seen)) => {
                let same_epoch = read.epoch == seen.epoch;
                let after = if same_epoch { seen.seq } else { 0 };
                // Another epoch: the old one's tail after `seen` may have been lost with it.
                gap = !same_epoch || !read.complete;
                for entry in read.entries.iter().filter(|e| e.seq > after) {
                    let position = Position {
                        epoch: read.epoch.clone(),
                        seq: entry.seq,
                    };
                    for subscription in wanted.matching(&entry.channel) {
                        messages.push(BrokerMessage {
                            subscription: subscription.clone(),
                            channel: entry.channel.clone(),
                            payload: entry.payload.clone(),
                            position: Some(position.clone()),
                        });
                    }
                }
                let newest = Position {
                    epoch: read.epoch.clone(),
                    seq: read.entries.last().map_or(after, |e| e.seq.max(after)),
                };
                self.seen = Some(newest.clone());
                self.replayed = Some(newest);
            }
            (Err(e), Some(_)) => {
                log::warn!("log not read after reconnecting; deliveries may have a gap error={e}");
                gap = true;
            }
            (_, None) => {}
        }
        for message in held {
            if let Some(message) = self.pass(message) {
                messages.push(message);
            }
        }
        Filled { messages, gap }
    }
}

impl Follower {
    /// After a reconnect, when the log was read after [`Follower::begin`]'s position: replays
    /// what it holds through `deliver`, then tells `restored` the link is back and whether a
    /// gap remains. Shared by every broker actor.
    pub fn refill(
        &mut self,
        read: Result<LogRead, BrokerError>,
        wanted: &Subscriptions<'_>,
        deliver: &Recipient<BrokerMessage>,
        restored: Option<&Recipient<LinkRestored>>,
        broker: &str,
    ) {
        let filled = self.finish(read, wanted);
        log::info!(
            "{broker} replayed after reconnecting messages={} gap={}",
            filled.messages.len(),
            filled.gap
        );
        for message in filled.messages {
            deliver.do_send(message);
        }
        if let Some(restored) = restored {
            restored.do_send(LinkRestored { gap: filled.gap });
        }
    }
}

/// The [`Confirm`]s of one broker waiting for their subscriptions (`S`: how the broker names
/// them) to be applied on its connection.
pub(crate) struct Waiters<S>(Vec<(Vec<S>, oneshot::Sender<()>)>);

impl<S> Default for Waiters<S> {
    fn default() -> Self {
        Waiters(Vec::new())
    }
}

impl<S: 'static> Waiters<S> {
    /// The answer to a [`Confirm`] of `subs`: `true` at once when `confirmed` says so, else
    /// once [`Waiters::wake`] finds them confirmed.
    pub fn confirm(&mut self, subs: Vec<S>, confirmed: bool) -> ResponseFuture<bool> {
        if confirmed {
            return Box::pin(std::future::ready(true));
        }
        let (waiter, answer) = oneshot::channel();
        self.0.push((subs, waiter));
        Box::pin(async move { answer.await.is_ok() })
    }

    /// Answers every waiting confirmation whose subscriptions are `confirmed` now (and forgets
    /// those nobody waits for any more).
    pub fn wake(&mut self, confirmed: impl Fn(&[S]) -> bool) {
        for (subs, waiter) in std::mem::take(&mut self.0) {
            if confirmed(&subs) {
                let _ = waiter.send(());
            } else if !waiter.is_closed() {
                self.0.push((subs, waiter));
            }
        }
    }
}

/// A broker's wanted subscriptions, indexed for matching channels: exact ones by text, wildcard
/// ones tested in turn.
pub(crate) struct Subscriptions<'a> {
    exact: HashMap<&'a str, &'a Pattern>,
    wildcard: Vec<&'a Pattern>,
}

impl<'a> Subscriptions<'a> {
    pub fn new(patterns: impl Iterator<Item = &'a Pattern>) -> Subscriptions<'a> {
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for pattern in patterns {
            if pattern.is_exact() {
                exact.insert(pattern.as_str(), pattern);
            } else {
                wildcard.push(pattern);
            }
        }
        Subscriptions { exact, wildcard }
    }

    /// Every subscription `channel` matches, as the broker server would deliver it.
    pub fn matching<'s>(&'s self, channel: &'s str) -> impl Iterator<Item = &'a Pattern> + 's {
        let exact = self.exact.get(channel).copied();
        exact
            .into_iter()
            .chain(self.wildcard.iter().copied().filter(|p| p.matches(channel)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Pattern {
        Pattern::parse(s, 256).unwrap()
    }

    fn message(channel: &str, epoch: &str, seq: u64) -> BrokerMessage {
        BrokerMessage {
            subscription: pat(channel),
            channel: Arc::from(channel),
            payload: Bytes::from_static(b"{}"),
            position: Some(Position {
                epoch: Arc::from(epoch),
                seq,
            }),
        }
    }

    fn entry(seq: u64, channel: &str) -> LogEntry {
        LogEntry {
            seq,
            channel: Arc::from(channel),
            payload: Bytes::from_static(b"{}"),
        }
    }

    fn seqs(messages: &[BrokerMessage]) -> Vec<u64> {
        messages
            .iter()
            .map(|m| m.position.as_ref().unwrap().seq)
            .collect()
    }

    #[test]
    fn beacons_come_often_enough_for_small_histories_and_rarely_for_big_ones() {
        assert_eq!(beacon_every(1), 1);
        assert_eq!(beacon_every(100), 25);
        assert_eq!(beacon_every(10_000), 64);
    }

    #[test]
    fn positions_parse_only_their_own_form() {
        let p = Position::parse("ab12:42").unwrap();
        assert_eq!((&*p.epoch, p.seq), ("ab12", 42));
        assert_eq!(p.to_string(), "ab12:42");
        for bad in ["", ":1", "ab:", "ab:-1", "a b:1", "ab:1x", "ab", "ab:+1"] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_gap_fill_replays_what_was_missed_and_drops_live_duplicates() {
        let patterns = [pat("a")];
        let wanted = Subscriptions::new(patterns.iter());
        let mut follower = Follower::default();
        assert!(follower.live(message("a", "e", 1)).is_some());
        assert_eq!(follower.begin().map(|p| p.seq), Some(1));
        // Live messages during the fill are held, duplicates of the replay among them.
        assert!(follower.live(message("a", "e", 3)).is_none());
        assert!(follower.live(message("a", "e", 4)).is_none());
        let read = LogRead {
            epoch: Arc::from("e"),
            head: 3,
            entries: vec![entry(2, "a"), entry(3, "a")],
            complete: true,
        };
        let filled = follower.finish(Ok(read), &wanted);
        assert!(!filled.gap);
        assert_eq!(seqs(&filled.messages), [2, 3, 4]);
        assert!(follower.live(message("a", "e", 3)).is_none());
        assert!(follower.live(message("a", "e", 5)).is_some());
    }

    #[test]
    fn a_new_epoch_or_a_trimmed_log_is_a_gap() {
        let patterns = [pat("a"), pat("*")];
        let wanted = Subscriptions::new(patterns.iter());
        let mut follower = Follower::default();
        follower.live(message("a", "old", 7));
        follower.begin();
        let read = LogRead {
            epoch: Arc::from("new"),
            head: 1,
            entries: vec![entry(1, "a")],
            complete: true,
        };
        let filled = follower.finish(Ok(read), &wanted);
        assert!(filled.gap);
        // Once per matching subscription, as the server delivers it.
        assert_eq!(seqs(&filled.messages), [1, 1]);

        follower.begin();
        let trimmed = LogRead {
            epoch: Arc::from("new"),
            head: 9,
            entries: vec![entry(5, "b")],
            complete: false,
        };
        assert!(follower.finish(Ok(trimmed), &wanted).gap);
    }

    #[test]
    fn nothing_is_held_before_anything_logged_was_seen() {
        let mut follower = Follower::default();
        assert!(follower.begin().is_none());
        assert!(follower.live(message("a", "e", 1)).is_some());
    }
}
