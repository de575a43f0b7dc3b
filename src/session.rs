//! The Rohrpost session: what a SockJS session does in a worker.
//!
//! [`RohrpostSession`] is the [`SessionHandler`] hung on each SockJS session actor. It runs the
//! handshake (new session, resume with a token, or the legacy 0.x form), holds the session's
//! whitelist and data, checks every client message against the whitelist and passes it to the
//! HTTP backend or the broker, and applies backend messages ([`Deliver`]) that the topic router
//! hands it: whitelist changes, session data, and data for the client.
//!
//! The session record (whitelist, data, created) lives in the broker's store with a TTL that is
//! refreshed while the session is connected, so the session can be resumed on any worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use log::{debug, info};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::broker::{Broker, Cluster, LinkRestored, LoadSession, Publish, StoreSession};
use crate::config::{Config, HttpTopicRule};
use crate::http_backend::{rule_for, HttpBackend, HttpCall};
use crate::metrics::{self, DropReason, Path};
use crate::protocol::{
    envelope, parse_envelope, parse_hello, BackendMessage, ClientError, ClientPayload, ErrorCode,
    Hello, DIRECT_PREFIX, WELCOME_TOPIC,
};
use crate::rate_limit::{TokenBucket, Verdict};
use crate::resume::{new_session_id, TokenKey};
use crate::router::{Deliver, Join, Leave, Router, SessionKey, SetPatterns};
use crate::sockjs::{CloseCause, Session, SessionCtx, SessionHandler};
use crate::topics::{Pattern, Topic};

/// Close code and reason for a session that never said hello.
pub const HANDSHAKE_TIMEOUT: (u16, &str) = (4000, "Handshake timeout: send {\"hello\": 1} first");
/// First and longest pause before storing a session record again after the broker refused it.
/// Close code and reason for a client that keeps sending past `limits.burst` refusals.
pub const RATE_LIMIT_ABUSE: (u16, &str) = (1008, "Rate limit exceeded: too many messages");
const SAVE_RETRY_FIRST: Duration = Duration::from_millis(250);
const SAVE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Client messages buffered while a resumed session's record is being loaded.
const MAX_PENDING: usize = 256;

/// What every session of a worker shares.
pub struct Services {
    pub router: Addr<Router>,
    pub broker: Broker,
    /// The cluster directory, when the broker keeps one (Redis).
    pub cluster: Option<Cluster>,
    pub http: Addr<HttpBackend>,
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
    pub legacy_handshake: bool,
    pub http_rules: Arc<Vec<HttpTopicRule>>,
    pub tokens: TokenKey,
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
            legacy_handshake: config.compat.legacy_handshake,
            http_rules: Arc::new(config.http_topics.clone()),
            tokens,
        }
    }
}

/// The stored form of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    whitelist: Vec<String>,
    data: Value,
    created: u64,
}

/// A session after its handshake.
struct Established {
    id: Arc<str>,
    whitelist: Vec<Pattern>,
    data: Value,
    created: u64,
    direct: Pattern,
}

impl Established {
    fn new(id: &str, record: Option<Record>, settings: &SessionSettings) -> Self {
        let (whitelist, data, created) = match record {
            Some(r) => (
                r.whitelist
                    .iter()
                    .filter_map(|p| Pattern::parse(p, usize::MAX).ok())
                    .collect(),
                r.data,
                r.created,
            ),
            None => (settings.default_whitelist.clone(), Value::Null, unix_now()),
        };
        let direct = Pattern::parse(&format!("{DIRECT_PREFIX}{id}"), usize::MAX)
            .expect("session ids are printable");
        Established {
            id: Arc::from(id),
            whitelist,
            data,
            created,
            direct,
        }
    }

    fn allows(&self, topic: &str) -> bool {
        self.whitelist.iter().any(|p| p.matches(topic))
    }

    /// The router's patterns: the whitelist and the direct topic.
    fn patterns(&self) -> Vec<Pattern> {
        let mut patterns = self.whitelist.clone();
        patterns.push(self.direct.clone());
        patterns
    }

    fn record(&self) -> Bytes {
        let record = Record {
            whitelist: self.whitelist.iter().map(|p| p.to_string()).collect(),
            data: self.data.clone(),
            created: self.created,
        };
        Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
    }
}

