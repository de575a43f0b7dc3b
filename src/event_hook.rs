//! The session event hook: POSTs the session events of `rohrpost.events` to `hooks.events_url`,
//! in the log's order, run by the supervisor.
//!
//! Each POST carries a batch, `{"events": [...]}` (at most [`BATCH`] events, oldest first); an
//! answer other than 2xx, or none within `hooks.events_timeout`, is retried after 100 ms,
//! doubling to 5 s, up to `hooks.events_attempts` tries, and then the batch is dropped with a
//! `warn` line naming its positions. The next batch waits for the one before, so events reach
//! the hook in order (per session and overall).
//!
//! With several supervisors on one Redis, one of them — whoever holds the lease
//! `rohrpost:events:deliverer` ([`Lead`]) — POSTs; after each batch it stores the position it
//! reached (`rohrpost:events:delivered`), and a supervisor that takes over reads the log from
//! there. So every event is POSTed once unless a leader stops between a POST and storing its
//! position: the next one POSTs that batch again. Each event carries its log position,
//! `rohrpostPos`, for the hook to drop repeats by.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use log::{debug, info, warn};

use crate::broker::directory::{prepend, EVENTS_CHANNEL};
use crate::broker::lead::{GetMark, Lead, Leadership, SetMark};
use crate::broker::log::{Position, ReadLog};
use crate::broker::{backoff, BrokerMessage};
use crate::http_backend::{HttpBackend, Post};

/// The most events one POST carries.
pub const BATCH: usize = 100;
/// The leader's lease; renewed every third of it.
const LEASE: Duration = Duration::from_secs(6);
/// How often a supervisor that does not deliver asks for the lease.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(500);
const LEASE_NAME: &str = "rohrpost:events:deliverer";
const MARK_NAME: &str = "rohrpost:events:delivered";
/// Events held for the hook at most (the oldest are dropped, with a `warn` line, past it).
const MAX_QUEUED: usize = 100_000;

/// What the hook needs.
pub struct EventHookSettings {
    pub url: Arc<str>,
    pub timeout: Duration,
    pub attempts: u32,
}

/// See the module docs.
pub struct EventHook {
    settings: EventHookSettings,
    http: Addr<HttpBackend>,
    /// The broker's leases, when several supervisors may share it; `None`: always the leader.
    leadership: Option<Leadership>,
    read_log: Recipient<ReadLog>,
    /// This supervisor, as the lease names its holder.
    holder: Arc<str>,
    leader: bool,
    /// Taking over: the log is being read from the mark; live events wait here.
    catching_up: Option<Vec<(Option<Position>, Bytes)>>,
    queue: VecDeque<(Option<Position>, Bytes)>,
    /// The newest position queued or delivered.
    last: Option<Position>,
    sending: bool,
    /// Campaign ticks so far.
    ticks: u64,
}

/// An event with its position as its first member, `rohrpostPos` (as live Redis messages have
/// it already).
fn stamped(position: Option<&Position>, payload: &Bytes) -> Bytes {
    let Some(position) = position else {
        return payload.clone();
    };
    if payload.starts_with(b"{\"rohrpostPos\":") {
        return payload.clone();
    }
    prepend(&format!("\"rohrpostPos\":\"{position}\""), payload)
}

