//! The server's session directory requests, and its reaper: each edge of an entry (made,
//! removed, expired) publishes its session event in the same actor step, so no other request
//! comes between the change and the event.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{check_body, check_name, LocalBrokerServer};
use crate::broker::directory::{closing, event, now_ms, Put, EVENTS_CHANNEL, REAP_BATCH};
use crate::broker::local::wire::{PutOutcome, Request, Response};

impl LocalBrokerServer {
    /// Answers a directory request (every other request is the caller's).
    pub(super) fn answer_directory(
        &mut self,
        request: Request,
        body: Bytes,
    ) -> Result<(Response, Bytes), String> {
        let none = Bytes::new();
        let now = Instant::now();
        match request {
            Request::PutEntry {
                id,
                session,
                lease_ms,
                open,
            } => {
                check_name("session id", &session)?;
                check_body(&body)?;
                let lease = Duration::from_millis(lease_ms.max(1));
                let put = self
                    .directory
                    .put(&session, body.clone(), lease, open, now)?;
                if put == Put::Opened {
                    self.publish_event(event("session.opened", None, now_ms(), &body));
                }
                let outcome = match put {
                    Put::Opened => PutOutcome::Opened,
                    Put::Refreshed => PutOutcome::Refreshed,
                    Put::Gone => PutOutcome::Gone,
                };
                Ok((Response::Put { id, outcome }, none))
            }
            Request::TouchEntries {
                id,
                sessions,
                lease_ms,
            } => {
                let lease = Duration::from_millis(lease_ms.max(1));
                let gone = self.directory.touch(&sessions, lease, now);
                Ok((Response::Gone { id, sessions: gone }, none))
            }
            Request::EndEntry {
                id,
                session,
                closing,
            } => {
                check_name("closing", &closing)?;
                let ended = match self.directory.remove(&session) {
                    Some(entry) => {
                        let closed = event("session.closed", Some(&closing), now_ms(), &entry);
                        self.publish_event(closed);
                        true
                    }
                    None => false,
                };
                Ok((Response::Ended { id, ended }, none))
            }
            Request::ListEntries { id } => {
                let mut lengths = Vec::with_capacity(self.directory.len());
                let mut all = Vec::new();
                for entry in self.directory.all() {
                    lengths.push(entry.len());
                    all.extend_from_slice(entry);
                }
                Ok((Response::Entries { id, lengths }, Bytes::from(all)))
            }
            Request::GetEntry { id, session } => Ok(match self.directory.get(&session) {
                Some(entry) => (Response::Record { id, found: true }, entry),
                None => (Response::Record { id, found: false }, none),
            }),
            other => Err(format!("not a directory request: {other:?}")),
        }
    }

    /// Removes the entries whose lease ended and publishes their `session.closed`.
    pub(super) fn reap(&mut self, now: Instant) {
        let expired = self.directory.expired(now, REAP_BATCH);
        if expired.is_empty() {
            return;
        }
        let members = closing("expired", None);
        for (id, entry) in &expired {
            log::debug!("local broker session expired session={id}");
            self.publish_event(event("session.closed", Some(&members), now_ms(), entry));
        }
    }

    /// Publishes a session event, through the log when history is on.
    fn publish_event(&mut self, payload: Bytes) {
        if self.log.is_some() {
            if let Err(e) = self.publish_logged(EVENTS_CHANNEL, &payload) {
                log::warn!("session event not logged error={e}");
            }
        } else {
            self.publish(EVENTS_CHANNEL, &payload, None);
        }
    }
}
