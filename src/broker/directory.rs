//! The session directory: one entry per live session, cluster-wide, in the broker's store, and
//! the session events its edges publish.
//!
//! An entry is the session's presence (`sessionId`, `sessionData`, `whitelist`, `worker`,
//! `connected`, `created`, as a JSON object) with a lease. The worker holding a connected
//! session renews its lease; when the connection goes away the entry is stored once more with
//! `connected: false` and a lease of `sessions.resume_grace`. An entry is made and removed only
//! by the broker's own atomic steps, and each of those steps publishes the event with it on
//! [`EVENTS_CHANNEL`] (through the publication log when history is on):
//!
//! - [`PutEntry`] with `open`: a new entry publishes `session.opened`;
//! - [`EndEntry`]: the entry, if still there, is removed and `session.closed` published (the
//!   client said goodbye, a kick);
//! - a lease that ran out (the session was not resumed in time, or the worker holding it died):
//!   the broker's reaper removes the entry and publishes `session.closed` with reason
//!   `expired`. In Redis every process reaps; the step is atomic, so each entry is reaped once.
//!
//! So there is exactly one `session.closed` per `session.opened`, whichever process ends the
//! session, and a session that moves between workers (a staged restart, a resume after a
//! network cut) keeps its entry and emits nothing.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use super::BrokerError;

/// The broker topic session events are published on.
pub const EVENTS_CHANNEL: &str = "rohrpost.events";
/// How often a broker removes the entries whose lease ran out.
pub const REAP_EVERY: Duration = Duration::from_millis(250);
/// The most entries one reaping step removes (the next step takes the rest).
pub const REAP_BATCH: usize = 500;

/// What [`PutEntry`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The entry is new: `session.opened` was published.
    Opened,
    /// The entry was there and is replaced, its lease renewed.
    Refreshed,
    /// Not `open`, and the entry is gone: the session ended for good (kicked, or its lease ran
    /// out). Nothing was written.
    Gone,
}

/// Stores a session's entry (a JSON object) with a lease; with `open`, makes it if it is not
/// there (publishing `session.opened`), else only replaces one that is.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Put, BrokerError>")]
pub struct PutEntry {
    pub id: Arc<str>,
    pub entry: Bytes,
    pub lease: Duration,
    pub open: bool,
}

/// Renews the leases of entries that are there; answers the ids of those that are gone.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<Arc<str>>, BrokerError>")]
pub struct TouchEntries {
    pub ids: Vec<Arc<str>>,
    pub lease: Duration,
}

/// Removes a session's entry, publishing `session.closed` with `closing` (JSON members, e.g.
/// `"reason":"kicked"`) spliced in; answers whether the entry was there (and so whether this
/// call ended the session).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<bool, BrokerError>")]
pub struct EndEntry {
    pub id: Arc<str>,
    pub closing: String,
}

/// Every entry of the directory.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Vec<Bytes>, BrokerError>")]
pub struct ListEntries;

/// One session's entry, if it is there.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<Bytes>, BrokerError>")]
pub struct GetEntry {
    pub id: Arc<str>,
}

/// A handle on the session directory of any broker.
#[derive(Clone)]
pub struct Directory {
    pub put: Recipient<PutEntry>,
    pub touch: Recipient<TouchEntries>,
    pub end: Recipient<EndEntry>,
    pub list: Recipient<ListEntries>,
    pub get: Recipient<GetEntry>,
}

impl Directory {
    pub fn of<A>(addr: &Addr<A>) -> Directory
    where
        A: Actor<Context = Context<A>>
            + Handler<PutEntry>
            + Handler<TouchEntries>
            + Handler<EndEntry>
            + Handler<ListEntries>
            + Handler<GetEntry>,
    {
        Directory {
            put: addr.clone().recipient(),
            touch: addr.clone().recipient(),
            end: addr.clone().recipient(),
            list: addr.clone().recipient(),
            get: addr.clone().recipient(),
        }
    }
}

/// The `closing` members of a `session.closed` event: its reason and, if any, a detail (a
/// kick's reason), JSON-escaped.
pub fn closing(reason: &str, detail: Option<&str>) -> String {
    let mut members = format!("\"reason\":{}", serde_json::Value::from(reason));
    if let Some(detail) = detail {
        members.push_str(&format!(",\"detail\":{}", serde_json::Value::from(detail)));
    }
    members
}

/// A session event: `{"event":<kind>,<extra,>"time":<time_ms>,` and then the members of
/// `entry` (a JSON object). The Redis broker builds the same text in Lua.
pub fn event(kind: &str, extra: Option<&str>, time_ms: u64, entry: &[u8]) -> Bytes {
    let extra = extra.map(|e| format!("{e},")).unwrap_or_default();
    prepend(
        &format!("\"event\":\"{kind}\",{extra}\"time\":{time_ms}"),
        entry,
    )
}

/// The JSON object `object` with `members` (JSON object members, without braces) before its
/// own: `{<members>,<the object's members>}`.
pub fn prepend(members: &str, object: &[u8]) -> Bytes {
    let body = object
        .iter()
        .position(|&b| b == b'{')
        .map_or(&b"}"[..], |at| &object[at + 1..]);
    let mut out = Vec::with_capacity(object.len() + members.len() + 2);
    out.push(b'{');
    out.extend_from_slice(members.as_bytes());
    if body.iter().any(|b| !b.is_ascii_whitespace() && *b != b'}') {
        out.push(b',');
    }
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_splice_the_entry_after_their_own_members() {
        let entry = br#"{"sessionId":"s1","sessionData":{"name":"ann"}}"#;
        let opened = event("session.opened", None, 7, entry);
        let value: serde_json::Value = serde_json::from_slice(&opened).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"event": "session.opened", "time": 7, "sessionId": "s1",
                "sessionData": {"name": "ann"}})
        );
        let closed = event(
            "session.closed",
            Some(&closing("kicked", Some("a \"b\""))),
            9,
            entry,
        );
        let value: serde_json::Value = serde_json::from_slice(&closed).unwrap();
        assert_eq!(value["reason"], "kicked");
        assert_eq!(value["detail"], "a \"b\"");
        assert_eq!(value["sessionId"], "s1");
    }

    #[test]
    fn an_empty_entry_still_makes_an_object() {
        let value: serde_json::Value =
            serde_json::from_slice(&event("session.opened", None, 1, b"{ }")).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"event": "session.opened", "time": 1})
        );
    }
}
