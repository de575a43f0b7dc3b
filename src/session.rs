//! The Rohrpost session: what a SockJS session does in a worker.
//!
//! [`RohrpostSession`] is the [`SessionHandler`] hung on each SockJS session actor. It runs the
//! handshake (new session, resume with a token, or the legacy 0.x form), holds the session's
//! whitelist and data, checks every client message against the whitelist and passes it to the
//! HTTP backend or the broker, and applies backend messages ([`Deliver`]) that the topic router
//! hands it: whitelist changes, session data, and data for the client.
//!
//! The session record (whitelist, data, created) lives in the broker's store with a TTL that is
//! refreshed while the session is connected, so the session can be resumed on any worker. What
//! differs for a 0.x session (legacy mode), the original server's form of its record included,
//! is in [`legacy`].
//!
//! Between the hello and the join, [`auth`] admits the session (its token, the connect hook)
//! or refuses it, and later closes it when its token expires unless refreshed.

mod auth;
mod legacy;
mod presence;

pub use presence::{GOODBYE, KICKED};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use log::{debug, info};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::broker::directory::TouchEntries;
use crate::broker::log::{Position, PublishLogged};
use crate::broker::{
    Broker, BrokerError, Cluster, LinkRestored, LoadLegacySession, LoadSession, Publish,
    StoreSession,
};
use crate::config::{Config, HttpTopicRule};
use crate::http_backend::{rule_for, HttpBackend, HttpCall};
use crate::leases::Leases;
use crate::metrics::{self, DropReason, Path};
use crate::pending;
use crate::protocol::{
    ack, envelope, parse_bye, parse_envelope, parse_hello, parse_refresh, BackendMessage,
    ClientError, ClientPayload, ErrorCode, Handshake, Hello, ACK_TOPIC, DIRECT_PREFIX, ERROR_TOPIC,
    POSITION_TOPIC, WELCOME_TOPIC,
};
use crate::rate_limit::{TokenBucket, Verdict};
use crate::recovery::{CatchUp, CatchUpAnswer, Recovery};
use crate::resume::{new_session_id, TokenKey};
use crate::router::{Deliver, Join, Leave, Progress, Router, SessionKey, SetPatterns};
use crate::sockjs::{CloseCause, Opening, Session, SessionCtx, SessionHandler};
use crate::topics::{Pattern, Topic};

/// Close code and reason for a session that never said hello.
pub const HANDSHAKE_TIMEOUT: (u16, &str) = (4000, "Handshake timeout: send {\"hello\": 1} first");
/// Close code and reason for a client that keeps sending past `limits.burst` refusals.
pub const RATE_LIMIT_ABUSE: (u16, &str) = (1008, "Rate limit exceeded: too many messages");
/// Close code and reason for a connection whose session another connection resumed.
pub const TAKEN_OVER: (u16, &str) = (4001, "Session resumed elsewhere");
/// First and longest pause before storing a session record again after the broker refused it.
const SAVE_RETRY_FIRST: Duration = Duration::from_millis(250);
const SAVE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Client messages buffered while a session is being resumed or joined.
const MAX_PENDING: usize = 256;
/// Backend messages held while a session waits for its subscriptions (or a grant's); past it,
/// the session tells its client it may have missed messages.
const MAX_HELD: usize = 4096;
/// How long a session waits for the broker to confirm its subscriptions before it goes on
/// without (the broker is down; it restores them when it is back).
const CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// What every session of a worker shares.
pub struct Services {
    pub router: Addr<Router>,
    pub broker: Broker,
    /// The cluster directory, when the broker keeps one (Redis).
    pub cluster: Option<Cluster>,
    pub http: Addr<HttpBackend>,
    /// Batched reads of the publication log for sessions that start.
    pub recovery: Addr<Recovery>,
    /// Renews the directory leases of the sessions connected here.
    pub leases: Addr<Leases>,
    /// This worker, as session entries name it (its SockJS URL).
    pub worker: Arc<str>,
    pub settings: SessionSettings,
}

/// The configuration a session needs.
pub struct SessionSettings {
    pub default_whitelist: Vec<Pattern>,
    pub max_topic_len: usize,
    pub max_message_bytes: usize,
    pub messages_per_second: u32,
    pub burst: u32,
    pub handshake_timeout: Duration,
    pub ttl: Duration,
    /// `sessions.resume_grace`: the lease of a session's directory entry.
    pub resume_grace: Duration,
    pub legacy_handshake: bool,
    pub http_rules: Arc<Vec<HttpTopicRule>>,
    pub tokens: TokenKey,
    /// `history.enabled`: sessions get positions and recover, HTTP answers go through the log.
    pub history: bool,
    /// `[auth]` and `[hooks]`: tokens and the connect hook.
    pub auth: crate::auth::Auth,
}

impl SessionSettings {
    pub fn from_config(config: &Config, tokens: TokenKey) -> Self {
        SessionSettings {
            default_whitelist: config.sessions.default_whitelist.clone(),
            max_topic_len: config.limits.max_topic_len,
            max_message_bytes: config.limits.max_message_bytes,
            messages_per_second: config.limits.messages_per_second,
            burst: config.limits.burst,
            handshake_timeout: config.sessions.handshake_timeout,
            ttl: config.sessions.ttl,
            resume_grace: config.sessions.resume_grace,
            legacy_handshake: config.compat.legacy_handshake,
            http_rules: Arc::new(config.http_topics.clone()),
            tokens,
            history: config.history.enabled,
            auth: crate::auth::Auth::from_config(config),
        }
    }
}

/// The stored form of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    whitelist: Vec<String>,
    data: Value,
    created: u64,
    /// The token the session is bound to, if it was admitted with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<auth::Bound>,
}

/// A session after its handshake.
struct Established {
    id: Arc<str>,
    /// A 0.x client's session (legacy handshake).
    legacy: bool,
    whitelist: Vec<Pattern>,
    data: Value,
    created: u64,
    direct: Pattern,
    /// The newest log position handed to this session (messages at or before it are
    /// duplicates).
    pos: Option<Position>,
    /// The newest position the client was given.
    told: Option<Position>,
    /// While a grant's subscriptions are being confirmed: the messages that came after it, not
    /// yet applied.
    held: Option<VecDeque<Deliver>>,
    /// Whether the held messages overflowed (some were dropped).
    overflowed: bool,
    /// The token it was admitted with: it closes when that expires, unless refreshed.
    bound: Option<auth::Bound>,
    /// A digest of its directory entry as last stored: a save stores it only when it changed.
    listed: Option<u64>,
}

