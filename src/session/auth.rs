//! The session's side of connect-time authentication ([`crate::auth`]).
//!
//! Once the hello has named its session (a new id, or a resumed one with its record),
//! [`RohrpostSession::admit`] checks the hello's token and asks the connect hook, holding the
//! client's messages meanwhile ([`Phase::Admitting`]), then joins with what they grant (before
//! the welcome) — or refuses the session: a `rohrpost.error`, then the refusal's close frame.
//!
//! A session admitted by a token is *bound* to it ([`Bound`], kept in the session record so
//! that it travels with the session to any worker): it closes with 4004 when the token stops
//! being valid (`exp` plus `auth.leeway`), unless the client sends `{"refresh": "<JWT>"}`, a
//! valid token for the same `sub`, before then. A resume inherits the binding: without a token
//! it is welcome while the binding is still valid; with a token of another subject, or once
//! the binding has expired, it becomes a new session (nothing of the old one carried over).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use log::{debug, info};
use serde::{Deserialize, Serialize};

use super::{Ctx, Phase, Record, RohrpostSession, Session, Start};
use crate::auth::connect_hook::{ConnectInfo, ConnectRequest};
use crate::auth::token::Claims;
use crate::auth::{Auth, Refusal, TOKEN_EXPIRED};
use crate::protocol::{envelope, ClientError, ErrorCode, REFRESHED_TOPIC};
use crate::resume::new_session_id;
use crate::sockjs::Opening;

/// Longest single wait of the expiry timer; a later expiry is reached in several.
const MAX_EXPIRY_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The token a session was admitted with, as far as its life depends on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Bound {
    /// The token's `sub`: a refresh or a resume with a token must carry the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) sub: Option<String>,
    /// Unix seconds: the session closes then unless refreshed.
    pub(super) until: u64,
}

impl Bound {
    fn of(claims: &Claims) -> Bound {
        Bound {
            sub: claims.subject.clone(),
            until: claims.valid_until,
        }
    }

    /// How long until it expires (zero once it has).
    fn remaining(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Duration::from_secs(self.until).saturating_sub(now)
    }
}

/// A session's authentication state.
#[derive(Default)]
pub(super) struct SessionAuth {
    /// The hello's `token`, until the session is admitted.
    pub(super) credential: Option<String>,
    /// What the opening request showed, kept only while a connect hook is configured.
    info: Option<ConnectInfo>,
    /// Closes the session when its binding expires.
    expiry: Option<SpawnHandle>,
}

impl SessionAuth {
    pub(super) fn new(auth: &Auth, opening: &Opening) -> SessionAuth {
        SessionAuth {
            info: auth.hook.as_ref().map(|_| ConnectInfo::of(opening)),
            ..SessionAuth::default()
        }
    }
}

impl RohrpostSession {
    /// Admits session `id` (with its `record` when resumed), then joins it; see the module docs.
    pub(super) fn admit(
        &mut self,
        id: String,
        record: Option<Record>,
        mut start: Start,
        s: &mut Ctx<'_>,
    ) {
        let services = self.services.clone();
        let auth = &services.settings.auth;
        if !auth.is_on() {
            return self.join(&id, record, start, s);
        }
        let token = self.auth.credential.take();
        let claims = match auth.check_token(token.as_deref()) {
            Ok(claims) => claims,
            Err(refusal) => return self.refuse(&id, refusal, s),
        };
        let (id, record, bound) = match inherit(id, record, &start, claims.as_ref()) {
            Inherited::Resume { id, record, bound } => (id, record, bound),
            Inherited::Fresh { why } => {
                debug!("resume not inherited sockjs={} reason={why}", s.id());
                start = Start::fresh();
                let bound = claims.as_ref().map(Bound::of);
                (new_session_id(), None, bound)
            }
            Inherited::Refused(refusal) => return self.refuse("-", refusal, s),
        };
        if let Some(claims) = claims {
            start.grants.push(claims.grant);
        }
        start.bound = bound;
        if auth.hook.is_some() {
            return self.ask_hook(id, record, start, token, s);
        }
        match auth.without_hook(start.bound.is_some()) {
            Ok(()) => self.join(&id, record, start, s),
            Err(refusal) => self.refuse(&id, refusal, s),
        }
    }

