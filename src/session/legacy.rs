//! The 0.x side of a Rohrpost session (legacy mode): which record a 0.x session starts from,
//! the original server's form of its record written beside Rohrpost's, and which client a
//! session speaks to when a drain asks.
//!
//! During a rolling migration on one Redis, a 0.x client may move between 0.x servers (which
//! read and write `session:<id>` hashes) and Rohrpost (which keeps `rohrpost:session:<id>`
//! records, and writes the hash too). A 0.x session starts from Rohrpost's record unless the
//! hash no longer says what Rohrpost last wrote there: then a 0.x server changed it since, and
//! the hash is the newer one. Without a record of Rohrpost's, the hash is all there is.

use log::{debug, info};

use super::{Established, Phase, Record, RohrpostSession};
use crate::broker::{BrokerError, StoreLegacySession};
use crate::legacy::record::LegacyRecord;
use crate::topics::Pattern;

/// The answer to a `LoadLegacySession` for session `id`: the record, if there is one (a failure
/// is logged, and the session goes on without it).
pub(super) fn loaded(
    id: &str,
    answer: Result<Result<Option<LegacyRecord>, BrokerError>, actix::MailboxError>,
) -> Option<LegacyRecord> {
    let error = match answer {
        Ok(Ok(record)) => return record,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    info!("0.x session record not loaded session={id} error={error}");
    None
}

/// The record a 0.x session starts from: `ours` (Rohrpost's) unless `theirs` (the original
/// server's) gives another whitelist or data than ours would have written, or ours is missing;
/// a record from theirs has `default` as its whitelist where theirs has none, as the original's.
pub(super) fn starting_record(
    ours: Option<Record>,
    theirs: Option<LegacyRecord>,
    default: &[Pattern],
) -> Option<Record> {
    let Some(theirs) = theirs else { return ours };
    if let Some(ours) = ours {
        if ours.legacy().same_state(&theirs) {
            return Some(ours);
        }
    }
    Some(Record::from_legacy(&theirs, default))
}

impl Record {
    /// The original server's form of this record.
    fn legacy(&self) -> LegacyRecord {
        let whitelist = self.whitelist.iter().map(String::as_str);
        LegacyRecord::of(whitelist, &self.data, self.created.saturating_mul(1000))
    }

    /// A record from the original server's, `default` as the whitelist where it has none.
    fn from_legacy(theirs: &LegacyRecord, default: &[Pattern]) -> Record {
        Record {
            whitelist: (theirs.patterns(default).iter())
                .map(ToString::to_string)
                .collect(),
            data: theirs.data(),
            created: theirs
                .created_ms
                .map_or_else(super::unix_now, |ms| ms / 1000),
            token: None,
        }
    }
}

impl RohrpostSession {
    /// Writes a 0.x session's record in the original server's form too, when the broker keeps
    /// those (best effort: Rohrpost's own record is the one retried).
    pub(super) fn store_legacy(&self, session: &Established) {
        let Some(store) = (self.services.broker.legacy.as_ref()).filter(|_| session.legacy) else {
            return;
        };
        let stored = store.store.send(StoreLegacySession {
            id: session.id.clone(),
            record: session.record().legacy(),
            ttl: self.settings().ttl,
        });
        let id = session.id.clone();
        actix_rt::spawn(async move {
            if let Ok(Err(e)) = stored.await {
                debug!("0.x session record not stored session={id} error={e}");
            }
        });
    }

    /// Whether the session's client is a 0.x one, or may be one: in legacy mode, a client that
    /// has not said hello yet.
    pub(super) fn speaks_legacy(&self) -> bool {
        match &self.phase {
            Phase::AwaitingHello => self.settings().legacy_handshake,
            Phase::Resuming { legacy, .. } | Phase::Admitting { legacy, .. } => *legacy,
            Phase::Joining { start, .. } => start.legacy,
            Phase::Established(session) => session.legacy,
            Phase::Closed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ours(whitelist: &[&str], data: serde_json::Value) -> Record {
        Record {
            whitelist: whitelist.iter().map(|p| p.to_string()).collect(),
            data,
            created: 1_700_000_000,
            token: None,
        }
    }

    fn default() -> Vec<Pattern> {
        vec![Pattern::parse("anonym.*", 64).unwrap()]
    }

    #[test]
    fn without_the_originals_record_ours_is_taken() {
        let record = starting_record(Some(ours(&["a.*"], json!({"n": 1}))), None, &default());
        assert_eq!(record.unwrap().data, json!({"n": 1}));
        assert!(starting_record(None, None, &default()).is_none());
    }

    #[test]
    fn without_ours_the_originals_is_taken() {
        let theirs = LegacyRecord::from_fields([
            ("whitelist".to_owned(), "vip.*".to_owned()),
            ("data_name".to_owned(), "ada".to_owned()),
            ("created".to_owned(), "1371024000123".to_owned()),
        ]);
        let record = starting_record(None, theirs, &default()).unwrap();
        assert_eq!(record.whitelist, ["vip.*"]);
        assert_eq!(record.data, json!({"name": "ada"}));
        assert_eq!(record.created, 1_371_024_000);
    }

    #[test]
    fn ours_is_kept_while_the_original_says_what_we_wrote() {
        // Data keeps its JSON types in ours; the original's form has strings only.
        let record = ours(&["a.*", "b"], json!({"n": 1, "name": "ada"}));
        let theirs = record.legacy();
        assert_eq!(theirs.data().get("n"), Some(&json!("1")));
        let chosen = starting_record(Some(record), Some(theirs), &default()).unwrap();
        assert_eq!(chosen.data, json!({"n": 1, "name": "ada"}));
    }

    #[test]
    fn the_originals_record_wins_once_a_0x_server_changed_it() {
        let record = ours(&["a.*"], json!({"name": "ada"}));
        let mut theirs = record.legacy();
        theirs.whitelist = Some("a.*|members.*".to_owned());
        let chosen = starting_record(Some(record), Some(theirs), &default()).unwrap();
        assert_eq!(chosen.whitelist, ["a.*", "members.*"]);
        assert_eq!(chosen.data, json!({"name": "ada"}));
    }
}