impl Established {
    fn new(id: &str, record: Option<Record>, legacy: bool, settings: &SessionSettings) -> Self {
        // The original server gave new sessions `{}` as their data; backends written for it
        // expect an object.
        let fresh_data = if legacy {
            Value::Object(serde_json::Map::new())
        } else {
            Value::Null
        };
        let (whitelist, data, created) = match record {
            Some(r) => (
                r.whitelist
                    .iter()
                    .filter_map(|p| Pattern::parse(p, usize::MAX).ok())
                    .collect(),
                r.data,
                r.created,
            ),
            None => (settings.default_whitelist.clone(), fresh_data, unix_now()),
        };
        // Literal: the direct topic matches itself only, whatever characters the id holds.
        let direct = Pattern::literal(&format!("{DIRECT_PREFIX}{id}"), usize::MAX)
            .expect("session ids are printable");
        Established {
            id: Arc::from(id),
            legacy,
            whitelist,
            data,
            created,
            direct,
            pos: None,
            told: None,
            held: None,
            overflowed: false,
            bound: None,
            listed: None,
        }
    }

    fn allows(&self, topic: &str) -> bool {
        self.whitelist.iter().any(|p| p.matches(topic))
    }

    /// Applies `message`'s `add`, `remove` and `sessionData` here (the router is the caller's).
    fn change(&mut self, message: &BackendMessage) -> Changes {
        let mut added = Vec::new();
        for p in &message.add {
            match Pattern::parse(p, usize::MAX) {
                Ok(p) if !self.whitelist.contains(&p) => {
                    self.whitelist.push(p.clone());
                    added.push(p);
                }
                Ok(_) => {}
                Err(e) => debug!("backend pattern ignored pattern={p:?} reason={e}"),
            }
        }
        let before = self.whitelist.len();
        self.whitelist
            .retain(|p| !message.remove.iter().any(|r| r == p.as_str()));
        let removed = self.whitelist.len() != before;
        if let Some(data) = &message.session_data {
            self.data = data.clone();
        }
        Changes {
            added,
            removed,
            data: message.session_data.is_some(),
        }
    }

    /// Whether the router would hand a message on `channel` to this session.
    fn routes(&self, channel: &str) -> bool {
        channel == self.direct.as_str() || self.allows(channel)
    }

    /// The router's patterns: the whitelist and the direct topic.
    fn patterns(&self) -> Vec<Pattern> {
        let mut patterns = self.whitelist.clone();
        patterns.push(self.direct.clone());
        patterns
    }

    /// The session's record, as stored.
    fn record(&self) -> Record {
        Record {
            whitelist: self.whitelist.iter().map(|p| p.to_string()).collect(),
            data: self.data.clone(),
            created: self.created,
            token: self.bound.clone(),
        }
    }

    /// Holds `delivery` back (the session is starting, or a grant is being confirmed); past
    /// [`MAX_HELD`] it is dropped and the client will be told messages may be missing.
    fn hold(&mut self, delivery: Deliver) {
        let held = self.held.get_or_insert_with(VecDeque::new);
        if held.len() < MAX_HELD {
            held.push_back(delivery);
        } else {
            self.overflowed = true;
            metrics::dropped(DropReason::SessionGone);
        }
    }
}

/// What [`Established::change`] changed.
struct Changes {
    added: Vec<Pattern>,
    removed: bool,
    data: bool,
}

/// How a session is being started.
struct Start {
    resumed: bool,
    legacy: bool,
    /// On a resume: the position the client asked to recover from (unparsable: `Err`).
    since: Option<Result<Position, ()>>,
    /// What its token and the connect hook grant, applied in order before the join.
    grants: Vec<BackendMessage>,
    /// The token it is admitted with.
    bound: Option<auth::Bound>,
}

impl Start {
    /// A new session.
    fn fresh() -> Start {
        Start {
            resumed: false,
            legacy: false,
            since: None,
            grants: Vec::new(),
            bound: None,
        }
    }
}

enum Phase {
    /// Waiting for the first message.
    AwaitingHello,
    /// Loading the record of a resumed session (of a 0.x client's, with `legacy`); client
    /// messages wait.
    Resuming {
        pending: Vec<String>,
        legacy: bool,
    },
    /// Asking the connect hook whether the session may start (a 0.x client's, with `legacy`);
    /// client messages wait.
    Admitting {
        pending: Vec<String>,
        legacy: bool,
    },
    /// Waiting for the broker to confirm the session's subscriptions and for the log read;
    /// client messages and backend messages wait.
    Joining {
        session: Established,
        start: Start,
        pending: Vec<String>,
    },
    Established(Established),
    Closed,
}

/// The Rohrpost logic of one SockJS session.
pub struct RohrpostSession {
    services: Arc<Services>,
    key: SessionKey,
    phase: Phase,
    handshake_timer: Option<SpawnHandle>,
    /// A pending retry of storing the record.
    save_retry: Option<SpawnHandle>,
    save_backoff: Duration,
    /// `limits.messages_per_second` and `limits.burst` for this session's messages.
    bucket: TokenBucket,
    /// Names this connection in takeover notices, so it ignores its own.
    nonce: String,
    /// Closed because another connection resumed the session: it owns the record now.
    taken_over: bool,
    /// The session ended for good (a goodbye, a kick): its directory entry is not stored again.
    ended: bool,
    /// The hello's credential, the opening request (for the connect hook), the token's expiry.
    auth: auth::SessionAuth,
}

