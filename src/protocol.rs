//! Rohrpost's wire protocol: what clients and backends send, and what they get.
//!
//! Every client message is one SockJS message holding JSON:
//! - the handshake, first: `{"hello": 1}` or `{"hello": 1, "resume": "<token>", "since"?: pos}`,
//!   either with `"token": "<JWT>"` when the client authenticates (or, in legacy mode, a bare
//!   non-JSON string naming the session);
//! - then envelopes `{"topic": string, "data": any JSON value, "id"?: string}`, and
//!   `{"refresh": "<JWT>"}` to replace a token before it expires.
//!
//! The server answers the handshake on topic [`WELCOME_TOPIC`], acknowledges messages that carry
//! an id on [`ACK_TOPIC`], reports problems on [`ERROR_TOPIC`] as `{"code", "message", "topic"?,
//! "id"?}`, tells how far a session is caught up on [`POSITION_TOPIC`], confirms a refresh on
//! [`REFRESHED_TOPIC`], and passes backend
//! messages on as envelopes (with `"pos"` when they came through the publication log).
//! Backends publish [`BackendMessage`]s: `{"data"?, "topic"?, "add"?, "remove"?, "sessionData"?}`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::broker::log::Position;
use crate::topics::{Topic, TopicError};

/// Topic of the server's answer to the handshake.
pub const WELCOME_TOPIC: &str = "rohrpost.welcome";
/// Topic of error reports to the client.
pub const ERROR_TOPIC: &str = "rohrpost.error";
/// Prefix of each session's direct topic, `rohrpost.client.<sessionId>`.
pub const DIRECT_PREFIX: &str = "rohrpost.client.";
/// Topic of acknowledgements of client messages that carry an id: `{"id"}`.
pub const ACK_TOPIC: &str = "rohrpost.ack";
/// Topic of position notices: `{"pos", "recovered"?: false}`.
pub const POSITION_TOPIC: &str = "rohrpost.pos";
/// Topic of the answer to a refresh: `{"exp"}`, the new token's expiry (Unix seconds).
pub const REFRESHED_TOPIC: &str = "rohrpost.refreshed";
/// The longest client message id, in bytes.
pub const MAX_MESSAGE_ID: usize = 128;

/// What went wrong with a client message, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    HandshakeRequired,
    InvalidJson,
    InvalidMessage,
    InvalidTopic,
    NotWhitelisted,
    TooLarge,
    RateLimited,
    BackendUnavailable,
    BackendUncertain,
    BackendTimeout,
    BackendError,
    /// The session was refused (bad token, none where required, the connect hook said no), or
    /// a refresh was.
    Unauthorized,
    /// The connect hook could not be asked: try again later.
    AuthUnavailable,
}

impl ErrorCode {
    /// The code string on the wire (and the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::HandshakeRequired => "handshake_required",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::InvalidTopic => "invalid_topic",
            ErrorCode::NotWhitelisted => "not_whitelisted",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BackendUnavailable => "backend_unavailable",
            ErrorCode::BackendUncertain => "backend_uncertain",
            ErrorCode::BackendTimeout => "backend_timeout",
            ErrorCode::BackendError => "backend_error",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::AuthUnavailable => "auth_unavailable",
        }
    }
}

/// An error report for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
    /// The topic the failed message was about, when it had a valid one.
    pub topic: Option<String>,
    /// The id the failed message carried.
    pub id: Option<String>,
}

impl ClientError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ClientError {
            code,
            message: message.into(),
            topic: None,
            id: None,
        }
    }

    pub fn about(mut self, topic: &str) -> Self {
        self.topic = Some(topic.to_string());
        self
    }

    /// The error is about the message with this id.
    pub fn for_id(mut self, id: Option<&str>) -> Self {
        self.id = id.map(str::to_string);
        self
    }

    /// The envelope sent to the client.
    pub fn to_envelope(&self) -> String {
        envelope(ERROR_TOPIC, &self.data())
    }

    /// The envelope's data: `{"code", "message", "topic"?, "id"?}`.
    pub fn data(&self) -> Value {
        let mut data = serde_json::json!({
            "code": self.code.as_str(),
            "message": self.message,
        });
        if let Some(topic) = &self.topic {
            data["topic"] = Value::String(topic.clone());
        }
        if let Some(id) = &self.id {
            data["id"] = Value::String(id.clone());
        }
        data
    }
}

