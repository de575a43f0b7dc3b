//! Connect-time authentication: who a session is, decided before its welcome.
//!
//! Two ways, both optional, and usable together:
//!
//! - a **token in the hello** ([`token`]): `{"hello": 1, "token": "<JWT>"}`, verified in the
//!   worker with the keys of `[auth]`, no network round trip; its `exp` closes the session
//!   unless the client sends `{"refresh": "<JWT>"}` in time;
//! - a **connect hook** ([`connect_hook`]): a POST to `hooks.connect_url` with the session id,
//!   the client's address and the headers and query string of the request that opened the
//!   transport (and the token, if any), whose answer admits or refuses the session.
//!
//! Either grants what a message on the session's direct topic would (`add`, `remove`,
//! `sessionData`), applied before the welcome (the token's first, then the hook's), or refuses
//! the session with a [`Refusal`]: a `rohrpost.error` envelope, then a close frame. The
//! session's side of it (when to ask, what to hold meanwhile) is in `session/auth.rs`; this
//! module decides.
//!
//! ```text
//! hello ─▶ token? ──invalid──▶ refused (4003)
//!            │valid / none
//!            ▼
//!          hook? ──2xx──▶ grant ─▶ join ─▶ welcome
//!            │   ──4xx──▶ refused (the hook's code and reason, or 4003 Forbidden)
//!            │   ──5xx, timeout, no connection──▶ hooks.connect_on_error: refuse (1013) | allow
//!            ▼ none
//!          auth.required and no valid token? ──▶ refused (4003)
//! ```
//!
//! Close codes ([`FORBIDDEN`], [`TOKEN_EXPIRED`], [`AUTH_UNAVAILABLE`]) stay clear of the
//! others Rohrpost sends (4000 handshake timeout, 4001 taken over, 4005 kicked), which a hook may not
//! choose either ([`RESERVED_CODES`]).

pub mod connect_hook;
pub mod crypto;
pub mod token;

use crate::config::{Config, ConnectOnError};
use crate::protocol::{BackendMessage, ClientError, ErrorCode};

use connect_hook::{ConnectHook, HookAnswer};
use token::{Claims, Expectations, TokenError, TokenVerifier};

/// A session refused at its hello: an invalid token, none where one is required, or the
/// connect hook said no without a code of its own.
pub const FORBIDDEN: (u16, &str) = (4003, "Forbidden");
/// A session whose token expired (`exp` plus `auth.leeway`) without a refresh.
pub const TOKEN_EXPIRED: (u16, &str) = (4004, "Token expired");
/// The connect hook could not be asked (timeout, no connection, 5xx) and
/// `hooks.connect_on_error = "refuse"`: try again later (1013, "Try Again Later").
pub const AUTH_UNAVAILABLE: (u16, &str) = (1013, "Authentication unavailable; try again later");
/// Close codes with a meaning of their own for clients, which a connect hook's refusal may not
/// use (it gets [`FORBIDDEN`]'s code instead): handshake timeout, taken over, token expired.
pub const RESERVED_CODES: [u16; 4] = [4000, 4001, TOKEN_EXPIRED.0, crate::session::KICKED.0];
/// The longest close reason: a websocket close frame holds at most 123 bytes of it.
pub const MAX_REASON_BYTES: usize = 123;

/// Why a session is refused: what its client is told, and the close frame it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: String,
    pub error: ClientError,
}

impl Refusal {
    /// A token that did not verify: 4003 with the level of the problem ("Invalid token",
    /// "Token expired", ...).
    pub fn token(e: TokenError) -> Refusal {
        let message = e.to_string();
        let mut reason = message.clone();
        reason[..1].make_ascii_uppercase();
        Refusal {
            code: FORBIDDEN.0,
            reason,
            error: ClientError::new(ErrorCode::Unauthorized, message),
        }
    }

