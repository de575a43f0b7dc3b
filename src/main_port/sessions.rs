//! The server API's presence and session control, cluster-wide through the broker's session
//! directory ([`crate::broker::directory`]):
//!
//! - `GET /api/sessions?topic=T` — the sessions whose whitelist matches topic `T` now (every
//!   session without `topic`), each with its `sessionData`; `&count=1` for the count alone;
//! - `GET /api/sessions/{id}` — one session: connected or not, its worker, whitelist and data;
//! - `DELETE /api/sessions/{id}` (optional body `{"reason": "..."}`) — ends the session for good
//!   (`session.closed`, reason `kicked`): its connection closes with code 4005 and it may not
//!   resume.
//!
//! A session is listed from its welcome until its `session.closed`, connected or within
//! `sessions.resume_grace` of losing its connection.

use std::sync::Arc;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::api::{bad_request, body, refuse_session_call, refuse_unauthorized, unavailable};
use super::MainPort;
use crate::broker::directory::{closing, EndEntry, GetEntry, ListEntries};
use crate::broker::log::PublishLogged;
use crate::broker::{BrokerError, Publish};
use crate::protocol::DIRECT_PREFIX;
use crate::topics::{Pattern, Topic};

/// Largest body of a kick (its reason), in bytes.
const KICK_BODY_LIMIT: usize = 4096;
/// Longest kick reason: it becomes the close frame's reason, which websockets cap at 123 bytes.
const MAX_REASON: usize = 120;

/// The query of `GET /api/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    count: Option<String>,
}

/// Whether the entry `entry`'s whitelist matches `topic`.
fn matches(entry: &Value, topic: &str) -> bool {
    (entry["whitelist"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .filter_map(|p| Pattern::parse(p, usize::MAX).ok())
        .any(|p| p.matches(topic))
}

/// The entries whose whitelist matches `topic` (all, without one).
pub fn select(entries: &[Bytes], topic: Option<&str>) -> Vec<Value> {
    (entries.iter())
        .filter_map(|e| serde_json::from_slice::<Value>(e).ok())
        .filter(|e| topic.is_none_or(|t| matches(e, t)))
        .collect()
}

/// `GET /api/sessions`.
pub async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    port: web::Data<MainPort>,
) -> HttpResponse {
    if let Some(refusal) = refuse_unauthorized(&req, &port) {
        return refusal;
    }
    let topic = query.topic.as_deref();
    if let Some(topic) = topic {
        if let Err(e) = Topic::parse(topic, port.max_topic_len) {
            return bad_request(format_args!("topic {topic:?}: {e}"));
        }
    }
    let count_only = match query.count.as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(other) => return bad_request(format_args!("count {other:?}: 1 or 0 expected")),
    };
    let entries = match port.broker.directory.list.send(ListEntries).await {
        Ok(Ok(entries)) => entries,
        Ok(Err(e)) => return unavailable(&e),
        Err(e) => return unavailable(&BrokerError::Unavailable(e.to_string())),
    };
    let sessions = select(&entries, topic);
    let mut answer = serde_json::json!({ "count": sessions.len() });
    if let Some(topic) = topic {
        answer["topic"] = Value::from(topic);
    }
    if !count_only {
        answer["sessions"] = Value::Array(sessions);
    }
    HttpResponse::Ok().json(answer)
}

/// `GET /api/sessions/{id}`.
pub async fn one(
    req: HttpRequest,
    id: web::Path<String>,
    port: web::Data<MainPort>,
) -> HttpResponse {
    let id = id.into_inner();
    if let Some(refusal) = refuse_session_call(&req, &id, &port) {
        return refusal;
    }
    match entry(&port, &id).await {
        Ok(Some(entry)) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(entry),
        Ok(None) => no_session(&id),
        Err(refusal) => refusal,
    }
}