type Ctx<'a> = SessionCtx<'a, RohrpostSession>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RohrpostSession {
    /// The session handler for a SockJS session opened by `opening`.
    pub fn new(services: Arc<Services>, opening: &Opening) -> Self {
        static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
        let bucket = TokenBucket::new(
            services.settings.messages_per_second,
            services.settings.burst,
        );
        RohrpostSession {
            auth: auth::SessionAuth::new(&services.settings.auth, opening),
            bucket,
            services,
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            phase: Phase::AwaitingHello,
            handshake_timer: None,
            save_retry: None,
            save_backoff: SAVE_RETRY_FIRST,
            nonce: format!("{:016x}", rand::random::<u64>()),
            taken_over: false,
            ended: false,
        }
    }

    fn settings(&self) -> &SessionSettings {
        &self.services.settings
    }

    fn error(&self, error: ClientError, s: &mut Ctx<'_>) {
        debug!(
            "client message refused sockjs={} code={} topic={:?} message={:?}",
            s.id(),
            error.code.as_str(),
            error.topic,
            error.message
        );
        metrics::dropped(DropReason::ClientError);
        if s.is_closed() {
            // A drain's close frame is out: an error about a message with an id goes where the
            // client resumes, like its outcome would.
            if let (Some(_), Phase::Established(session)) = (&error.id, &self.phase) {
                self.forward_error(&session.direct, &error);
            }
            return;
        }
        s.send(&error.to_envelope());
    }

    fn hello(&mut self, message: String, s: &mut Ctx<'_>) {
        let Handshake { hello, token } =
            match parse_hello(&message, self.settings().legacy_handshake) {
                Ok(handshake) => handshake,
                Err(e) => return self.error(e, s),
            };
        self.auth.credential = token;
        match hello {
            Hello::New => self.admit(new_session_id(), None, Start::fresh(), s),
            Hello::Resume { token, since } => match self.settings().tokens.verify(&token) {
                Some(id) => {
                    let since = since.map(|p| Position::parse(&p).ok_or(()));
                    self.load(id, false, since, s)
                }
                None => {
                    debug!("resume token refused sockjs={}", s.id());
                    self.admit(new_session_id(), None, Start::fresh(), s)
                }
            },
            Hello::Legacy(id) => self.load(id, true, None, s),
        }
    }

    /// Loads the record of session `id`, then joins it (fresh if there is none). A 0.x session
    /// also loads the original server's record, and starts from it when that is the newer one.
    fn load(
        &mut self,
        id: String,
        legacy: bool,
        since: Option<Result<Position, ()>>,
        s: &mut Ctx<'_>,
    ) {
        self.phase = Phase::Resuming {
            pending: Vec::new(),
            legacy,
        };
        let key: Arc<str> = Arc::from(id.as_str());
        let ours = self
            .services
            .broker
            .load
            .send(LoadSession { id: key.clone() });
        // A resumed session's directory entry must still be there (its lease is renewed for the
        // grace here): if it is gone the session ended for good, and this is a new one. A 0.x
        // client names its session itself; it is listed anew if need be.
        let listed = (!legacy).then(|| {
            self.services.broker.directory.touch.send(TouchEntries {
                ids: vec![key.clone()],
                lease: self.settings().resume_grace,
            })
        });
        let theirs = (self.services.broker.legacy.as_ref())
            .filter(|_| legacy)
            .map(|store| store.load.send(LoadLegacySession { id: key }));
        let loaded = async move {
            // The requests are under way already: waiting for one then the other costs nothing.
            let ours = ours.await;
            let gone = match listed {
                Some(listed) => matches!(listed.await, Ok(Ok(gone)) if !gone.is_empty()),
                None => false,
            };
            let theirs = match theirs {
                Some(theirs) => Some(theirs.await),
                None => None,
            };
            (ours, gone, theirs)
        };
        s.context()
            .spawn(actix::fut::wrap_future::<_, Session<Self>>(loaded).map(
                move |(ours, gone, theirs), act, ctx| {
                    act.with_handler(ctx, |h, s| {
                        let mut record = match ours {
                            Ok(Ok(Some(_))) if gone => {
                                info!("session not resumed: it ended for good session={id}");
                                None
                            }
                            Ok(Ok(Some(bytes))) => serde_json::from_slice::<Record>(&bytes).ok(),
                            Ok(Ok(None)) => None,
                            Ok(Err(e)) => {
                                info!("session record not loaded session={id} error={e}");
                                None
                            }
                            Err(e) => {
                                info!("session record not loaded session={id} error={e}");
                                None
                            }
                        };
                        if let Some(theirs) = theirs {
                            let theirs = legacy::loaded(&id, theirs);
                            let default = &h.settings().default_whitelist;
                            record = legacy::starting_record(record, theirs, default);
                        }
                        let found = record.is_some();
                        if legacy || found {
                            let start = Start {
                                resumed: true,
                                legacy,
                                since,
                                grants: Vec::new(),
                                bound: None,
                            };
                            h.admit(id, record, start, s);
                        } else {
                            // Expired or unknown: a new session, never the old id without its record.
                            h.admit(new_session_id(), None, Start::fresh(), s);
                        }
                    })
                },
            ));
    }

    /// Joins the router with the session's patterns and waits for the broker to confirm them,
    /// then reads the log ([`Self::caught_up`]); backend messages that arrive meanwhile wait.
    fn join(&mut self, id: &str, record: Option<Record>, start: Start, s: &mut Ctx<'_>) {
        if let Some(timer) = self.handshake_timer.take() {
            s.context().cancel_future(timer);
        }
        let pending = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Resuming { pending, .. } | Phase::Admitting { pending, .. } => pending,
            _ => Vec::new(),
        };
        let mut session = Established::new(id, record, start.legacy, self.settings());
        for grant in &start.grants {
            session.change(grant);
        }
        session.bound = start.bound.clone();
        let address = s.context().address();
        let joined = self.services.router.send(Join {
            key: self.key,
            recipient: address.clone().recipient(),
            restored: address.clone().recipient(),
            progress: address.recipient(),
            patterns: session.patterns(),
        });
        let after = match &start.since {
            Some(Ok(since)) => Some(since.clone()),
            _ => None,
        };
        // Listed before the welcome: a backend that sees the welcome (or its session.opened)
        // finds the session in the directory.
        let entry = self.put_message(&session);
        let listed_entry = presence::digest(&entry.entry);
        let listing = self.services.broker.directory.put.send(entry);
        self.phase = Phase::Joining {
            session,
            start,
            pending,
        };
        self.arm_expiry(s);
        let history = self.settings().history;
        let recovery = self.services.recovery.clone();
        let sockjs = s.id().to_owned();
        let ready = async move {
            let confirmed = tokio::time::timeout(CONFIRM_WAIT, joined);
            let (confirmed, listed) = futures_util::future::join(confirmed, listing).await;
            if confirmed.is_err() {
                info!("subscriptions not confirmed in time sockjs={sockjs}; welcoming anyway");
            }
            let listed = match listed {
                Ok(Ok(_)) => Some(listed_entry),
                // Listed by the next store of the record, which retries.
                Ok(Err(e)) => {
                    info!("session not listed before its welcome sockjs={sockjs} error={e}");
                    None
                }
                Err(e) => {
                    info!("session not listed before its welcome sockjs={sockjs} error={e}");
                    None
                }
            };
            if !history {
                return (None, listed);
            }
            (Some(recovery.send(CatchUp { after }).await), listed)
        };
        s.context()
            .spawn(actix::fut::wrap_future::<_, Session<Self>>(ready).map(
                |(answer, listed), act, ctx| {
                    act.with_handler(ctx, |h, s| {
                        let answer = match answer {
                            Some(Ok(Ok(answer))) => Some(answer),
                            Some(Ok(Err(e))) => {
                                info!("log not read for a starting session error={e}");
                                None
                            }
                            Some(Err(e)) => {
                                info!("log not read for a starting session error={e}");
                                None
                            }
                            None => None,
                        };
                        h.caught_up(answer, listed, s);
                    })
                },
            ));
    }

    /// The session's subscriptions are in place and the log is read: welcome, replay what the
    /// client missed, then what arrived meanwhile, then the waiting client messages.
    fn caught_up(&mut self, answer: Option<CatchUpAnswer>, listed: Option<u64>, s: &mut Ctx<'_>) {
        let (mut session, start, pending) = match std::mem::replace(&mut self.phase, Phase::Closed)
        {
            Phase::Joining {
                session,
                start,
                pending,
            } => (session, start, pending),
            other => {
                self.phase = other;
                return;
            }
        };
        let early = session.held.take().unwrap_or_default();
        let recovered = answer.as_ref().is_some_and(|a| a.recovered);
        session.pos = match (&start.since, &answer) {
            (Some(Ok(since)), Some(_)) if recovered => Some(since.clone()),
            (_, Some(answer)) => Some(answer.head.clone()),
            _ => None,
        };
        session.told = session.pos.clone();
        if start.legacy {
            s.send(&format!("ok:{}", session.id));
        } else {
            let mut welcome = serde_json::json!({
                "session": &*session.id,
                "resume": self.settings().tokens.issue(&session.id),
                "resumed": start.resumed,
                "whitelist": session.whitelist.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            });
            if let Some(pos) = &session.pos {
                welcome["pos"] = Value::String(pos.to_string());
            }
            if start.resumed {
                welcome["recovered"] = Value::Bool(recovered);
            }
            s.send(&envelope(WELCOME_TOPIC, &welcome));
        }
        info!(
            "session established sockjs={} session={} resumed={} recovered={recovered} legacy={}",
            s.id(),
            session.id,
            start.resumed,
            start.legacy
        );
        let id = session.id.clone();
        session.listed = listed;
        self.phase = Phase::Established(session);
        self.save(s);
        self.hold_lease(&id, s);
        // Keep the record alive while connected.
        let refresh = (self.settings().ttl / 3).max(Duration::from_secs(1));
        s.context()
            .run_interval(refresh, |act, ctx| act.with_handler(ctx, |h, s| h.save(s)));
        if let Some(answer) = &answer {
            if recovered {
                for delivery in answer.entries.iter() {
                    let Phase::Established(session) = &self.phase else {
                        return;
                    };
                    let after = session.pos.as_ref();
                    let new = (delivery.position.as_ref())
                        .is_some_and(|p| after.is_none_or(|a| !p.not_after(a)));
                    if new && session.routes(&delivery.channel) {
                        self.receive(delivery.clone(), s);
                    }
                }
            }
        }
        for delivery in early {
            self.receive(delivery, s);
        }
        if let (Some(answer), Phase::Established(session)) = (&answer, &mut self.phase) {
            // Caught up to the head, unless a grant holds messages back (they come after).
            let behind = (session.pos.as_ref()).is_none_or(|p| p.not_after(&answer.head));
            if behind && session.held.is_none() {
                session.pos = Some(answer.head.clone());
            }
        }
        self.tell_position(false, s);
        if start.resumed && !start.legacy {
            self.claim(&id);
        }
        for message in pending {
            self.on_message(message, s);
        }
    }

    /// Tells every other connection of session `id` that this one has it now.
    fn claim(&self, id: &str) {
        let notice = serde_json::json!({ "rohrpostTakeover": &self.nonce });
        let publish = self.services.broker.publish.send(Publish {
            channel: Arc::from(format!("{DIRECT_PREFIX}{id}")),
            payload: Bytes::from(notice.to_string()),
        });
        actix_rt::spawn(async move {
            if let Ok(Err(e)) = publish.await {
                debug!("takeover notice not published error={e}");
            }
        });
    }

    /// Sends the client a position notice if it is behind the session's position (or, with
    /// `lost`, whatever it has: messages may have been lost that cannot be replayed).
    fn tell_position(&mut self, lost: bool, s: &mut Ctx<'_>) {
        let Phase::Established(session) = &mut self.phase else {
            return;
        };
        let lost = lost || std::mem::take(&mut session.overflowed);
        if session.pos == session.told && !lost {
            return;
        }
        let mut notice = serde_json::json!({});
        if let Some(pos) = &session.pos {
            notice["pos"] = Value::String(pos.to_string());
        }
        if lost {
            notice["recovered"] = Value::Bool(false);
        }
        session.told = session.pos.clone();
        s.send(&envelope(POSITION_TOPIC, &notice));
    }

    /// The session ended: the router forgets it, and its record is stored a last time,
    /// refreshing the TTL (the client may resume within `sessions.ttl`) — unless another
    /// connection took the session over: the record is that one's now.
    fn closed(&mut self, session: &Established, cause: CloseCause) {
        self.services.router.do_send(Leave { key: self.key });
        self.unlisted(session);
        if !self.taken_over {
            self.services
                .broker
                .store
                .do_send(self.store_message(session));
            self.store_legacy(session);
        }
        info!("session closed session={} cause={cause:?}", session.id);
    }

    fn store_message(&self, session: &Established) -> StoreSession {
        StoreSession {
            id: session.id.clone(),
            record: Bytes::from(serde_json::to_vec(&session.record()).unwrap_or_default()),
            ttl: self.settings().ttl,
        }
    }

    /// Stores the session record and its directory entry; while the broker cannot take them,
    /// tries again with backoff (one retry chain at a time, always with the latest record), so
    /// that a session made or changed while Redis is down can still be resumed elsewhere once
    /// Redis is back. A session that ended for good stores nothing more.
    fn save(&mut self, s: &mut Ctx<'_>) {
        let Phase::Established(session) = &self.phase else {
            return;
        };
        if self.ended {
            return;
        }
        if self.save_retry.is_some() {
            return; // the pending retry will store the latest record
        }
        self.store_legacy(session);
        let store = self.services.broker.store.send(self.store_message(session));
        let entry = self.put_message(session);
        let stored_entry = presence::digest(&entry.entry);
        let put = (session.listed != Some(stored_entry))
            .then(|| self.services.broker.directory.put.send(entry));
        let both = async move {
            let put = match put {
                Some(put) => put.await.map(|r| r.map(Some)),
                None => Ok(Ok(None)),
            };
            (store.await, put)
        };
        s.context()
            .spawn(actix::fut::wrap_future::<_, Session<Self>>(both).map(
                move |result, act, ctx| {
                    if let (Ok(Ok(())), Ok(Ok(put))) = result {
                        act.with_handler(ctx, |h, _| {
                            h.save_backoff = SAVE_RETRY_FIRST;
                            if let (Some(put), Phase::Established(session)) = (put, &mut h.phase) {
                                session.listed = Some(stored_entry);
                                RohrpostSession::listed(put, session);
                            }
                        });
                        return;
                    }
                    act.with_handler(ctx, |h, s| {
                        let delay = h.save_backoff;
                        h.save_backoff = (delay * 2).min(SAVE_RETRY_MAX);
                        debug!("session record not stored; retrying in {delay:?}");
                        h.save_retry = Some(s.context().run_later(delay, |act, ctx| {
                            act.with_handler(ctx, |h, s| {
                                h.save_retry = None;
                                h.save(s);
                            })
                        }));
                    })
                },
            ));
    }

    /// A client message after the handshake.
    fn client_message(&mut self, message: String, s: &mut Ctx<'_>) {
        let Phase::Established(session) = &self.phase else {
            return;
        };
        match self.bucket.take() {
            Verdict::Accept => {}
            verdict => {
                let settings = self.settings();
                let id = message_id(&message);
                let e = ClientError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} messages per second (bursts of {}); message not sent",
                        settings.messages_per_second, settings.burst
                    ),
                )
                .for_id(id.as_deref());
                self.error(e, s);
                if verdict == Verdict::Abuse {
                    metrics::forced_close(metrics::ForcedClose::RateLimit);
                    s.close(RATE_LIMIT_ABUSE.0, RATE_LIMIT_ABUSE.1);
                }
                return;
            }
        }
        let settings = self.settings();
        if message.len() > settings.max_message_bytes {
            let e = ClientError::new(
                ErrorCode::TooLarge,
                format!(
                    "message of {} bytes exceeds the limit of {} bytes",
                    message.len(),
                    settings.max_message_bytes
                ),
            )
            .for_id(message_id(&message).as_deref());
            return self.error(e, s);
        }
        let envelope = match parse_envelope(&message, settings.max_topic_len) {
            Ok(e) => e,
            Err(_) if parse_bye(&message) => return self.bye(s),
            Err(e) => {
                return match parse_refresh(&message) {
                    Some(token) => self.refresh(&token, s),
                    None => self.error(e, s),
                }
            }
        };
        let topic = envelope.topic;
        if !session.allows(topic.as_str()) {
            let e = ClientError::new(
                ErrorCode::NotWhitelisted,
                format!("topic {topic} is not on this session's whitelist"),
            )
            .about(topic.as_str())
            .for_id(envelope.id.as_deref());
            return self.error(e, s);
        }
        let payload = serde_json::to_vec(&ClientPayload {
            topic: topic.as_str(),
            data: &envelope.data,
            session_id: &session.id,
            session_data: &session.data,
            from_client: true,
            message_id: envelope.id.as_deref(),
        })
        .map(Bytes::from)
        .unwrap_or_default();
        let sent = Sent {
            topic,
            id: envelope.id,
            direct: Arc::from(session.direct.as_str()),
        };
        match rule_for(&settings.http_rules, &sent.topic) {
            Some(rule) => self.call_http(rule, sent, payload, s),
            None => self.publish(sent, payload, s),
        }
    }

    /// Publishes a client message on the broker. The request runs on its own task, not the
    /// session's: a session that ends right after (a drain) must not take its last message
    /// with it, and the worker does not exit while it is under way. The outcome comes back as
    /// [`Outcome`].
    fn publish(&self, sent: Sent, payload: Bytes, s: &mut Ctx<'_>) {
        let publish = self.services.broker.publish.send(Publish {
            channel: Arc::from(sent.topic.as_str()),
            payload,
        });
        let session = s.context().address();
        let forward = self.logged();
        pending::spawn(async move {
            let result = match publish.await {
                Ok(Ok(())) => {
                    metrics::client_message_out(Path::Broker);
                    Ok(())
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err(BrokerError::Unavailable(e.to_string())),
            };
            if result.is_err() {
                metrics::backend_error();
            }
            report(&session, forward, Outcome::Published { sent, result });
        });
    }

    /// Sends a client message to its HTTP rule. Like [`Self::publish`], the request runs on its
    /// own task; an answer that is a backend message goes through the publication log to the
    /// session's direct topic (so that the session gets it even if it moved to another worker
    /// meanwhile); anything else comes back to the session as [`Outcome`].
    fn call_http(&self, rule: usize, sent: Sent, payload: Bytes, s: &mut Ctx<'_>) {
        let call = self.services.http.send(HttpCall {
            rule,
            topic: sent.topic.clone(),
            payload,
        });
        let session = s.context().address();
        let logged = self.logged();
        let forward = logged.clone();
        let started = std::time::Instant::now();
        pending::spawn(async move {
            let result = call.await;
            metrics::http_latency(started.elapsed());
            let answer = match (result, logged) {
                (Ok(Ok(Some(map))), Some(publish_logged)) => {
                    metrics::client_message_out(Path::Http);
                    metrics::backend_message_in(Path::Http);
                    // The client sees the answer on the topic it sent to, unless it names one.
                    let mut logged_map = map.clone();
                    (logged_map.entry("topic"))
                        .or_insert_with(|| Value::String(sent.topic.as_str().to_owned()));
                    let payload = Bytes::from(Value::Object(logged_map).to_string());
                    let logged = publish_logged.send(PublishLogged {
                        channel: sent.direct.clone(),
                        payload,
                    });
                    match logged.await {
                        Ok(Ok(_)) => HttpOutcome::Logged,
                        Ok(Err(e)) if !e.not_done() => HttpOutcome::Uncertain(e.to_string()),
                        // Not in the log: the session applies it itself, if it is still here.
                        _ => HttpOutcome::Answer(Ok(Ok(Some(map)))),
                    }
                }
                (result, _) => HttpOutcome::Answer(result),
            };
            report(&session, forward, Outcome::Http { sent, answer });
        });
    }

    /// The publication log, when history is enabled.
    fn logged(&self) -> Option<Recipient<PublishLogged>> {
        (self.settings().history).then(|| self.services.broker.publish_logged.clone())
    }

    /// Sends `error` through the log to the session's `direct` topic (its connection is closing):
    /// the client gets it where it resumes.
    fn forward_error(&self, direct: &Pattern, error: &ClientError) {
        let Some(forward) = self.logged() else { return };
        let report = serde_json::json!({"topic": ERROR_TOPIC, "data": error.data()});
        let direct: Arc<str> = Arc::from(direct.as_str());
        pending::spawn(async move { forward_report(&forward, direct, report).await });
    }

    fn outcome(&mut self, outcome: Outcome, s: &mut Ctx<'_>) {
        if matches!(self.phase, Phase::Closed) || s.is_closed() {
            // Closed meanwhile (a drain's close frame is out, though the session still takes
            // what its client sends until the client answers it): the client hears of it where
            // it resumes.
            pending::spawn(forward_reports(self.logged(), outcome));
            return;
        }
        // Failed publishes were counted where they failed; HTTP outcomes are counted here.
        let http = matches!(outcome, Outcome::Http { .. });
        let (sent, error) = match outcome {
            Outcome::Http {
                sent,
                answer: HttpOutcome::Answer(result),
            } => {
                let error = self.http_answer(&sent, result, s);
                (sent, error)
            }
            told => {
                let (ack, error) = told.verdict();
                let sent = told.into_sent();
                if ack {
                    self.acked(&sent, s);
                }
                (sent, error)
            }
        };
        if let Some(error) = error {
            if http {
                metrics::backend_error();
            }
            let error = error.about(sent.topic.as_str()).for_id(sent.id.as_deref());
            self.error(error, s);
        }
    }

    /// Acknowledges `sent` if it carried an id.
    fn acked(&self, sent: &Sent, s: &mut Ctx<'_>) {
        if let Some(id) = &sent.id {
            s.send(&ack(id));
        }
    }

    /// An HTTP answer (or failure) that did not go through the log: applied here, like a
    /// message on the direct topic; the error for the client, if any.
    fn http_answer(
        &mut self,
        sent: &Sent,
        result: Result<HttpResult, actix::MailboxError>,
        s: &mut Ctx<'_>,
    ) -> Option<ClientError> {
        match result {
            Ok(Ok(answer)) => {
                metrics::client_message_out(Path::Http);
                self.acked(sent, s);
                let map = answer?;
                metrics::backend_message_in(Path::Http);
                match BackendMessage::from_value(Value::Object(map)) {
                    Ok(message) => {
                        let channel: Arc<str> = Arc::from(sent.topic.as_str());
                        self.apply(Deliver::new(channel, message, None), true, s);
                        None
                    }
                    Err(e) => Some(ClientError::new(
                        ErrorCode::BackendError,
                        format!("backend answer unusable: {e}"),
                    )),
                }
            }
            Ok(Err(e)) => {
                let code = match e.code() {
                    "backend_timeout" => ErrorCode::BackendTimeout,
                    "backend_error" => ErrorCode::BackendError,
                    _ => ErrorCode::BackendUnavailable,
                };
                Some(ClientError::new(code, e.to_string()))
            }
            Err(e) => Some(ClientError::new(
                ErrorCode::BackendUnavailable,
                e.to_string(),
            )),
        }
    }

    /// A backend message from the router (or a replay): applied now, or held while a grant's
    /// subscriptions are confirmed or the session is still starting.
    fn receive(&mut self, delivery: Deliver, s: &mut Ctx<'_>) {
        match &mut self.phase {
            Phase::Joining { session, .. } => session.hold(delivery),
            Phase::Established(session) if session.held.is_some() => session.hold(delivery),
            Phase::Established(session) => {
                let direct = *delivery.channel == *session.direct.as_str();
                self.apply(delivery, direct, s);
            }
            _ => metrics::dropped(DropReason::SessionGone),
        }
    }

    /// Applies a backend message: whitelist changes, session data, then data for the client.
    /// `direct` messages (direct topic, HTTP answers) reach the client whatever its whitelist.
    /// A message whose grant needs new subscriptions reaches the client only once they are
    /// confirmed, and the messages after it wait until then.
    fn apply(&mut self, delivery: Deliver, direct: bool, s: &mut Ctx<'_>) {
        let Phase::Established(session) = &mut self.phase else {
            metrics::dropped(DropReason::SessionGone);
            return;
        };
        if let Some(position) = &delivery.position {
            if session.pos.as_ref().is_some_and(|p| position.not_after(p)) {
                return; // replayed already
            }
            session.pos = Some(position.clone());
        }
        let message = &delivery.message;
        if let Some(nonce) = &message.takeover {
            if direct && *nonce != self.nonce {
                info!("session taken over session={}", session.id);
                self.taken_over = true;
                s.close(TAKEN_OVER.0, TAKEN_OVER.1);
            }
            return;
        }
        if let Some(reason) = &message.kick {
            if direct {
                let reason = reason.clone();
                self.kicked(&reason, s);
            }
            return;
        }
        let Changes {
            added,
            removed,
            data: changed_data,
        } = session.change(message);
        if !added.is_empty() || removed {
            let set = SetPatterns {
                key: self.key,
                patterns: session.patterns(),
            };
            if added.is_empty() {
                self.services.router.do_send(set);
            } else {
                let set = self.services.router.send(set);
                // Held until the new subscriptions are confirmed: once the client has the
                // grant, everything published on the granted patterns reaches it.
                session.held = Some(VecDeque::new());
                let confirmed = async move {
                    let _ = tokio::time::timeout(CONFIRM_WAIT, set).await;
                };
                s.context()
                    .spawn(actix::fut::wrap_future::<_, Session<Self>>(confirmed).map(
                        move |(), act, ctx| {
                            act.with_handler(ctx, |h, s| h.granted(delivery, direct, s))
                        },
                    ));
                self.save(s);
                return;
            }
        }
        if !added.is_empty() || removed || changed_data {
            self.save(s);
        }
        self.deliver(&delivery, direct, s);
    }

    /// A grant's subscriptions are confirmed: its data goes to the client, then the messages
    /// held after it.
    fn granted(&mut self, delivery: Deliver, direct: bool, s: &mut Ctx<'_>) {
        let held = match &mut self.phase {
            Phase::Established(session) => session.held.take().unwrap_or_default(),
            _ => return,
        };
        self.deliver(&delivery, direct, s);
        let mut held = held;
        while let Some(next) = held.pop_front() {
            self.receive(next, s);
            if let Phase::Established(session) = &mut self.phase {
                if let Some(again) = &mut session.held {
                    // Another grant: the rest waits behind it, in order.
                    again.extend(held.drain(..));
                    return;
                }
            }
        }
        self.tell_position(false, s);
    }

    /// The client part of a backend message.
    fn deliver(&mut self, delivery: &Deliver, direct: bool, s: &mut Ctx<'_>) {
        let Phase::Established(session) = &mut self.phase else {
            return;
        };
        if let Some(encoded) = &delivery.encoded {
            if direct || session.allows(delivery.topic()) {
                metrics::delivered();
                if delivery.position.is_some() {
                    session.told = delivery.position.clone();
                }
                s.send_encoded(encoded.clone());
            } else {
                debug!(
                    "backend message not whitelisted session={} topic={}",
                    session.id,
                    delivery.topic()
                );
                metrics::dropped(DropReason::NotWhitelisted);
            }
        }
    }
}