enum Phase {
    /// Waiting for the first message.
    AwaitingHello,
    /// Loading the record of a resumed session; client messages wait.
    Resuming {
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
}

type Ctx<'a> = SessionCtx<'a, RohrpostSession>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RohrpostSession {
    pub fn new(services: Arc<Services>) -> Self {
        static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
        let bucket = TokenBucket::new(
            services.settings.messages_per_second,
            services.settings.burst,
        );
        RohrpostSession {
            bucket,
            services,
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            phase: Phase::AwaitingHello,
            handshake_timer: None,
            save_retry: None,
            save_backoff: SAVE_RETRY_FIRST,
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
        s.send(&error.to_envelope());
    }

    fn hello(&mut self, message: String, s: &mut Ctx<'_>) {
        let hello = match parse_hello(&message, self.settings().legacy_handshake) {
            Ok(hello) => hello,
            Err(e) => return self.error(e, s),
        };
        match hello {
            Hello::New => self.establish(&new_session_id(), None, false, false, s),
            Hello::Resume(token) => match self.settings().tokens.verify(&token) {
                Some(id) => self.load(id, false, s),
                None => {
                    debug!("resume token refused sockjs={}", s.id());
                    self.establish(&new_session_id(), None, false, false, s)
                }
            },
            Hello::Legacy(id) => self.load(id, true, s),
        }
    }

    /// Loads the record of session `id`, then establishes it (fresh if there is none).
    fn load(&mut self, id: String, legacy: bool, s: &mut Ctx<'_>) {
        self.phase = Phase::Resuming {
            pending: Vec::new(),
        };
        let load = self.services.broker.load.send(LoadSession {
            id: Arc::from(id.as_str()),
        });
        s.context()
            .spawn(actix::fut::wrap_future::<_, Session<Self>>(load).map(
                move |result, act, ctx| {
                    act.with_handler(ctx, |h, s| {
                        let record = match result {
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
                        let found = record.is_some();
                        if legacy {
                            h.establish(&id, record, true, true, s);
                        } else if found {
                            h.establish(&id, record, true, false, s);
                        } else {
                            // Expired or unknown: a new session, never the old id without its record.
                            h.establish(&new_session_id(), None, false, false, s);
                        }
                    })
                },
            ));
    }

    fn establish(
        &mut self,
        id: &str,
        record: Option<Record>,
        resumed: bool,
        legacy: bool,
        s: &mut Ctx<'_>,
    ) {
        if let Some(timer) = self.handshake_timer.take() {
            s.context().cancel_future(timer);
        }
        let pending = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Resuming { pending } => pending,
            _ => Vec::new(),
        };
        let session = Established::new(id, record, self.settings());
        let address = s.context().address();
        self.services.router.do_send(Join {
            key: self.key,
            recipient: address.clone().recipient(),
            restored: address.recipient(),
            patterns: session.patterns(),
        });
        if legacy {
            s.send(&format!("ok:{id}"));
        } else {
            let welcome = serde_json::json!({
                "session": &*session.id,
                "resume": self.settings().tokens.issue(id),
                "resumed": resumed,
                "whitelist": session.whitelist.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            });
            s.send(&envelope(WELCOME_TOPIC, &welcome));
        }
        info!(
            "session established sockjs={} session={} resumed={resumed} legacy={legacy}",
            s.id(),
            session.id
        );
        self.phase = Phase::Established(session);
        self.save(s);
        // Keep the record alive while connected.
        let refresh = (self.settings().ttl / 3).max(Duration::from_secs(1));
        s.context()
            .run_interval(refresh, |act, ctx| act.with_handler(ctx, |h, s| h.save(s)));
        for message in pending {
            self.on_message(message, s);
        }
    }

    fn store_message(&self, session: &Established) -> StoreSession {
        StoreSession {
            id: session.id.clone(),
            record: session.record(),
            ttl: self.settings().ttl,
        }
    }

    /// Stores the session record; while the broker cannot take it, tries again with backoff
    /// (one retry chain at a time, always with the latest record), so that a session made or
    /// changed while Redis is down can still be resumed elsewhere once Redis is back.
    fn save(&mut self, s: &mut Ctx<'_>) {
        let Phase::Established(session) = &self.phase else {
            return;
        };
        if self.save_retry.is_some() {
            return; // the pending retry will store the latest record
        }
        let store = self.services.broker.store.send(self.store_message(session));
        s.context()
            .spawn(
                actix::fut::wrap_future::<_, Session<Self>>(store).map(|result, act, ctx| {
                    if matches!(result, Ok(Ok(()))) {
                        act.with_handler(ctx, |h, _| h.save_backoff = SAVE_RETRY_FIRST);
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
                }),
            );
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
                let e = ClientError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} messages per second (bursts of {}); message not sent",
                        settings.messages_per_second, settings.burst
                    ),
                );
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
            );
            return self.error(e, s);
        }
        let envelope = match parse_envelope(&message, settings.max_topic_len) {
            Ok(e) => e,
            Err(e) => return self.error(e, s),
        };
        let topic = envelope.topic;
        if !session.allows(topic.as_str()) {
            let e = ClientError::new(
                ErrorCode::NotWhitelisted,
                format!("topic {topic} is not on this session's whitelist"),
            )
            .about(topic.as_str());
            return self.error(e, s);
        }
        let payload = serde_json::to_vec(&ClientPayload {
            topic: topic.as_str(),
            data: &envelope.data,
            session_id: &session.id,
            session_data: &session.data,
            from_client: true,
        })
        .map(Bytes::from)
        .unwrap_or_default();
        match rule_for(&settings.http_rules, &topic) {
            Some(rule) => self.call_http(rule, topic, payload, s),
            None => self.publish(topic, payload, s),
        }
    }

    /// Publishes a client message on the broker. The request runs on its own task, not the
    /// session's: a session that ends right after (a drain) must not take its last message
    /// with it. A failure comes back to the session as [`PublishFailed`].
    fn publish(&self, topic: Topic, payload: Bytes, s: &mut Ctx<'_>) {
        let publish = self.services.broker.publish.send(Publish {
            channel: Arc::from(topic.as_str()),
            payload,
        });
        let session = s.context().address();
        actix_rt::spawn(async move {
            let reason = match publish.await {
                Ok(Ok(())) => {
                    metrics::client_message_out(Path::Broker);
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            metrics::backend_error();
            session.do_send(PublishFailed { topic, reason });
        });
    }

    /// Sends a client message to its HTTP rule. Like [`Self::publish`], the request runs on its
    /// own task so that a session ending right after does not cancel it; the answer comes back
    /// as [`HttpAnswer`].
    fn call_http(&self, rule: usize, topic: Topic, payload: Bytes, s: &mut Ctx<'_>) {
        let call = self.services.http.send(HttpCall {
            rule,
            topic: topic.clone(),
            payload,
        });
        let session = s.context().address();
        let started = std::time::Instant::now();
        actix_rt::spawn(async move {
            let result = call.await;
            metrics::http_latency(started.elapsed());
            session.do_send(HttpAnswer { topic, result });
        });
    }

    fn http_answer(&mut self, answer: HttpAnswer, s: &mut Ctx<'_>) {
        let topic = answer.topic;
        let error = match answer.result {
            Ok(Ok(answer)) => {
                metrics::client_message_out(Path::Http);
                let Some(map) = answer else { return };
                metrics::backend_message_in(Path::Http);
                match BackendMessage::from_value(Value::Object(map)) {
                    Ok(message) => {
                        let channel: Arc<str> = Arc::from(topic.as_str());
                        self.apply(&Deliver::new(channel, message), true, s);
                        return;
                    }
                    Err(e) => ClientError::new(
                        ErrorCode::BackendError,
                        format!("backend answer unusable: {e}"),
                    ),
                }
            }
            Ok(Err(e)) => {
                let code = match e.code() {
                    "backend_timeout" => ErrorCode::BackendTimeout,
                    "backend_error" => ErrorCode::BackendError,
                    _ => ErrorCode::BackendUnavailable,
                };
                ClientError::new(code, e.to_string())
            }
            Err(e) => ClientError::new(ErrorCode::BackendUnavailable, e.to_string()),
        };
        metrics::backend_error();
        self.error(error.about(topic.as_str()), s);
    }

    /// Applies a backend message: whitelist changes, session data, then data for the client.
    /// `direct` messages (direct topic, HTTP answers) reach the client whatever its whitelist.
    fn apply(&mut self, delivery: &Deliver, direct: bool, s: &mut Ctx<'_>) {
        let Phase::Established(session) = &mut self.phase else {
            metrics::dropped(DropReason::SessionGone);
            return;
        };
        let message = &delivery.message;
        let mut changed_whitelist = false;
        for p in &message.add {
            match Pattern::parse(p, usize::MAX) {
                Ok(p) if !session.whitelist.contains(&p) => {
                    session.whitelist.push(p);
                    changed_whitelist = true;
                }
                Ok(_) => {}
                Err(e) => debug!("backend pattern ignored pattern={p:?} reason={e}"),
            }
        }
        let before = session.whitelist.len();
        session
            .whitelist
            .retain(|p| !message.remove.iter().any(|r| r == p.as_str()));
        changed_whitelist |= session.whitelist.len() != before;
        let mut changed_data = false;
        if let Some(data) = &message.session_data {
            session.data = data.clone();
            changed_data = true;
        }
        if changed_whitelist {
            self.services.router.do_send(SetPatterns {
                key: self.key,
                patterns: session.patterns(),
            });
        }
        if changed_whitelist || changed_data {
            self.save(s);
        }
        let Phase::Established(session) = &self.phase else {
            return;
        };
        if let Some(encoded) = &delivery.encoded {
            if direct || session.allows(delivery.topic()) {
                metrics::delivered();
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

impl SessionHandler for RohrpostSession {
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
            Phase::Resuming { pending } => {
                if pending.len() < MAX_PENDING {
                    pending.push(message);
                } else {
                    let e = ClientError::new(
                        ErrorCode::BackendUnavailable,
                        "too many messages while the session is being resumed",
                    );
                    self.error(e, s);
                }
            }
            Phase::Established(_) => self.client_message(message, s),
            Phase::Closed => {}
        }
    }

    fn on_close(&mut self, cause: CloseCause) {
        if let Phase::Established(session) = std::mem::replace(&mut self.phase, Phase::Closed) {
            self.services.router.do_send(Leave { key: self.key });
            // Last save, refreshing the TTL: the client may resume within `sessions.ttl`.
            self.services
                .broker
                .store
                .do_send(self.store_message(&session));
            info!("session closed session={} cause={cause:?}", session.id);
        }
    }
}

/// The outcome of an HTTP rule's request, for the session that sent the message.
#[derive(Message)]
#[rtype(result = "()")]
struct HttpAnswer {
    topic: Topic,
    result: Result<HttpResult, actix::MailboxError>,
}

type HttpResult =
    Result<Option<serde_json::Map<String, Value>>, crate::http_backend::HttpBackendError>;

impl Handler<HttpAnswer> for Session<RohrpostSession> {
    type Result = ();

    fn handle(&mut self, msg: HttpAnswer, ctx: &mut Context<Self>) {
        self.with_handler(ctx, |h, s| h.http_answer(msg, s));
    }
}

/// A client message the broker did not take; the client is told.
#[derive(Message)]
#[rtype(result = "()")]
struct PublishFailed {
    topic: Topic,
    reason: String,
}

impl Handler<PublishFailed> for Session<RohrpostSession> {
    type Result = ();

    fn handle(&mut self, msg: PublishFailed, ctx: &mut Context<Self>) {
        self.with_handler(ctx, |h, s| {
            let e = ClientError::new(
                ErrorCode::BackendUnavailable,
                format!("message not delivered: {}", msg.reason),
            )
            .about(msg.topic.as_str());
            h.error(e, s);
        });
    }
}

/// The broker is back after an outage: store the record again (the server may have lost it).
impl Handler<LinkRestored> for Session<RohrpostSession> {
    type Result = ();

    fn handle(&mut self, _msg: LinkRestored, ctx: &mut Context<Self>) {
        self.with_handler(ctx, |h, s| h.save(s));
    }
}

/// Backend messages handed over by the topic router.
impl Handler<Deliver> for Session<RohrpostSession> {
    type Result = ();

    fn handle(&mut self, delivery: Deliver, ctx: &mut Context<Self>) {
        self.with_handler(ctx, |h, s| {
            let direct = matches!(&h.phase, Phase::Established(e) if *delivery.channel == *e.direct.as_str());
            h.apply(&delivery, direct, s);
        });
    }
}