/// The directory entry of session `id`; the API's answer when the broker cannot tell.
pub async fn entry(port: &MainPort, id: &str) -> Result<Option<Bytes>, HttpResponse> {
    let get = GetEntry { id: Arc::from(id) };
    match port.broker.directory.get.send(get).await {
        Ok(Ok(entry)) => Ok(entry),
        Ok(Err(e)) => Err(unavailable(&e)),
        Err(e) => Err(unavailable(&BrokerError::Unavailable(e.to_string()))),
    }
}

/// 404 for a session that is not there (never was, or has ended).
pub fn no_session(id: &str) -> HttpResponse {
    HttpResponse::NotFound()
        .content_type(ContentType::plaintext())
        .body(format!(
            "no session {id:?}: it never existed, or it has ended\n"
        ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kick {
    #[serde(default)]
    reason: Option<String>,
}

/// `DELETE /api/sessions/{id}`.
pub async fn kick(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    port: web::Data<MainPort>,
) -> HttpResponse {
    let id = id.into_inner();
    if let Some(refusal) = refuse_session_call(&req, &id, &port) {
        return refusal;
    }
    let body = match body(payload, KICK_BODY_LIMIT, &port).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let kick: Kick = if body.iter().all(u8::is_ascii_whitespace) {
        Kick::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(kick) => kick,
            Err(e) => return bad_request(format_args!("body: {e}")),
        }
    };
    let reason = kick.reason.unwrap_or_default();
    if reason.len() > MAX_REASON {
        return bad_request(format_args!(
            "reason: {} bytes, at most {MAX_REASON} (it is the close frame's reason)",
            reason.len()
        ));
    }
    let detail = (!reason.is_empty()).then_some(reason.as_str());
    let end = EndEntry {
        id: Arc::from(id.as_str()),
        closing: closing("kicked", detail),
    };
    match port.broker.directory.end.send(end).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return no_session(&id),
        Ok(Err(e)) => return unavailable(&e),
        Err(e) => return unavailable(&BrokerError::Unavailable(e.to_string())),
    }
    // Through the log: a worker that is reconnecting to the broker gets it on its return.
    let notice = serde_json::json!({ "rohrpostKick": reason });
    let channel: Arc<str> = Arc::from(format!("{DIRECT_PREFIX}{id}"));
    let payload = Bytes::from(notice.to_string());
    let told = if port.history {
        let publish = PublishLogged { channel, payload };
        (port.broker.publish_logged.send(publish).await).map(|r| r.map(|_| ()))
    } else {
        port.broker.publish.send(Publish { channel, payload }).await
    };
    let failed = match told {
        Ok(Ok(())) => return HttpResponse::Ok().json(serde_json::json!({ "kicked": id })),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    // The session has ended (its session.closed is out), but its connection may not have
    // heard, and would list itself again: asking again ends it again.
    HttpResponse::ServiceUnavailable()
        .content_type(ContentType::plaintext())
        .body(format!(
            "session {id:?} ended, but its connection was not told to close ({failed}); \
             send the DELETE again\n"
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, whitelist: &[&str]) -> Bytes {
        Bytes::from(
            serde_json::json!({"sessionId": id, "whitelist": whitelist, "sessionData": null})
                .to_string(),
        )
    }

    #[test]
    fn a_topic_selects_the_sessions_whose_whitelist_matches_it() {
        let entries = [
            entry("a", &["chat.room.*"]),
            entry("b", &["chat.room.x", "anonym.*"]),
            entry("c", &["anonym.*"]),
            Bytes::from_static(b"not json"),
        ];
        let ids = |topic| -> Vec<String> {
            select(&entries, topic)
                .iter()
                .map(|e| e["sessionId"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(Some("chat.room.x")), ["a", "b"]);
        assert_eq!(ids(Some("chat.room.y")), ["a"]);
        assert_eq!(ids(Some("nothing")), Vec::<String>::new());
        assert_eq!(ids(None), ["a", "b", "c"]);
    }
}