/// What the client is told when the broker did not take its message.
fn publish_error(e: &BrokerError) -> ClientError {
    if e.not_done() {
        ClientError::new(
            ErrorCode::BackendUnavailable,
            format!("message not delivered: {e}"),
        )
    } else {
        ClientError::new(
            ErrorCode::BackendUncertain,
            format!("message may or may not have been delivered: {e}"),
        )
    }
}

/// Hands `outcome` to its session (see [`Reported`] for one that is gone).
fn report(
    session: &Addr<Session<RohrpostSession>>,
    forward: Option<Recipient<PublishLogged>>,
    outcome: Outcome,
) {
    session.do_send(Reported {
        outcome: Some(outcome),
        forward,
    });
}

/// Publishes what the client must hear of `outcome` on its session's direct topic, through the
/// log: the ack and any error for a message that carried an id (answers went through the log
/// already; without history there is no way to reach a closed session).
async fn forward_reports(forward: Option<Recipient<PublishLogged>>, outcome: Outcome) {
    let Some(forward) = forward else { return };
    let (ack, error) = outcome.verdict();
    let sent = outcome.into_sent();
    let Some(id) = &sent.id else { return };
    let mut reports = Vec::new();
    if ack {
        reports.push(serde_json::json!({"topic": ACK_TOPIC, "data": {"id": id}}));
    }
    if let Some(error) = error {
        let error = error.about(sent.topic.as_str()).for_id(Some(id));
        reports.push(serde_json::json!({"topic": ERROR_TOPIC, "data": error.data()}));
    }
    for report in reports {
        forward_report(&forward, sent.direct.clone(), report).await;
    }
}