/// `{"events": [...]}` of `events`.
fn batch_body<'a>(events: impl Iterator<Item = &'a Bytes>) -> Bytes {
    let mut body = b"{\"events\":[".to_vec();
    for (i, event) in events.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

impl EventHook {
    pub fn new(
        settings: EventHookSettings,
        http: Addr<HttpBackend>,
        leadership: Option<Leadership>,
        read_log: Recipient<ReadLog>,
    ) -> EventHook {
        EventHook {
            settings,
            http,
            leader: leadership.is_none(),
            leadership,
            read_log,
            holder: Arc::from(format!(
                "{}:{:016x}",
                std::process::id(),
                rand::random::<u64>()
            )),
            catching_up: None,
            queue: VecDeque::new(),
            last: None,
            sending: false,
            ticks: 0,
        }
    }

    /// Queues an event unless it is one queued or delivered already.
    fn push(&mut self, position: Option<Position>, payload: Bytes) {
        if let (Some(p), Some(last)) = (&position, &self.last) {
            if p.not_after(last) {
                return;
            }
        }
        if position.is_some() {
            self.last = position.clone();
        }
        if self.queue.len() >= MAX_QUEUED {
            if let Some((p, _)) = self.queue.pop_front() {
                warn!("session event dropped for the hook (too many waiting) pos={p:?}");
            }
        }
        let event = stamped(position.as_ref(), &payload);
        self.queue.push_back((position, event));
    }

    /// POSTs the next batch, unless one is under way.
    fn send_next(&mut self, ctx: &mut Context<Self>) {
        if self.sending || !self.leader || self.queue.is_empty() {
            return;
        }
        self.sending = true;
        let count = self.queue.len().min(BATCH);
        let body = batch_body(self.queue.iter().take(count).map(|(_, e)| e));
        let newest = self
            .queue
            .iter()
            .take(count)
            .rev()
            .find_map(|(p, _)| p.clone());
        let post = Post {
            url: self.settings.url.clone(),
            body,
            timeout: self.settings.timeout,
        };
        let (http, attempts) = (self.http.clone(), self.settings.attempts);
        let delivery = async move {
            for attempt in 0..attempts {
                match http.send(post.clone()).await {
                    Ok(Ok(reply)) if (200..300).contains(&reply.status) => return Ok(attempt + 1),
                    Ok(Ok(reply)) => debug!("event hook answered status={}", reply.status),
                    Ok(Err(e)) => debug!("event hook not reached error={e}"),
                    Err(e) => debug!("event hook not reached error={e}"),
                }
                if attempt + 1 < attempts {
                    tokio::time::sleep(backoff(attempt, rand::random::<f64>())).await;
                }
            }
            Err(attempts)
        };
        ctx.spawn(actix::fut::wrap_future(delivery).map(
            move |outcome, act: &mut EventHook, ctx| {
                act.sending = false;
                let batch: Vec<_> = act.queue.drain(..count.min(act.queue.len())).collect();
                match outcome {
                    Ok(tries) => debug!("session events delivered count={count} tries={tries}"),
                    Err(tries) => warn!(
                        "session events dropped: the hook did not take them count={count} tries={tries} first={:?} last={:?}",
                        batch.first().and_then(|(p, _)| p.as_ref().map(|p| p.to_string())),
                        newest.as_ref().map(|p| p.to_string()),
                    ),
                }
                if let (Some(leadership), Some(newest)) = (&act.leadership, newest) {
                    leadership.set.do_send(SetMark {
                        name: Arc::from(MARK_NAME),
                        value: newest.to_string(),
                    });
                }
                act.send_next(ctx);
            },
        ));
    }

    /// Takes or keeps the lease; on taking it, reads the log from the last leader's mark.
    fn campaign(&mut self, ctx: &mut Context<Self>) {
        let Some(leadership) = self.leadership.clone() else {
            return;
        };
        let lead = leadership.lead.send(Lead {
            name: Arc::from(LEASE_NAME),
            holder: self.holder.clone(),
            ttl: LEASE,
        });
        ctx.spawn(
            actix::fut::wrap_future(lead).map(move |answer, act: &mut EventHook, ctx| {
                let leads = matches!(answer, Ok(Ok(true)));
                if leads && !act.leader {
                    info!("session event hook: this supervisor delivers");
                    act.leader = true;
                    act.take_over(leadership, ctx);
                } else if !leads && act.leader {
                    info!("session event hook: another supervisor delivers");
                    act.leader = false;
                    act.queue.clear();
                    act.last = None;
                }
            }),
        );
    }

    /// Reads what the log holds after the mark and queues its events.
    fn take_over(&mut self, leadership: Leadership, ctx: &mut Context<Self>) {
        self.catching_up = Some(Vec::new());
        self.queue.clear();
        self.last = None;
        let read_log = self.read_log.clone();
        let read = async move {
            let mark = match leadership
                .get
                .send(GetMark {
                    name: Arc::from(MARK_NAME),
                })
                .await
            {
                Ok(Ok(mark)) => mark.and_then(|m| Position::parse(&m)),
                _ => None,
            };
            // No mark: no supervisor delivered yet, so everything the log holds (a position
            // of no epoch reads the whole log).
            let after = mark.clone().or_else(|| {
                Some(Position {
                    epoch: Arc::from("none"),
                    seq: 0,
                })
            });
            let read = read_log.send(ReadLog { after }).await;
            (mark, read)
        };
        ctx.spawn(actix::fut::wrap_future(read).map(
            |(mark, read), act: &mut EventHook, ctx| {
                let early = act.catching_up.take().unwrap_or_default();
                match read {
                    Ok(Ok(read)) => {
                        if !read.complete && mark.is_some() {
                            warn!("session events missed by the hook: the log no longer holds them all");
                        }
                        for entry in read.entries {
                            if &*entry.channel == EVENTS_CHANNEL {
                                let position = Position {
                                    epoch: read.epoch.clone(),
                                    seq: entry.seq,
                                };
                                act.push(Some(position), entry.payload);
                            }
                        }
                    }
                    Ok(Err(e)) => warn!("log not read for the event hook error={e}"),
                    Err(e) => warn!("log not read for the event hook error={e}"),
                }
                for (position, payload) in early {
                    act.push(position, payload);
                }
                act.send_next(ctx);
            },
        ));
    }
}

impl Actor for EventHook {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1 << 16);
        if self.leadership.is_some() {
            self.campaign(ctx);
            // The leader keeps its lease every third of it; the others ask more often, so that
            // one takes over soon after a leader is gone (or, at start, the broker is up).
            ctx.run_interval(CAMPAIGN_EVERY, |act, ctx| {
                act.ticks += 1;
                if !act.leader
                    || act.ticks % (LEASE.as_millis() / 3 / CAMPAIGN_EVERY.as_millis()) as u64 == 0
                {
                    act.campaign(ctx);
                }
            });
        }
    }
}

