//! The embedded broker's session directory: entries with leases, bounded in count and bytes
//! (see [`crate::broker::directory`] for what the entries and their edges mean).
//!
//! Like the session store, it keeps a lease-ordered index, so taking the expired entries costs
//! only those entries however many are held.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::sessions::MAX_TTL;
use crate::broker::directory::Put;

struct Entry {
    data: Bytes,
    until: Instant,
}

/// Session entries by id; see the module docs.
pub(super) struct DirectoryStore {
    entries: HashMap<Arc<str>, Entry>,
    /// Every entry's (lease end, id), earliest first.
    leases: BTreeSet<(Instant, Arc<str>)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl DirectoryStore {
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> DirectoryStore {
        DirectoryStore {
            entries: HashMap::new(),
            leases: BTreeSet::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Stores `data` for `id` with a lease to `now + lease`: a new entry only with `open`.
    pub(super) fn put(
        &mut self,
        id: &str,
        data: Bytes,
        lease: Duration,
        open: bool,
        now: Instant,
    ) -> Result<Put, String> {
        let old_len = self.entries.get(id).map(|e| e.data.len());
        if old_len.is_none() && !open {
            return Ok(Put::Gone);
        }
        let entries = self.entries.len() + usize::from(old_len.is_none());
        let bytes = self.bytes - old_len.unwrap_or(0) + data.len();
        if entries > self.max_entries || bytes > self.max_bytes {
            return Err(format!(
                "session directory full: {} entries of {} bytes held (limits {} entries, {} bytes)",
                self.entries.len(),
                self.bytes,
                self.max_entries,
                self.max_bytes
            ));
        }
        let id: Arc<str> = match self.entries.remove_entry(id) {
            Some((id, old)) => {
                self.bytes -= old.data.len();
                self.leases.remove(&(old.until, id.clone()));
                id
            }
            None => Arc::from(id),
        };
        let until = now + lease.min(MAX_TTL);
        self.bytes += data.len();
        self.leases.insert((until, id.clone()));
        self.entries.insert(id, Entry { data, until });
        Ok(if old_len.is_some() {
            Put::Refreshed
        } else {
            Put::Opened
        })
    }

    /// Renews the leases of the entries of `ids` that are there; answers the others.
    pub(super) fn touch(&mut self, ids: &[String], lease: Duration, now: Instant) -> Vec<String> {
        let until = now + lease.min(MAX_TTL);
        let mut gone = Vec::new();
        for id in ids {
            match self.entries.get_key_value(id.as_str()) {
                Some((key, entry)) => {
                    let key = key.clone();
                    self.leases.remove(&(entry.until, key.clone()));
                    self.leases.insert((until, key));
                    if let Some(entry) = self.entries.get_mut(id.as_str()) {
                        entry.until = until;
                    }
                }
                None => gone.push(id.clone()),
            }
        }
        gone
    }

    /// Removes `id`'s entry; answers it if it was there.
    pub(super) fn remove(&mut self, id: &str) -> Option<Bytes> {
        let (id, entry) = self.entries.remove_entry(id)?;
        self.bytes -= entry.data.len();
        self.leases.remove(&(entry.until, id));
        Some(entry.data)
    }

    /// Removes up to `max` entries whose lease ended by `now`, earliest first; answers them.
    pub(super) fn expired(&mut self, now: Instant, max: usize) -> Vec<(Arc<str>, Bytes)> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((until, id)) = self.leases.first().cloned() else {
                break;
            };
            if until > now {
                break;
            }
            if let Some(data) = self.remove(&id) {
                out.push((id, data));
            }
        }
        out
    }

    pub(super) fn get(&self, id: &str) -> Option<Bytes> {
        self.entries.get(id).map(|e| e.data.clone())
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &Bytes> {
        self.entries.values().map(|e| &e.data)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn data(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn only_an_open_makes_an_entry_and_only_once() {
        let mut dir = DirectoryStore::new(10, 1000);
        let t0 = Instant::now();
        assert_eq!(dir.put("a", data("1"), SECOND, false, t0), Ok(Put::Gone));
        assert_eq!(dir.put("a", data("1"), SECOND, true, t0), Ok(Put::Opened));
        assert_eq!(
            dir.put("a", data("22"), SECOND, true, t0),
            Ok(Put::Refreshed)
        );
        assert_eq!(
            dir.put("a", data("3"), SECOND, false, t0),
            Ok(Put::Refreshed)
        );
        assert_eq!(dir.get("a"), Some(data("3")));
        assert_eq!((dir.len(), dir.bytes, dir.leases.len()), (1, 1, 1));
    }

    #[test]
    fn leases_end_unless_touched_and_each_entry_expires_once() {
        let mut dir = DirectoryStore::new(10, 1000);
        let t0 = Instant::now();
        dir.put("a", data("1"), SECOND, true, t0).unwrap();
        dir.put("b", data("2"), SECOND, true, t0).unwrap();
        let gone = dir.touch(&["a".into(), "c".into()], 5 * SECOND, t0);
        assert_eq!(gone, ["c"]);
        let expired = dir.expired(t0 + 2 * SECOND, 10);
        assert_eq!(expired.len(), 1);
        assert_eq!(&*expired[0].0, "b");
        assert!(dir.expired(t0 + 2 * SECOND, 10).is_empty());
        assert_eq!(dir.expired(t0 + 6 * SECOND, 10).len(), 1);
        assert_eq!((dir.len(), dir.bytes, dir.leases.len()), (0, 0, 0));
    }

    #[test]
    fn removal_answers_the_entry_once() {
        let mut dir = DirectoryStore::new(10, 1000);
        let t0 = Instant::now();
        dir.put("a", data("x"), SECOND, true, t0).unwrap();
        assert_eq!(dir.remove("a"), Some(data("x")));
        assert_eq!(dir.remove("a"), None);
        assert!(dir.expired(t0 + 2 * SECOND, 10).is_empty());
    }

    #[test]
    fn limits_refuse_new_entries() {
        let mut dir = DirectoryStore::new(1, 10);
        let t0 = Instant::now();
        dir.put("a", data("x"), SECOND, true, t0).unwrap();
        assert!(dir.put("b", data("x"), SECOND, true, t0).is_err());
        assert!(dir.put("a", data("01234567890"), SECOND, true, t0).is_err());
        assert_eq!(dir.get("a"), Some(data("x")));
    }
}