/// Publishes one report for a client (`{"topic", "data"}`) through the log on its session's
/// `direct` topic.
async fn forward_report(forward: &Recipient<PublishLogged>, direct: Arc<str>, report: Value) {
    let publish = forward.send(PublishLogged {
        channel: direct,
        payload: Bytes::from(report.to_string()),
    });
    if !matches!(publish.await, Ok(Ok(_))) {
        info!("a report for a closed session's client was not forwarded report={report}");
    }
}

/// The id a message carries, read leniently (for errors about messages that did not parse).
fn message_id(message: &str) -> Option<String> {
    let value: Value = serde_json::from_str(message).ok()?;
    value.get("id")?.as_str().map(str::to_string)
}

impl SessionHandler for RohrpostSession {
    fn drain_close<'a>(&self, asked: (u16, &'a str)) -> (u16, &'a str) {
        if self.speaks_legacy() {
            crate::legacy::RESTART
        } else {
            asked
        }
    }

    fn on_open(&mut self, s: &mut Ctx<'_>) {
        let timeout = self.settings().handshake_timeout;
        self.handshake_timer = Some(s.context().run_later(timeout, |act, ctx| {
            act.with_handler(ctx, |h, s| {
                if matches!(h.phase, Phase::AwaitingHello) {
                    debug!("handshake timeout sockjs={}", s.id());
                    s.close(HANDSHAKE_TIMEOUT.0, HANDSHAKE_TIMEOUT.1);
                }
            })
        }));
    }

    fn on_message(&mut self, message: String, s: &mut Ctx<'_>) {
        match &mut self.phase {
            Phase::AwaitingHello => self.hello(message, s),
            Phase::Resuming { pending, .. }
            | Phase::Admitting { pending, .. }
            | Phase::Joining { pending, .. } => {
                if pending.len() < MAX_PENDING {
                    pending.push(message);
                } else {
                    let e = ClientError::new(
                        ErrorCode::BackendUnavailable,
                        "too many messages while the session is being resumed; message not sent",
                    )
                    .for_id(message_id(&message).as_deref());
                    self.error(e, s);
                }
            }
            Phase::Established(_) => self.client_message(message, s),
            Phase::Closed => {}
        }
    }

    fn on_close(&mut self, cause: CloseCause) {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Joining {
                session, pending, ..
            } => {
                // Closed before it was ready (a drain during a resume): what the client sent
                // meanwhile was not sent on; it hears so where it resumes.
                for message in pending {
                    if let Some(id) = message_id(&message) {
                        let e = ClientError::new(
                            ErrorCode::BackendUnavailable,
                            "message not sent: the session closed before it was ready; send it again",
                        )
                        .for_id(Some(&id));
                        self.forward_error(&session.direct, &e);
                    }
                }
                self.closed(&session, cause);
            }
            Phase::Established(session) => self.closed(&session, cause),
            _ => {}
        }
    }
}

