//! The server API, for backends that prefer HTTP to Redis: publish a backend message, send one
//! to a session, start a staged restart. Enabled when `api.key` is set; every call needs
//! `Authorization: Bearer <api.key>`, compared in constant time.

use std::sync::Arc;

use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::MainPort;
use crate::broker::log::PublishLogged;
use crate::broker::Publish;
use crate::protocol::DIRECT_PREFIX;
use crate::request_body::{self, BodyError};
use crate::supervisor::actor::StartRoll;
use crate::topics::Topic;

/// Largest body of an API call, in bytes.
pub const API_BODY_LIMIT: usize = 256 * 1024;

/// Body of both calls: a backend message. `topic` is the channel for `/api/publish` (required)
/// and the topic the client sees for `/api/sessions/{id}` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiMessage {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Value>,
    #[serde(default)]
    add: Option<Vec<String>>,
    #[serde(default)]
    remove: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    session_data: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl ApiMessage {
    /// The backend message as published on the broker.
    fn to_message(&self, topic: Option<&str>) -> Value {
        let mut m = Map::new();
        if let Some(data) = &self.data {
            m.insert("data".into(), data.clone());
        }
        if let Some(topic) = topic {
            m.insert("topic".into(), Value::String(topic.to_string()));
        }
        if let Some(add) = &self.add {
            m.insert("add".into(), add.clone().into());
        }
        if let Some(remove) = &self.remove {
            m.insert("remove".into(), remove.clone().into());
        }
        if let Some(sd) = &self.session_data {
            m.insert("sessionData".into(), sd.clone());
        }
        Value::Object(m)
    }
}

pub(super) fn bad_request(message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type(ContentType::plaintext())
        .body(format!("{message}\n"))
}

/// `POST /api/publish`: `{"topic", "data"?, "add"?, "remove"?, "sessionData"?}` published on
/// `topic`, exactly like a backend's Redis PUBLISH.
pub async fn publish(
    req: HttpRequest,
    payload: web::Payload,
    port: web::Data<MainPort>,
) -> HttpResponse {
    if let Some(refusal) = refuse_unauthorized(&req, &port) {
        return refusal;
    }
    let body = match message(payload, &port).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let Some(topic) = &body.topic else {
        return bad_request("body: missing field `topic` (the channel to publish on)");
    };
    if let Err(e) = Topic::parse(topic, port.max_topic_len) {
        return bad_request(format_args!("topic {topic:?}: {e}"));
    }
    send(&port, topic, body.to_message(None)).await
}

/// `POST /api/sessions/{id}`: a message on the session's direct topic; 404 when the session
/// is not in the session directory (it never existed, or it has ended).
pub async fn to_session(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    port: web::Data<MainPort>,
) -> HttpResponse {
    let id = id.into_inner();
    if let Some(refusal) = refuse_session_call(&req, &id, &port) {
        return refusal;
    }
    let body = match message(payload, &port).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    match super::sessions::entry(&port, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => return super::sessions::no_session(&id),
        Err(refusal) => return refusal,
    }
    let channel = format!("{DIRECT_PREFIX}{id}");
    send(&port, &channel, body.to_message(body.topic.as_deref())).await
}

/// The refusal of a `/api/sessions/{id}` call, if any: the caller must hold `api.key`, and the
/// id be printable ASCII (not empty).
pub(super) fn refuse_session_call(
    req: &HttpRequest,
    id: &str,
    port: &MainPort,
) -> Option<HttpResponse> {
    if let Some(refusal) = refuse_unauthorized(req, port) {
        return Some(refusal);
    }
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(bad_request("session id: printable characters expected"));
    }
    None
}

/// 503: the broker could not answer (`e`).
pub(super) fn unavailable(e: &crate::broker::BrokerError) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .content_type(ContentType::plaintext())
        .body(format!("{e}\n"))
}

/// Reads a call's body (at most [`API_BODY_LIMIT`] bytes, within `http.body_timeout`) as a
/// backend message.
async fn message(payload: web::Payload, port: &MainPort) -> Result<ApiMessage, HttpResponse> {
    let body = body(payload, API_BODY_LIMIT, port).await?;
    serde_json::from_slice(&body).map_err(|e| bad_request(format_args!("body: {e}")))
}

