//! The embedded broker's publication log: the newest logged publishes, in memory in the
//! supervisor, so that it outlives every worker restart.
//!
//! Bounded three ways: `history.size` entries, `history.ttl` of age (swept with the session
//! records) and [`ServerLimits::history_bytes`](super::ServerLimits) of payload. Its epoch is
//! random per server start: a restarted supervisor has lost the history, and says so.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::broker::log::{beacon_every, LogEntry, LogRead, Position};

struct Held {
    entry: LogEntry,
    at: Instant,
}

/// The log; see the module docs.
pub(super) struct PublicationLog {
    epoch: Arc<str>,
    head: u64,
    entries: VecDeque<Held>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    ttl: Duration,
    beacon_every: u64,
}

impl PublicationLog {
    pub fn new(max_entries: usize, ttl: Duration, max_bytes: usize) -> PublicationLog {
        PublicationLog {
            epoch: Arc::from(format!("{:016x}", rand::random::<u64>())),
            head: 0,
            entries: VecDeque::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
            ttl,
            beacon_every: beacon_every(max_entries),
        }
    }

    #[cfg(test)]
    pub fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    /// Appends a publish; its position.
    pub fn append(&mut self, channel: &str, payload: &Bytes, now: Instant) -> Position {
        self.head += 1;
        self.bytes += payload.len();
        self.entries.push_back(Held {
            entry: LogEntry {
                seq: self.head,
                channel: Arc::from(channel),
                payload: payload.clone(),
            },
            at: now,
        });
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            self.drop_oldest();
        }
        Position {
            epoch: self.epoch.clone(),
            seq: self.head,
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.bytes -= old.entry.payload.len();
        }
    }

    /// Whether the publish at `position` is followed by a head beacon.
    pub fn beacon_after(&self, position: &Position) -> bool {
        position.seq.is_multiple_of(self.beacon_every)
    }

    /// Drops the entries older than the TTL; how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        while (self.entries.front()).is_some_and(|e| now.duration_since(e.at) > self.ttl) {
            self.drop_oldest();
        }
        before - self.entries.len()
    }

    /// The epoch, the head and the entries after `after` (see [`ReadLog`]).
    ///
    /// [`ReadLog`]: crate::broker::log::ReadLog
    pub fn read(&mut self, after: Option<&Position>, now: Instant) -> LogRead {
        self.sweep(now);
        let mut read = LogRead {
            epoch: self.epoch.clone(),
            head: self.head,
            entries: Vec::new(),
            complete: true,
        };
        let Some(start) = LogRead::start(after, &self.epoch) else {
            return read;
        };
        let first = self.entries.front().map(|e| e.entry.seq);
        read.complete = LogRead::covers(start, self.head, first);
        // Entries are numbered consecutively, so the first one wanted is found by arithmetic.
        let skip = first.map_or(0, |first| start.saturating_sub(first - 1) as usize);
        read.entries = (self.entries.iter().skip(skip))
            .map(|held| held.entry.clone())
            .collect();
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(read: &LogRead) -> Vec<u64> {
        read.entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn reads_after_a_position_and_says_when_entries_are_gone() {
        let now = Instant::now();
        let mut log = PublicationLog::new(3, Duration::from_secs(60), 1 << 20);
        let payload = Bytes::from_static(b"{}");
        let positions: Vec<Position> = (0..5).map(|_| log.append("c", &payload, now)).collect();
        assert_eq!(positions[4].seq, 5);
        let read = log.read(Some(&positions[2]), now);
        assert_eq!((seqs(&read), read.complete), (vec![4, 5], true));
        let read = log.read(Some(&positions[1]), now);
        assert_eq!((seqs(&read), read.complete), (vec![3, 4, 5], true));
        // Entry 2 was dropped (size 3): after 1 is not complete.
        let read = log.read(Some(&positions[0]), now);
        assert_eq!((seqs(&read), read.complete), (vec![3, 4, 5], false));
        let read = log.read(Some(&positions[4]), now);
        assert_eq!((seqs(&read), read.complete), (vec![], true));
        let head_only = log.read(None, now);
        assert_eq!((head_only.head, head_only.entries.len()), (5, 0));
    }

    #[test]
    fn another_epoch_reads_everything_and_old_entries_expire() {
        let now = Instant::now();
        let mut log = PublicationLog::new(10, Duration::from_secs(1), 1 << 20);
        let payload = Bytes::from_static(b"{}");
        log.append("c", &payload, now);
        log.append("c", &payload, now + Duration::from_millis(1500));
        let foreign = Position {
            epoch: Arc::from("other"),
            seq: 1,
        };
        let later = now + Duration::from_millis(1600);
        let read = log.read(Some(&foreign), later);
        assert_eq!((seqs(&read), read.complete), (vec![2], false));
        let ahead = Position {
            epoch: log.epoch().clone(),
            seq: 9,
        };
        assert!(!log.read(Some(&ahead), later).complete);
    }

    #[test]
    fn payload_bytes_are_bounded() {
        let now = Instant::now();
        let mut log = PublicationLog::new(100, Duration::from_secs(60), 10);
        let payload = Bytes::from_static(b"{\"x\":1}");
        for _ in 0..3 {
            log.append("c", &payload, now);
        }
        assert_eq!(log.entries.len(), 1);
        assert_eq!(log.bytes, payload.len());
    }
}