/// A client message on its way to a backend.
struct Sent {
    topic: Topic,
    /// The client's id for it: it wants an ack.
    id: Option<String>,
    /// The session's direct topic, where the outcome goes if the session is gone by then.
    direct: Arc<str>,
}

type HttpResult =
    Result<Option<serde_json::Map<String, Value>>, crate::http_backend::HttpBackendError>;

/// What became of an HTTP rule's request.
enum HttpOutcome {
    /// The answer is in the log, on its way to the session's direct topic.
    Logged,
    /// The answer was given to the log, which did not say whether it took it.
    Uncertain(String),
    /// The answer (or the failure), for the session to apply itself.
    Answer(Result<HttpResult, actix::MailboxError>),
}

/// The outcome of a client message, for the session that sent it.
enum Outcome {
    Published {
        sent: Sent,
        result: Result<(), BrokerError>,
    },
    Http {
        sent: Sent,
        answer: HttpOutcome,
    },
}

impl Outcome {
    /// What the client is told of it, session or not: whether the message is acknowledged, and
    /// the error about it. An HTTP answer that did not go through the log is the session's to
    /// apply ([`RohrpostSession::http_answer`]): nothing here.
    fn verdict(&self) -> (bool, Option<ClientError>) {
        match self {
            Outcome::Published { result: Ok(()), .. } => (true, None),
            Outcome::Published { result: Err(e), .. } => (false, Some(publish_error(e))),
            Outcome::Http { answer, .. } => match answer {
                HttpOutcome::Logged => (true, None),
                // The backend took the message; its answer may or may not reach the client.
                HttpOutcome::Uncertain(reason) => (
                    true,
                    Some(ClientError::new(
                        ErrorCode::BackendUncertain,
                        format!("the backend answered, but its answer may not reach you: {reason}"),
                    )),
                ),
                HttpOutcome::Answer(_) => (false, None),
            },
        }
    }