/// Reads an API call's body, at most `limit` bytes within `http.body_timeout`; the answer when
/// it cannot (413, 408 or 400, closing the connection, whose rest is unread).
pub(super) async fn body(
    payload: web::Payload,
    limit: usize,
    port: &MainPort,
) -> Result<Bytes, HttpResponse> {
    request_body::read(payload, limit, port.body_timeout)
        .await
        .map_err(|e| {
            let mut res = match e {
                BodyError::TooLarge { .. } => HttpResponse::PayloadTooLarge(),
                BodyError::TimedOut { .. } => HttpResponse::RequestTimeout(),
                BodyError::Broken(_) => HttpResponse::BadRequest(),
            };
            res.force_close();
            res.content_type(ContentType::plaintext())
                .body(format!("{e}\n"))
        })
}

/// Publishes through the publication log (when history is enabled): 202 with the position,
/// 503 when the broker certainly did not take it, 504 when it may have (retrying may then
/// deliver it twice).
async fn send(port: &MainPort, channel: &str, message: Value) -> HttpResponse {
    let channel_name: Arc<str> = Arc::from(channel);
    let payload = Bytes::from(message.to_string());
    let published = if port.history {
        let publish = PublishLogged {
            channel: channel_name,
            payload,
        };
        (port.broker.publish_logged.send(publish).await).map(|r| r.map(Some))
    } else {
        let publish = Publish {
            channel: channel_name,
            payload,
        };
        (port.broker.publish.send(publish).await).map(|r| r.map(|()| None))
    };
    match published {
        Ok(Ok(Some(position))) => HttpResponse::Accepted().json(serde_json::json!({
            "published": channel,
            "pos": position.to_string(),
        })),
        Ok(Ok(None)) => HttpResponse::Accepted().json(serde_json::json!({ "published": channel })),
        Ok(Err(e)) if !e.not_done() => HttpResponse::GatewayTimeout()
            .content_type(ContentType::plaintext())
            .body(format!("{e}\n")),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable()
            .content_type(ContentType::plaintext())
            .body(format!("{e}\n")),
        Err(e) => HttpResponse::ServiceUnavailable()
            .content_type(ContentType::plaintext())
            .body(format!("broker unavailable: {e}\n")),
    }
}

/// `POST /api/restart`: starts a staged restart (needs `api.key`).
pub async fn restart(req: HttpRequest, port: web::Data<MainPort>) -> HttpResponse {
    if let Some(refusal) = refuse_unauthorized(&req, &port) {
        return refusal;
    }
    let started = port.supervisor.send(StartRoll).await.unwrap_or(false);
    HttpResponse::Accepted().json(serde_json::json!({ "started": started }))
}

/// Whether `given` is `key`, in time that depends on neither's content nor length: the two
/// SHA-256 digests are compared in constant time (a plain comparison of slices of different
/// lengths would give the key's length away).
fn same_key(given: &str, key: &str) -> bool {
    let given = ring::digest::digest(&ring::digest::SHA256, given.as_bytes());
    let key = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    bool::from(given.as_ref().ct_eq(key.as_ref()))
}

/// Checks the bearer token against `api.key` in constant time; the refusal when it does not match.
pub(super) fn refuse_unauthorized(req: &HttpRequest, port: &MainPort) -> Option<HttpResponse> {
    let Some(key) = &port.api_key else {
        return Some(
            HttpResponse::NotFound()
                .content_type(ContentType::plaintext())
                .body("The server API is disabled: set api.key to enable it.\n"),
        );
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same_key(given, key) {
        None
    } else {
        Some(
            HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .content_type(ContentType::plaintext())
                .body("Missing or wrong bearer token.\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::same_key;

    #[test]
    fn only_the_exact_key_matches() {
        let key = "s3cret-key";
        assert!(same_key(key, key));
        for wrong in [
            "",
            "s3cret-ke",
            "s3cret-key ",
            "S3cret-key",
            "s3cret-kez",
            "x",
        ] {
            assert!(!same_key(wrong, key), "{wrong:?}");
        }
    }
}