/// Events arrive as messages on the supervisor's subscription to `rohrpost.events`.
impl Handler<BrokerMessage> for EventHook {
    type Result = ();

    fn handle(&mut self, msg: BrokerMessage, ctx: &mut Context<Self>) {
        if &*msg.channel != EVENTS_CHANNEL || !self.leader {
            return;
        }
        if let Some(early) = &mut self.catching_up {
            early.push((msg.position, msg.payload));
            return;
        }
        self.push(msg.position, msg.payload);
        self.send_next(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_position_first_once() {
        let pos = Position::parse("ab:7").unwrap();
        let raw = Bytes::from_static(br#"{"event":"session.opened"}"#);
        let once = stamped(Some(&pos), &raw);
        assert_eq!(
            &once[..],
            br#"{"rohrpostPos":"ab:7","event":"session.opened"}"#
        );
        assert_eq!(stamped(Some(&pos), &once), once);
        assert_eq!(stamped(None, &raw), raw);
        assert_eq!(
            &stamped(Some(&pos), &Bytes::from_static(b"{}"))[..],
            br#"{"rohrpostPos":"ab:7"}"#
        );
    }

    #[test]
    fn a_batch_is_one_json_object() {
        let events = [
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from_static(b"{\"b\":2}"),
        ];
        let body: serde_json::Value = serde_json::from_slice(&batch_body(events.iter())).unwrap();
        assert_eq!(body, serde_json::json!({"events": [{"a": 1}, {"b": 2}]}));
    }
}