    fn into_sent(self) -> Sent {
        match self {
            Outcome::Published { sent, .. } | Outcome::Http { sent, .. } => sent,
        }
    }
}

/// An [`Outcome`] on its way to its session. If the session never handles it (it stopped
/// before: a drain closed it while the message was on its way, and its mailbox went with it),
/// dropping it forwards what the client must hear through the log to the session's direct
/// topic instead, so that it reaches the client where it resumed.
#[derive(Message)]
#[rtype(result = "()")]
struct Reported {
    outcome: Option<Outcome>,
    /// The log, when history is enabled.
    forward: Option<Recipient<PublishLogged>>,
}

impl Drop for Reported {
    fn drop(&mut self) {
        if let Some(outcome) = self.outcome.take() {
            pending::spawn(forward_reports(self.forward.take(), outcome));
        }
    }
}

impl Handler<Reported> for Session<RohrpostSession> {
    type Result = ();

    fn handle(&mut self, mut msg: Reported, ctx: &mut Context<Self>) {
        if let Some(outcome) = msg.outcome.take() {
            self.with_handler(ctx, |h, s| h.outcome(outcome, s));
        }
    }
}

/// The broker is back after an outage: store the record again (the server may have lost it),
/// and tell the client if messages may have been lost.
impl Handler<LinkRestored> for Session<RohrpostSession> {
    type Result = ();

    fn handle(&mut self, msg: LinkRestored, ctx: &mut Context<Self>) {
        self.with_handler(ctx, |h, s| {
            // The server may have lost the directory entry too.
            if let Phase::Established(session) = &mut h.phase {
                session.listed = None;
            }
            h.save(s);
            if msg.gap {
                h.tell_position(true, s);
            }
        });
    }
}

/// How far the session is caught up: the client is told if it is behind.
impl Handler<Progress> for Session<RohrpostSession> {
    type Result = ();

    fn handle(&mut self, Progress(position): Progress, ctx: &mut Context<Self>) {
        self.with_handler(ctx, |h, s| {
            let Phase::Established(session) = &mut h.phase else {
                return;
            };
            if session.held.is_some() {
                return;
            }
            let ahead = (session.pos.as_ref()).is_none_or(|p| !position.not_after(p));
            if ahead {
                session.pos = Some(position);
                h.tell_position(false, s);
            }
        });
    }
}

/// Backend messages handed over by the topic router.
impl Handler<Deliver> for Session<RohrpostSession> {
    type Result = ();

    fn handle(&mut self, delivery: Deliver, ctx: &mut Context<Self>) {
        self.with_handler(ctx, |h, s| h.receive(delivery, s));
    }
}