/// The acknowledgement of the client message `id`.
pub fn ack(id: &str) -> String {
    envelope(ACK_TOPIC, &serde_json::json!({ "id": id }))
}

/// `{"topic": topic, "data": data}` as JSON text.
pub fn envelope(topic: &str, data: &Value) -> String {
    #[derive(Serialize)]
    struct Envelope<'a> {
        topic: &'a str,
        data: &'a Value,
    }
    serde_json::to_string(&Envelope { topic, data }).unwrap_or_default()
}

/// `{"topic": topic, "data": data, "pos": position}` as JSON text (no `pos` when `None`).
pub fn envelope_at(topic: &str, data: &Value, position: Option<&Position>) -> String {
    #[derive(Serialize)]
    struct Envelope<'a> {
        topic: &'a str,
        data: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        pos: Option<String>,
    }
    let pos = position.map(ToString::to_string);
    serde_json::to_string(&Envelope { topic, data, pos }).unwrap_or_default()
}

/// The first message of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// `{"hello": 1}`: a new session.
    New,
    /// `{"hello": 1, "resume": token, "since"?: pos}`: continue a session, recovering what was
    /// published for it after `since` (kept as sent; one that is no position cannot be
    /// recovered from).
    Resume {
        token: String,
        since: Option<String>,
    },
    /// Legacy 0.x: a bare string naming the session (its first dot removed).
    Legacy(String),
}

/// The first message of a session, with the client's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub hello: Hello,
    /// `"token"`: a JWT (or whatever the connect hook understands).
    pub token: Option<String>,
}

impl From<Hello> for Handshake {
    fn from(hello: Hello) -> Self {
        Handshake { hello, token: None }
    }
}

/// Parses the handshake. `legacy` allows the 0.x form: a first message that is no JSON object
/// names the session ([`crate::legacy::id::session_id`]).
pub fn parse_hello(message: &str, legacy: bool) -> Result<Handshake, ClientError> {
    let required = || {
        ClientError::new(
            ErrorCode::HandshakeRequired,
            "the first message must be {\"hello\": 1} or {\"hello\": 1, \"resume\": \"<token>\"}",
        )
    };
    let object = match serde_json::from_str::<Value>(message) {
        Ok(Value::Object(object)) => object,
        // The 0.x client's ids are rarely JSON too (`12345`), but they are never objects.
        _ if legacy => {
            return crate::legacy::id::session_id(message)
                .map(|id| Hello::Legacy(id).into())
                .ok_or_else(required)
        }
        _ => return Err(required()),
    };
    if object.get("hello") != Some(&Value::from(1)) {
        return Err(required());
    }
    let since = match object.get("since") {
        None | Some(Value::Null) => None,
        Some(Value::String(pos)) => Some(pos.clone()),
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::InvalidMessage,
                "\"since\" must be a \"pos\" string the server sent",
            ))
        }
    };
    let token = match object.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => Some(token.clone()),
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::InvalidMessage,
                "\"token\" must be a string (a JWT)",
            ))
        }
    };
    let hello = match object.get("resume") {
        None | Some(Value::Null) => Hello::New,
        Some(Value::String(token)) => Hello::Resume {
            token: token.clone(),
            since,
        },
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::InvalidMessage,
                "\"resume\" must be the token string from rohrpost.welcome",
            ))
        }
    };
    Ok(Handshake { hello, token })
}

/// The token of a refresh, `{"refresh": "<JWT>"}`, if `message` is one (it is no envelope: look
/// here only once [`parse_envelope`] refused it).
pub fn parse_refresh(message: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Refresh {
        refresh: String,
    }
    serde_json::from_str::<Refresh>(message)
        .ok()
        .map(|r| r.refresh)
}

/// Whether `message` is a goodbye, `{"bye": 1}`: the client ends its session for good (it is
/// no envelope: look here only once [`parse_envelope`] refused it).
pub fn parse_bye(message: &str) -> bool {
    #[derive(Deserialize)]
    struct Bye {
        bye: Value,
    }
    serde_json::from_str::<Bye>(message)
        .is_ok_and(|b| matches!(b.bye, Value::Bool(true)) || b.bye.as_u64() == Some(1))
}

/// A client message after the handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub topic: Topic,
    pub data: Value,
    /// The client's id for the message: it wants an ack.
    pub id: Option<String>,
}

