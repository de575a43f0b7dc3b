//! The worker's lease keeper: renews the directory leases of the sessions connected here.
//!
//! Each connected session's entry in the session directory ([`crate::broker::directory`]) has
//! a lease of `sessions.resume_grace`; [`Leases`] renews all of this worker's in one call every
//! quarter of it, so a worker's cost is one broker command per tick however many sessions it
//! holds. An entry found gone (the session was kicked, or the broker was out of reach for
//! longer than the grace and another process ended it) ends its session here too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{debug, info};

use crate::broker::directory::{Directory, TouchEntries};

/// The shortest pause between renewals.
const MIN_TICK: Duration = Duration::from_millis(100);

/// Told to a session whose directory entry is gone: it ended for good elsewhere.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct EntryGone;

/// A session connected here: renew its lease until [`Release`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Hold {
    pub id: Arc<str>,
    /// The connection's key: a release by an older connection of the session does not count.
    pub key: u64,
    pub session: Recipient<EntryGone>,
}

/// The connection `key` of session `id` is gone from here.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Release {
    pub id: Arc<str>,
    pub key: u64,
}

/// See the module docs.
pub struct Leases {
    directory: Directory,
    lease: Duration,
    held: HashMap<Arc<str>, (u64, Recipient<EntryGone>)>,
    /// A renewal is under way: the next tick waits for it.
    busy: bool,
}

impl Leases {
    pub fn new(directory: Directory, lease: Duration) -> Leases {
        Leases {
            directory,
            lease,
            held: HashMap::new(),
            busy: false,
        }
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.held.is_empty() {
            return;
        }
        self.busy = true;
        let ids: Vec<Arc<str>> = self.held.keys().cloned().collect();
        let touch = self.directory.touch.send(TouchEntries {
            ids,
            lease: self.lease,
        });
        ctx.spawn(
            actix::fut::wrap_future(touch).map(|answer, act: &mut Leases, _ctx| {
                act.busy = false;
                match answer {
                    Ok(Ok(gone)) => {
                        for id in gone {
                            if let Some((_, session)) = act.held.remove(&id) {
                                info!("session entry gone; ending the session session={id}");
                                session.do_send(EntryGone);
                            }
                        }
                    }
                    Ok(Err(e)) => debug!("session leases not renewed error={e}"),
                    Err(e) => debug!("session leases not renewed error={e}"),
                }
            }),
        );
    }
}

impl Actor for Leases {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let tick = (self.lease / 4).max(MIN_TICK);
        ctx.run_interval(tick, |act, ctx| act.renew(ctx));
    }
}

impl Handler<Hold> for Leases {
    type Result = ();

    fn handle(&mut self, msg: Hold, _ctx: &mut Context<Self>) {
        self.held.insert(msg.id, (msg.key, msg.session));
    }
}

impl Handler<Release> for Leases {
    type Result = ();

    fn handle(&mut self, msg: Release, _ctx: &mut Context<Self>) {
        if self
            .held
            .get(&msg.id)
            .is_some_and(|(key, _)| *key == msg.key)
        {
            self.held.remove(&msg.id);
        }
    }
}
