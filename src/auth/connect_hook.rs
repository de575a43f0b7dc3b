//! The connect hook: `hooks.connect_url` decides about each session before its welcome.
//!
//! The request, a POST with a JSON body ([`ConnectRequest`]):
//!
//! ```json
//! {"sessionId": "5f0c…", "resume": false, "address": "203.0.113.7",
//!  "headers": {"Cookie": "sid=…", "Origin": "https://app.example", "User-Agent": "…",
//!              "Authorization": "Bearer …"},
//!  "query": "room=lobby", "token": "<the hello's token, if any>"}
//! ```
//!
//! `headers` holds those of the four that the request opening the transport carried (for
//! websockets the upgrade request, for HTTP transports the first receiving request); `query`
//! is that request's query string; `address` its peer address (`null` if unknown).
//!
//! The answer ([`decide`]):
//! - **2xx**: admitted. The body, empty or a JSON object, is applied like a message on the
//!   session's direct topic before the welcome: `add`, `remove`, `sessionData` (anything else,
//!   `data` included, is ignored).
//! - **other non-2xx but 5xx** (401, 403, …): refused. A JSON body may say how:
//!   `{"code": 4403, "reason": "Not logged in"}` (a code in 4000..=4999 that Rohrpost does not
//!   use itself; else 4003 "Forbidden").
//! - **5xx, no answer within `hooks.connect_timeout`, no connection**: the hook failed;
//!   `hooks.connect_on_error` decides ([`Auth::after_hook`](super::Auth::after_hook)).
//!
//! The request goes through the worker's [`HttpBackend`](crate::http_backend::HttpBackend) as a
//! [`Post`], sharing its client and its `http.max_in_flight` bound.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use log::{info, warn};
use serde::{Deserialize, Serialize};

use super::Refusal;
use crate::config::{ConnectOnError, HooksConfig};
use crate::http_backend::{HttpBackendError, Post, Reply};
use crate::protocol::BackendMessage;
use crate::sockjs::Opening;

/// The request headers the hook sees, by the names it sees them under.
pub const FORWARDED_HEADERS: [&str; 4] = ["Cookie", "Origin", "User-Agent", "Authorization"];

/// `hooks.connect_*`: where to ask, how long to wait, what a failure means.
pub struct ConnectHook {
    url: Arc<str>,
    /// The URL without user info, for log lines.
    shown: String,
    timeout: Duration,
    pub on_error: ConnectOnError,
}

impl ConnectHook {
    /// The hook, when `hooks.connect_url` is set.
    pub fn from_config(hooks: &HooksConfig) -> Option<ConnectHook> {
        let url = hooks.connect_url.as_deref()?;
        Some(ConnectHook {
            url: Arc::from(url),
            shown: crate::http_backend::without_user_info(url),
            timeout: hooks.connect_timeout,
            on_error: hooks.connect_on_error,
        })
    }

    /// The POST for one session.
    pub fn post(&self, request: &ConnectRequest<'_>) -> Post {
        Post {
            url: self.url.clone(),
            body: Bytes::from(serde_json::to_vec(request).unwrap_or_default()),
            timeout: self.timeout,
        }
    }

    /// What the hook's answer (or failure) to the POST for `session` means.
    pub fn answer(
        &self,
        session: &str,
        result: Result<Result<Reply, HttpBackendError>, actix::MailboxError>,
    ) -> HookAnswer {
        let result = result.unwrap_or_else(|e| Err(HttpBackendError::Unavailable(e.to_string())));
        let answer = decide(result);
        match &answer {
            HookAnswer::Admitted(_) => {}
            HookAnswer::Refused(refusal) => info!(
                "connect hook refused session={session} code={} reason={:?}",
                refusal.code, refusal.reason
            ),
            HookAnswer::Failed(why) => warn!(
                "connect hook failed session={session} url={} on_error={:?} error={why}",
                self.shown, self.on_error
            ),
        }
        answer
    }
}

/// What the opening request of a session showed, kept for the hook (only while it is on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectInfo {
    pub address: Option<IpAddr>,
    /// [`FORWARDED_HEADERS`] that were present; repeated ones joined (`; ` for cookies).
    pub headers: BTreeMap<&'static str, String>,
    pub query: String,
}

impl ConnectInfo {
    pub fn of(opening: &Opening) -> ConnectInfo {
        let mut headers = BTreeMap::new();
        for name in FORWARDED_HEADERS {
            let values: Vec<String> = opening
                .headers
                .get_all(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            if !values.is_empty() {
                let separator = if name == "Cookie" { "; " } else { ", " };
                headers.insert(name, values.join(separator));
            }
        }
        ConnectInfo {
            address: opening.address,
            headers,
            query: opening.query.clone(),
        }
    }
}

/// The body of the hook's request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest<'a> {
    pub session_id: &'a str,
    pub resume: bool,
    pub address: Option<String>,
    pub headers: &'a BTreeMap<&'static str, String>,
    pub query: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<&'a str>,
}

impl<'a> ConnectRequest<'a> {
    pub fn new(
        session_id: &'a str,
        resume: bool,
        info: &'a ConnectInfo,
        token: Option<&'a str>,
    ) -> Self {
        ConnectRequest {
            session_id,
            resume,
            address: info.address.map(|a| a.to_string()),
            headers: &info.headers,
            query: &info.query,
            token,
        }
    }
}

/// What the hook said.
#[derive(Debug, Clone, PartialEq)]
pub enum HookAnswer {
    /// 2xx: the grant to apply (empty for an empty body).
    Admitted(BackendMessage),
    /// A non-2xx answer below 500.
    Refused(Refusal),
    /// No usable answer (why, for the log): the policy decides.
    Failed(String),
}

/// A refusal's body: `{"code"?, "reason"?}`.
#[derive(Deserialize, Default)]
struct RefusalBody {
    code: Option<u64>,
    reason: Option<String>,
}

/// What an answer (or a failure) means; see the module docs.
pub fn decide(result: Result<Reply, HttpBackendError>) -> HookAnswer {
    let reply = match result {
        Ok(reply) => reply,
        Err(e) => return HookAnswer::Failed(e.to_string()),
    };
    match reply.status {
        200..=299 => {
            if reply.body.iter().all(u8::is_ascii_whitespace) {
                return HookAnswer::Admitted(BackendMessage::default());
            }
            match BackendMessage::parse(&reply.body) {
                Ok(message) => HookAnswer::Admitted(BackendMessage {
                    add: message.add,
                    remove: message.remove,
                    session_data: message.session_data,
                    ..BackendMessage::default()
                }),
                Err(e) => HookAnswer::Failed(format!(
                    "status {} with an unusable body: {e}",
                    reply.status
                )),
            }
        }
        500.. => HookAnswer::Failed(format!("status {}", reply.status)),
        _ => {
            let body: RefusalBody = serde_json::from_slice(&reply.body).unwrap_or_default();
            HookAnswer::Refused(Refusal::by_hook(body.code, body.reason.as_deref()))
        }
    }
}