/// Parses an envelope; `data` may be any JSON value (absent counts as `null`).
pub fn parse_envelope(message: &str, max_topic_len: usize) -> Result<Envelope, ClientError> {
    let value: Value = serde_json::from_str(message)
        .map_err(|e| ClientError::new(ErrorCode::InvalidJson, format!("not JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(ClientError::new(
            ErrorCode::InvalidMessage,
            "a message is an object {\"topic\": string, \"data\": any}",
        ));
    };
    let topic = match object.remove("topic") {
        Some(Value::String(t)) => t,
        _ => {
            return Err(ClientError::new(
                ErrorCode::InvalidMessage,
                "a message needs a \"topic\" string",
            ))
        }
    };
    let id = match object.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if (1..=MAX_MESSAGE_ID).contains(&id.len()) => Some(id),
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::InvalidMessage,
                format!("\"id\" must be a string of 1 to {MAX_MESSAGE_ID} bytes"),
            ))
        }
    };
    let topic = Topic::parse(&topic, max_topic_len).map_err(|e: TopicError| {
        ClientError::new(ErrorCode::InvalidTopic, e.to_string()).for_id(id.as_deref())
    })?;
    let data = object.remove("data").unwrap_or(Value::Null);
    Ok(Envelope { topic, data, id })
}

/// What a backend sends (on the broker, as an HTTP answer, or through the server API).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendMessage {
    /// Present (even as `null`) means: deliver to the client.
    #[serde(default, deserialize_with = "present")]
    pub data: Option<Value>,
    /// Topic the client sees; defaults to the channel.
    #[serde(default)]
    pub topic: Option<String>,
    /// Patterns to add to the whitelist of each session reached.
    #[serde(default)]
    pub add: Vec<String>,
    /// Exact pattern strings to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Replaces the session data when present.
    #[serde(default, deserialize_with = "present")]
    pub session_data: Option<Value>,
    /// Set on messages clients published; those never reach clients.
    #[serde(default)]
    pub from_client: bool,
    /// On a direct topic: the session was resumed by another connection, whose nonce this is;
    /// every other connection of the session closes (sent by Rohrpost itself).
    #[serde(default, rename = "rohrpostTakeover")]
    pub takeover: Option<String>,
    /// On a direct topic: the session was kicked (`DELETE /api/sessions/{id}`) with this
    /// reason; its connection closes and it may not resume (sent by Rohrpost itself).
    #[serde(default, rename = "rohrpostKick")]
    pub kick: Option<String>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Why a backend payload was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendMessageError {
    #[error("payload is not JSON")]
    NotJson,
    #[error("payload is not a JSON object")]
    NotObject,
    #[error("payload fields are malformed: {0}")]
    Malformed(String),
}

