//! Many machines: the cluster directory of workers, shared through Redis.
//!
//! With `cluster.enabled`, every supervised worker announces itself once a second in the
//! directory (its SockJS URL, open sessions, whether it drains, when it was last seen), and
//! `/connect` on any machine picks the least-loaded worker of the whole cluster. An entry not
//! refreshed for [`STALE_AFTER`] belongs to a worker that died: it is ignored and removed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How often a worker refreshes its entry.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// How old an entry may be before its worker counts as gone.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

/// One worker in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerEntry {
    pub url: String,
    pub sessions: usize,
    pub draining: bool,
    /// Unix time in milliseconds of the last announcement.
    pub seen_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl WorkerEntry {
    pub fn is_stale(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.seen_ms) > STALE_AFTER.as_millis() as u64
    }
}

/// Parses directory entries; returns the usable ones and the URLs of stale or unreadable ones.
pub fn read_directory(
    raw: Vec<(String, bytes::Bytes)>,
    now_ms: u64,
) -> (Vec<WorkerEntry>, Vec<String>) {
    let mut live = Vec::new();
    let mut stale = Vec::new();
    for (url, entry) in raw {
        match serde_json::from_slice::<WorkerEntry>(&entry) {
            Ok(e) if !e.is_stale(now_ms) => live.push(e),
            _ => stale.push(url),
        }
    }
    (live, stale)
}

/// The least-loaded worker that is not draining; a random one among equally loaded ones, so
/// that machines answering `/connect` between two announcements do not all pick the same.
pub fn pick(entries: &[WorkerEntry]) -> Option<&WorkerEntry> {
    let open = entries.iter().filter(|e| !e.draining);
    let least = open.clone().map(|e| e.sessions).min()?;
    let tied: Vec<&WorkerEntry> = open.filter(|e| e.sessions == least).collect();
    tied.get(rand::random_range(0..tied.len())).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, sessions: usize, draining: bool, seen_ms: u64) -> WorkerEntry {
        WorkerEntry {
            url: url.into(),
            sessions,
            draining,
            seen_ms,
        }
    }

    #[test]
    fn least_loaded_non_draining_worker_is_picked() {
        let entries = vec![
            entry("a", 5, false, 0),
            entry("b", 1, true, 0),
            entry("c", 2, false, 0),
        ];
        assert_eq!(pick(&entries).map(|e| e.url.as_str()), Some("c"));
        assert_eq!(pick(&[entry("b", 1, true, 0)]), None);
    }

    #[test]
    fn stale_and_unreadable_entries_are_set_aside() {
        let now = 100_000;
        let fresh = serde_json::to_vec(&entry("a", 0, false, now - 500)).unwrap();
        let old = serde_json::to_vec(&entry("b", 0, false, now - 10_000)).unwrap();
        let raw = vec![
            ("a".to_string(), fresh.into()),
            ("b".to_string(), old.into()),
            ("c".to_string(), bytes::Bytes::from_static(b"garbage")),
        ];
        let (live, stale) = read_directory(raw, now);
        assert_eq!(live.len(), 1);
        assert_eq!(stale, vec!["b".to_string(), "c".to_string()]);
    }
}
