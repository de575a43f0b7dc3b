//! A session's entry in the session directory ([`crate::broker::directory`]): what it holds,
//! when it is stored, and how a session ends for good — a goodbye from the client, a kick, or
//! its connection gone for longer than `sessions.resume_grace` (the broker's reaper).
//!
//! A connected session's entry is stored with `open`, so a session whose entry went missing
//! while it is live (a broker that lost its data, or was out of reach for longer than the
//! grace so that its lease ran out) is listed again, with a new `session.opened`: every
//! `session.opened` still has exactly one `session.closed`. Only the store after the
//! connection went away does not make an entry.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use log::{debug, info};

use super::{Ctx, Established, Phase, RohrpostSession};
use crate::broker::directory::{closing, EndEntry, Put, PutEntry};
use crate::leases::{EntryGone, Hold, Release};
use crate::sockjs::Session;

/// A digest of a directory entry, to tell whether it changed since it was stored (a session
/// keeps this, not the entry).
pub(super) fn digest(entry: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    entry.hash(&mut hasher);
    hasher.finish()
}

/// Close code and reason for a session kicked by `DELETE /api/sessions/{id}` (the reason given
/// there replaces this one).
pub const KICKED: (u16, &str) = (4005, "Session closed by the server");
/// Close code and reason after the client's goodbye.
pub const GOODBYE: (u16, &str) = (1000, "Goodbye");

impl RohrpostSession {
    /// The session's directory entry, as stored.
    pub(super) fn entry(&self, session: &Established, connected: bool) -> Bytes {
        let entry = serde_json::json!({
            "sessionId": &*session.id,
            "sessionData": &session.data,
            "whitelist": session.whitelist.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "worker": &*self.services.worker,
            "connected": connected,
            "created": session.created,
        });
        Bytes::from(entry.to_string())
    }

    /// The entry stored with the record while connected (see the module docs).
    pub(super) fn put_message(&self, session: &Established) -> PutEntry {
        PutEntry {
            id: session.id.clone(),
            entry: self.entry(session, true),
            lease: self.settings().resume_grace,
            open: true,
        }
    }

    /// What a store of the entry answered.
    pub(super) fn listed(put: Put, session: &Established) {
        match put {
            Put::Opened => info!("session listed session={}", session.id),
            Put::Refreshed => {}
            Put::Gone => debug!("session entry gone session={}", session.id),
        }
    }

    /// Renews the session's lease from now on, with the worker's others.
    pub(super) fn hold_lease(&self, id: &Arc<str>, s: &mut Ctx<'_>) {
        self.services.leases.do_send(Hold {
            id: id.clone(),
            key: self.key,
            session: s.context().address().recipient(),
        });
    }

    /// The connection went away: the lease is no longer renewed here. Unless the session ended
    /// for good or another connection has it, its entry is stored once more as disconnected,
    /// with a lease of the grace: resumed by then, it goes on; else the reaper ends it.
    pub(super) fn unlisted(&self, session: &Established) {
        self.services.leases.do_send(Release {
            id: session.id.clone(),
            key: self.key,
        });
        if self.taken_over || self.ended {
            return;
        }
        self.services.broker.directory.put.do_send(PutEntry {
            id: session.id.clone(),
            entry: self.entry(session, false),
            lease: self.settings().resume_grace,
            open: false,
        });
    }

    /// The client said goodbye: the session ends for good now.
    pub(super) fn bye(&mut self, s: &mut Ctx<'_>) {
        let Phase::Established(session) = &self.phase else {
            return;
        };
        info!("session ended by its client session={}", session.id);
        self.end(session.id.clone(), closing("closed", None));
        s.close(GOODBYE.0, GOODBYE.1);
    }

    /// The session was kicked: it closes and may not resume. Its entry was removed by whoever
    /// kicked it; it is removed again in case this session listed itself again meanwhile.
    pub(super) fn kicked(&mut self, reason: &str, s: &mut Ctx<'_>) {
        let Phase::Established(session) = &self.phase else {
            return;
        };
        info!("session kicked session={} reason={reason:?}", session.id);
        let detail = (!reason.is_empty()).then_some(reason);
        self.end(session.id.clone(), closing("kicked", detail));
        s.close(KICKED.0, detail.unwrap_or(KICKED.1));
    }

    /// Removes the entry (publishing `session.closed` if it was there); the session stores no
    /// entry from now on.
    fn end(&mut self, id: Arc<str>, closing: String) {
        self.ended = true;
        let end = self
            .services
            .broker
            .directory
            .end
            .send(EndEntry { id, closing });
        actix_rt::spawn(async move {
            match end.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => info!("session entry not removed error={e}"),
                Err(e) => info!("session entry not removed error={e}"),
            }
        });
    }
}

/// The lease keeper found the entry gone while the session is connected: list it again.
impl Handler<EntryGone> for Session<RohrpostSession> {
    type Result = ();

    fn handle(&mut self, _msg: EntryGone, ctx: &mut Context<Self>) {
        self.with_handler(ctx, |h, s| {
            if h.ended {
                return;
            }
            if let Phase::Established(session) = &mut h.phase {
                session.listed = None;
            }
            h.save(s);
        });
    }
}