impl BackendMessage {
    /// Parses a backend payload: a JSON object, anything else is refused.
    pub fn parse(payload: &[u8]) -> Result<BackendMessage, BackendMessageError> {
        let value: Value =
            serde_json::from_slice(payload).map_err(|_| BackendMessageError::NotJson)?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<BackendMessage, BackendMessageError> {
        if !value.is_object() {
            return Err(BackendMessageError::NotObject);
        }
        serde_json::from_value(value).map_err(|e| BackendMessageError::Malformed(e.to_string()))
    }
}

/// What a backend receives for a client message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientPayload<'a> {
    pub topic: &'a str,
    pub data: &'a Value,
    pub session_id: &'a str,
    pub session_data: &'a Value,
    pub from_client: bool,
    /// The client's id for the message, so that a backend can drop a resent duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(message: &str, legacy: bool) -> Result<Hello, ClientError> {
        parse_hello(message, legacy).map(|h| h.hello)
    }

    #[test]
    fn hello_forms() {
        assert_eq!(hello(r#"{"hello":1}"#, false), Ok(Hello::New));
        assert_eq!(
            hello(r#"{"hello":1,"resume":"t"}"#, false),
            Ok(Hello::Resume {
                token: "t".into(),
                since: None
            })
        );
        assert_eq!(
            hello(r#"{"hello":1,"resume":"t","since":"e:4"}"#, false),
            Ok(Hello::Resume {
                token: "t".into(),
                since: Some("e:4".into())
            })
        );
        assert_eq!(
            hello(r#"{"hello":1,"resume":"t","since":4}"#, false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            hello(r#"{"topic":"x"}"#, false).unwrap_err().code,
            ErrorCode::HandshakeRequired
        );
        assert_eq!(
            hello("abc.def", false).unwrap_err().code,
            ErrorCode::HandshakeRequired
        );
        assert_eq!(hello("abc.def", true), Ok(Hello::Legacy("abcdef".into())));
        assert_eq!(hello("a.b.c", true), Ok(Hello::Legacy("ab.c".into())));
        // JSON that is no object is a 0.x id; an object is never one.
        assert_eq!(hello("12345", true), Ok(Hello::Legacy("12345".into())));
        assert_eq!(
            hello("12345", false).unwrap_err().code,
            ErrorCode::HandshakeRequired
        );
        assert_eq!(
            hello(r#"{"hello":2}"#, true).unwrap_err().code,
            ErrorCode::HandshakeRequired
        );
        assert_eq!(hello(r#"{"hello":1}"#, true), Ok(Hello::New));
        for wildcard in ["*", "a*", "*.x", "ab*cd", "a b", ""] {
            assert_eq!(
                hello(wildcard, true).unwrap_err().code,
                ErrorCode::HandshakeRequired,
                "{wildcard:?}"
            );
        }
    }

    #[test]
    fn hello_carries_a_token_and_refresh_is_its_own_message() {
        let h = parse_hello(r#"{"hello":1,"token":"a.b.c"}"#, false).unwrap();
        assert_eq!(h.hello, Hello::New);
        assert_eq!(h.token.as_deref(), Some("a.b.c"));
        let h = parse_hello(r#"{"hello":1,"resume":"t","token":"a.b.c"}"#, false).unwrap();
        assert!(matches!(h.hello, Hello::Resume { .. }));
        assert_eq!(h.token.as_deref(), Some("a.b.c"));
        assert_eq!(parse_hello(r#"{"hello":1}"#, false).unwrap().token, None);
        assert_eq!(
            parse_hello(r#"{"hello":1,"token":7}"#, false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            parse_refresh(r#"{"refresh":"a.b.c"}"#).as_deref(),
            Some("a.b.c")
        );
        assert_eq!(parse_refresh(r#"{"refresh":7}"#), None);
        assert_eq!(parse_refresh(r#"{"topic":"x"}"#), None);
    }

    #[test]
    fn envelopes() {
        let e = parse_envelope(r#"{"topic":"a.b","data":null}"#, 256).unwrap();
        assert_eq!(e.topic.as_str(), "a.b");
        assert_eq!(e.data, Value::Null);
        let code = |m: &str| parse_envelope(m, 256).unwrap_err().code;
        assert_eq!(code("{"), ErrorCode::InvalidJson);
        assert_eq!(code("[1]"), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"data":1}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"topic":7}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"topic":"a b"}"#), ErrorCode::InvalidTopic);
        assert_eq!(code(r#"{"topic":""}"#), ErrorCode::InvalidTopic);
        let e = parse_envelope(r#"{"topic":"a","id":"m1"}"#, 256).unwrap();
        assert_eq!(e.id.as_deref(), Some("m1"));
        assert_eq!(code(r#"{"topic":"a","id":""}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"topic":"a","id":7}"#), ErrorCode::InvalidMessage);
        let bad_topic = parse_envelope(r#"{"topic":"a b","id":"m2"}"#, 256).unwrap_err();
        assert_eq!(bad_topic.id.as_deref(), Some("m2"));
    }

    #[test]
    fn backend_messages_distinguish_null_from_absent() {
        let m = BackendMessage::parse(br#"{"data":null}"#).unwrap();
        assert_eq!(m.data, Some(Value::Null));
        let m = BackendMessage::parse(br#"{"add":["members.*"],"sessionData":{"n":1}}"#).unwrap();
        assert_eq!(m.data, None);
        assert_eq!(m.add, vec!["members.*"]);
        assert_eq!(m.session_data, Some(serde_json::json!({"n":1})));
        assert_eq!(
            BackendMessage::parse(b"[1]"),
            Err(BackendMessageError::NotObject)
        );
        assert_eq!(
            BackendMessage::parse(b"nope"),
            Err(BackendMessageError::NotJson)
        );
    }

    #[test]
    fn error_envelope() {
        let e = ClientError::new(ErrorCode::NotWhitelisted, "no").about("x.y");
        let v: Value = serde_json::from_str(&e.to_envelope()).unwrap();
        assert_eq!(v["topic"], ERROR_TOPIC);
        assert_eq!(v["data"]["code"], "not_whitelisted");
        assert_eq!(v["data"]["topic"], "x.y");
    }
}
