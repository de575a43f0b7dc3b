//! The server's session store: records with a time to live, bounded in count and bytes.
//!
//! A record past its expiry is never returned (checked on every load) and is dropped by the
//! periodic [`SessionStore::sweep`], which walks an expiry-ordered index and so costs only the
//! records it drops, however many are stored.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The longest time to live honoured; longer ones are shortened to it.
pub(super) const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a record was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum StoreError {
    #[error("session store full: {records} records of {bytes} bytes held (limits {max_records} records, {max_bytes} bytes)")]
    Full {
        records: usize,
        bytes: usize,
        max_records: usize,
        max_bytes: usize,
    },
}

struct Record {
    data: Bytes,
    expires: Instant,
}

/// Session records by id; see the module docs.
pub(super) struct SessionStore {
    records: HashMap<Arc<str>, Record>,
    /// Every record's (expiry, id), earliest first.
    expiries: BTreeSet<(Instant, Arc<str>)>,
    /// The sum of the stored records' lengths.
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
}

impl SessionStore {
    pub(super) fn new(max_records: usize, max_bytes: usize) -> SessionStore {
        SessionStore {
            records: HashMap::new(),
            expiries: BTreeSet::new(),
            bytes: 0,
            max_records,
            max_bytes,
        }
    }

    /// Stores `data` under `id` until `now + ttl`, replacing any record of that id; refused,
    /// with the old record kept, when the limits would be passed.
    pub(super) fn set(
        &mut self,
        id: &str,
        data: Bytes,
        ttl: Duration,
        now: Instant,
    ) -> Result<(), StoreError> {
        self.sweep(now);
        let old_len = self.records.get(id).map(|old| old.data.len());
        let records = self.records.len() + usize::from(old_len.is_none());
        let bytes = self.bytes - old_len.unwrap_or(0) + data.len();
        if records > self.max_records || bytes > self.max_bytes {
            return Err(StoreError::Full {
                records: self.records.len(),
                bytes: self.bytes,
                max_records: self.max_records,
                max_bytes: self.max_bytes,
            });
        }
        self.remove(id);
        let id: Arc<str> = Arc::from(id);
        let expires = now + ttl.min(MAX_TTL);
        self.bytes += data.len();
        self.expiries.insert((expires, id.clone()));
        self.records.insert(id, Record { data, expires });
        Ok(())
    }

    /// The record stored under `id`, unless it has expired by `now`.
    pub(super) fn get(&mut self, id: &str, now: Instant) -> Option<Bytes> {
        let record = self.records.get(id)?;
        if record.expires <= now {
            self.remove(id);
            return None;
        }
        Some(record.data.clone())
    }

    /// Drops every record expired by `now`; returns how many.
    pub(super) fn sweep(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some((expires, id)) = self.expiries.first().cloned() {
            if expires > now {
                break;
            }
            self.remove(&id);
            dropped += 1;
        }
        dropped
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    fn remove(&mut self, id: &str) {
        if let Some((id, record)) = self.records.remove_entry(id) {
            self.bytes -= record.data.len();
            self.expiries.remove(&(record.expires, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn record(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn records_round_trip_until_they_expire() {
        let mut store = SessionStore::new(10, 1000);
        let t0 = Instant::now();
        store.set("a", record("one"), SECOND, t0).unwrap();
        assert_eq!(store.get("a", t0), Some(record("one")));
        assert_eq!(store.get("b", t0), None);
        assert_eq!(store.get("a", t0 + SECOND), None);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn storing_again_replaces_record_and_expiry() {
        let mut store = SessionStore::new(10, 1000);
        let t0 = Instant::now();
        store.set("a", record("one"), SECOND, t0).unwrap();
        store.set("a", record("two"), 3 * SECOND, t0).unwrap();
        assert_eq!(store.get("a", t0 + 2 * SECOND), Some(record("two")));
        assert_eq!((store.expiries.len(), store.bytes), (1, 3));
    }

    #[test]
    fn sweep_drops_only_expired_records() {
        let mut store = SessionStore::new(10, 1000);
        let t0 = Instant::now();
        store.set("short", record("x"), SECOND, t0).unwrap();
        store.set("long", record("y"), 10 * SECOND, t0).unwrap();
        assert_eq!(store.sweep(t0 + 2 * SECOND), 1);
        assert_eq!(store.len(), 1);
        assert_eq!((store.expiries.len(), store.bytes), (1, 1));
    }

    #[test]
    fn limits_refuse_new_records_but_expired_ones_make_room() {
        let mut store = SessionStore::new(2, 10);
        let t0 = Instant::now();
        store.set("a", record("12345"), SECOND, t0).unwrap();
        store.set("b", record("12345"), 5 * SECOND, t0).unwrap();
        assert!(store.set("c", record("1"), SECOND, t0).is_err());
        assert!(store.set("b", record("123456"), SECOND, t0).is_err());
        assert_eq!(store.get("b", t0), Some(record("12345")));
        store.set("c", record("1"), SECOND, t0 + SECOND).unwrap();
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn absurd_ttls_are_capped_instead_of_overflowing() {
        let mut store = SessionStore::new(10, 1000);
        let t0 = Instant::now();
        store.set("a", record("x"), Duration::MAX, t0).unwrap();
        assert_eq!(store.get("a", t0 + MAX_TTL / 2), Some(record("x")));
    }
}