    /// `auth.required` and neither a valid token nor the hook's approval.
    pub fn required() -> Refusal {
        Refusal {
            code: FORBIDDEN.0,
            reason: "Authentication required".into(),
            error: ClientError::new(
                ErrorCode::Unauthorized,
                "authentication required: send {\"hello\": 1, \"token\": \"<JWT>\"}",
            ),
        }
    }

    /// The connect hook refused: its own close code (4000..=4999 and not reserved, else 4003)
    /// and reason (else "Forbidden"), cut to [`MAX_REASON_BYTES`].
    pub fn by_hook(code: Option<u64>, reason: Option<&str>) -> Refusal {
        let code = code
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (4000..=4999).contains(c) && !RESERVED_CODES.contains(c))
            .unwrap_or(FORBIDDEN.0);
        let reason = reason.filter(|r| !r.trim().is_empty()).map_or_else(
            || FORBIDDEN.1.to_string(),
            |r| truncate(r, MAX_REASON_BYTES),
        );
        Refusal {
            code,
            error: ClientError::new(ErrorCode::Unauthorized, format!("refused: {reason}")),
            reason,
        }
    }

    /// The hook could not be asked and the policy says refuse.
    pub fn unavailable() -> Refusal {
        Refusal {
            code: AUTH_UNAVAILABLE.0,
            reason: AUTH_UNAVAILABLE.1.into(),
            error: ClientError::new(
                ErrorCode::AuthUnavailable,
                "authentication is unavailable right now; try again later",
            ),
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What every session of a worker uses to authenticate (from `[auth]` and `[hooks]`).
pub struct Auth {
    /// `None` when no key is configured: tokens then reach the hook unverified.
    pub tokens: Option<TokenVerifier>,
    pub hook: Option<ConnectHook>,
    /// `auth.required`.
    pub required: bool,
}

impl Auth {
    pub fn from_config(config: &Config) -> Auth {
        let auth = &config.auth;
        let expect = Expectations {
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            leeway: auth.leeway.as_secs(),
        };
        Auth {
            tokens: TokenVerifier::new(&auth.keys, &expect),
            hook: ConnectHook::from_config(&config.hooks),
            required: auth.required,
        }
    }

    /// Whether sessions are checked at all (else the hello goes straight on).
    pub fn is_on(&self) -> bool {
        self.tokens.is_some() || self.hook.is_some() || self.required
    }

    /// The hello's token, verified when keys are configured: its claims, none (no token, or
    /// nothing to verify it with), or the refusal of an invalid one.
    pub fn check_token(&self, token: Option<&str>) -> Result<Option<Claims>, Refusal> {
        match (token, &self.tokens) {
            (Some(token), Some(verifier)) => {
                verifier.verify(token).map(Some).map_err(Refusal::token)
            }
            _ => Ok(None),
        }
    }

    /// Without a hook: admitted unless a token is required and there is no valid one.
    pub fn without_hook(&self, has_token: bool) -> Result<(), Refusal> {
        if self.required && !has_token {
            Err(Refusal::required())
        } else {
            Ok(())
        }
    }

    /// The hook's answer under the policy: its grant (none when the hook could not be asked and
    /// `connect_on_error = "allow"`), or the refusal. With `auth.required`, "allow" still needs
    /// a valid token: a session no one vouched for is refused as [`Refusal::unavailable`].
    pub fn after_hook(
        &self,
        answer: HookAnswer,
        has_token: bool,
    ) -> Result<Option<BackendMessage>, Refusal> {
        let on_error = self
            .hook
            .as_ref()
            .map_or(ConnectOnError::Refuse, |h| h.on_error);
        match answer {
            HookAnswer::Admitted(grant) => Ok(Some(grant)),
            HookAnswer::Refused(refusal) => Err(refusal),
            HookAnswer::Failed(_) if on_error == ConnectOnError::Refuse => {
                Err(Refusal::unavailable())
            }
            HookAnswer::Failed(_) if self.required && !has_token => Err(Refusal::unavailable()),
            HookAnswer::Failed(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