    /// Asks the connect hook about session `id`, holding the client's messages meanwhile, then
    /// joins with its grant or refuses (under `hooks.connect_on_error` if it cannot be asked).
    fn ask_hook(
        &mut self,
        id: String,
        record: Option<Record>,
        mut start: Start,
        token: Option<String>,
        s: &mut Ctx<'_>,
    ) {
        let services = self.services.clone();
        let Some(hook) = &services.settings.auth.hook else {
            return self.join(&id, record, start, s);
        };
        let info = self.auth.info.take().unwrap_or_default();
        let request = ConnectRequest::new(&id, start.resumed, &info, token.as_deref());
        let asked = services.http.send(hook.post(&request));
        let pending = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Resuming { pending, .. } => pending,
            _ => Vec::new(),
        };
        self.phase = Phase::Admitting {
            pending,
            legacy: start.legacy,
        };
        let has_token = start.bound.is_some();
        let started = std::time::Instant::now();
        let answered = move |result, act: &mut Session<Self>, ctx: &mut Context<Session<Self>>| {
            act.with_handler(ctx, |h: &mut Self, s| {
                let (Phase::Admitting { .. }, Some(hook)) =
                    (&h.phase, &services.settings.auth.hook)
                else {
                    return; // closed meanwhile
                };
                let answer = hook.answer(&id, result);
                debug!(
                    "connect hook answered sockjs={} session={id} elapsed_us={}",
                    s.id(),
                    started.elapsed().as_micros()
                );
                match services.settings.auth.after_hook(answer, has_token) {
                    Ok(grant) => {
                        start.grants.extend(grant);
                        h.join(&id, record, start, s);
                    }
                    Err(refusal) => h.refuse(&id, refusal, s),
                }
            })
        };
        s.context()
            .spawn(actix::fut::wrap_future::<_, Session<Self>>(asked).map(answered));
    }

    /// Tells the client why and closes the session; it never started.
    fn refuse(&mut self, id: &str, refusal: Refusal, s: &mut Ctx<'_>) {
        info!(
            "session refused sockjs={} session={id} code={} reason={:?}",
            s.id(),
            refusal.code,
            refusal.reason
        );
        self.phase = Phase::Closed;
        s.send(&refusal.error.to_envelope());
        s.close(refusal.code, &refusal.reason);
    }

    /// The session's binding, once it is joining or established.
    fn bound(&self) -> Option<&Bound> {
        match &self.phase {
            Phase::Joining { session, .. } | Phase::Established(session) => session.bound.as_ref(),
            _ => None,
        }
    }

    /// (Re)starts the expiry timer for the session's binding, if it has one.
    pub(super) fn arm_expiry(&mut self, s: &mut Ctx<'_>) {
        if let Some(timer) = self.auth.expiry.take() {
            s.context().cancel_future(timer);
        }
        let Some(wait) = self.bound().map(Bound::remaining) else {
            return;
        };
        let wait = wait.min(MAX_EXPIRY_WAIT);
        self.auth.expiry = Some(s.context().run_later(wait, |act, ctx| {
            act.with_handler(ctx, |h, s| {
                h.auth.expiry = None;
                h.expiry_due(s);
            })
        }));
    }

    fn expiry_due(&mut self, s: &mut Ctx<'_>) {
        match self.bound().map(Bound::remaining) {
            None => {}
            Some(left) if !left.is_zero() => self.arm_expiry(s), // refreshed, or a long wait
            Some(_) => {
                info!("session token expired sockjs={}", s.id());
                let e = ClientError::new(
                    ErrorCode::Unauthorized,
                    "token expired: send {\"refresh\": \"<JWT>\"} before it does",
                );
                s.send(&e.to_envelope());
                s.close(TOKEN_EXPIRED.0, TOKEN_EXPIRED.1);
            }
        }
    }

    /// `{"refresh": token}`: a valid token for the session's subject moves its expiry on.
    pub(super) fn refresh(&mut self, token: &str, s: &mut Ctx<'_>) {
        let refused = |message: &str| {
            ClientError::new(
                ErrorCode::Unauthorized,
                format!("refresh refused: {message}"),
            )
        };
        let services = self.services.clone();
        let Some(verifier) = &services.settings.auth.tokens else {
            return self.error(refused("this server verifies no tokens"), s);
        };
        let Phase::Established(session) = &mut self.phase else {
            return;
        };
        let Some(bound) = &mut session.bound else {
            return self.error(refused("this session was not opened with a token"), s);
        };
        match verifier.verify(token) {
            Ok(claims) if claims.subject == bound.sub => {
                *bound = Bound::of(&claims);
                debug!("session token refreshed session={}", session.id);
                s.send(&envelope(
                    REFRESHED_TOPIC,
                    &serde_json::json!({"exp": claims.expires}),
                ));
                self.arm_expiry(s);
                self.save(s);
            }
            Ok(_) => self.error(refused("the token is for another subject"), s),
            Err(e) => self.error(refused(&e.to_string()), s),
        }
    }
}

/// What a resumed session keeps of its binding, given the hello's token.
enum Inherited {
    /// Go on with this session (its binding: the token's, or the record's while still valid).
    Resume {
        id: String,
        record: Option<Record>,
        bound: Option<Bound>,
    },
    /// Start a new session instead (why, for the log).
    Fresh {
        why: &'static str,
    },
    Refused(Refusal),
}

fn inherit(
    id: String,
    record: Option<Record>,
    start: &Start,
    claims: Option<&Claims>,
) -> Inherited {
    let carried = record.as_ref().and_then(|r| r.token.clone());
    match (claims, carried) {
        (Some(claims), Some(carried)) if claims.subject != carried.sub => Inherited::Fresh {
            why: "token of another subject",
        },
        (Some(claims), _) => Inherited::Resume {
            id,
            record,
            bound: Some(Bound::of(claims)),
        },
        // A legacy client cannot show a token: it may not take over a token's session.
        (None, Some(_)) if start.legacy => Inherited::Refused(Refusal::required()),
        (None, Some(carried)) if carried.remaining().is_zero() => Inherited::Fresh {
            why: "its token expired",
        },
        (None, carried) => Inherited::Resume {
            id,
            record,
            bound: carried,
        },
    }
}
