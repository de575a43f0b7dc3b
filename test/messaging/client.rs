//! A Rohrpost client on the raw websocket, with bounded receives.
//!
//! One websocket text message is one SockJS message, so the client sends and receives JSON text
//! as is. Receives that must happen panic after [`WAIT`]; checks that something does *not*
//! happen take an explicit, short window.

use std::time::Duration;

use awc::ws::{CloseReason, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::common::{WsTransport, WAIT};

/// Topic of the server's answer to the handshake.
pub const WELCOME: &str = "rohrpost.welcome";
/// Topic of error reports.
pub const ERROR: &str = "rohrpost.error";

thread_local! {
    /// One HTTP client per test thread: without a connection limit, because every open
    /// websocket holds one of the connector's slots.
    static HTTP: awc::Client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .disable_timeout()
        .finish();
}

/// The test thread's HTTP client (for readiness probes, too).
pub fn http() -> awc::Client {
    HTTP.with(awc::Client::clone)
}

/// What the client sees next.
#[derive(Debug)]
pub enum Event {
    Text(String),
    /// A close frame (with its reason, if any), the end of the stream or a broken connection.
    Closed(Option<CloseReason>),
}

/// The data of `rohrpost.welcome`.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub session: String,
    pub resume: String,
    pub resumed: bool,
    pub whitelist: Vec<String>,
}

impl Welcome {
    pub fn parse(data: &Value) -> Welcome {
        let text = |key: &str| {
            data[key]
                .as_str()
                .unwrap_or_else(|| panic!("welcome field {key:?} is a string: {data}"))
                .to_owned()
        };
        let session = text("session");
        assert!(
            session.len() == 32 && session.bytes().all(|b| b.is_ascii_hexdigit()),
            "session ids are 32 hex digits, got {session:?}"
        );
        let whitelist = data["whitelist"]
            .as_array()
            .unwrap_or_else(|| panic!("welcome whitelist is an array: {data}"))
            .iter()
            .map(|p| {
                p.as_str()
                    .expect("whitelist entries are strings")
                    .to_owned()
            })
            .collect();
        Welcome {
            session,
            resume: text("resume"),
            resumed: data["resumed"]
                .as_bool()
                .unwrap_or_else(|| panic!("welcome field \"resumed\" is a bool: {data}")),
            whitelist,
        }
    }

    /// The session's direct topic, `rohrpost.client.<id>`.
    pub fn direct_topic(&self) -> String {
        format!("rohrpost.client.{}", self.session)
    }
}

/// One websocket connection to a worker.
pub struct Client {
    ws: Box<dyn WsTransport>,
}

impl Client {
    /// Opens the websocket; the handshake is up to the caller.
    pub async fn connect(url: &str) -> Client {
        Client::connect_with(url, &[]).await
    }

    /// Opens the websocket with these request headers.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Client {
        let mut request = http().ws(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let connecting = request.connect();
        let (_res, framed) = actix_rt::time::timeout(WAIT, connecting)
            .await
            .unwrap_or_else(|_| panic!("websocket {url}: no handshake within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("websocket {url}: {e}"));
        Client {
            ws: Box::new(framed),
        }
    }

    /// Starts a new session.
    pub async fn hello(&mut self) -> Welcome {
        self.send_json(&json!({"hello": 1})).await;
        self.expect_welcome().await
    }

    /// Asks to resume the session `token` was issued for.
    pub async fn resume(&mut self, token: &str) -> Welcome {
        self.send_json(&json!({"hello": 1, "resume": token})).await;
        self.expect_welcome().await
    }

    async fn expect_welcome(&mut self) -> Welcome {
        let data = self.expect_topic(WELCOME).await;
        Welcome::parse(&data)
    }

    pub async fn send_text(&mut self, text: &str) {
        actix_rt::time::timeout(WAIT, self.ws.send(Message::Text(text.to_owned().into())))
            .await
            .unwrap_or_else(|_| panic!("websocket send not done within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("websocket send: {e}"));
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends the envelope `{"topic", "data"}`.
    pub async fn publish(&mut self, topic: &str, data: Value) {
        self.send_json(&json!({"topic": topic, "data": data})).await;
    }

    /// The next text message or close, if one comes within `within`. Pings and pongs are
    /// skipped, and so are plain position notices (`rohrpost.pos` without `recovered: false`:
    /// the server tells every quiet session now and then how far it is caught up, like a
    /// heartbeat).
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            return Some(match next {
                Some(Ok(Frame::Text(text))) => {
                    let text = String::from_utf8(text.to_vec()).expect("text frame is UTF-8");
                    if is_progress_notice(&text) {
                        continue;
                    }
                    Event::Text(text)
                }
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
                Some(Ok(Frame::Close(reason))) => Event::Closed(reason),
                Some(Err(_)) | None => Event::Closed(None),
                Some(Ok(other)) => panic!("websocket: unexpected frame {other:?}"),
            });
        }
    }

    /// The next text message; panics on a close or after [`WAIT`].
    pub async fn recv_text(&mut self) -> String {
        match self.next_event(WAIT).await {
            Some(Event::Text(text)) => text,
            Some(Event::Closed(reason)) => {
                panic!("websocket closed ({reason:?}) instead of a message")
            }
            None => panic!("no message within {WAIT:?}"),
        }
    }

    /// The next message as a `(topic, data)` envelope.
    pub async fn recv(&mut self) -> (String, Value) {
        let text = self.recv_text().await;
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("server message is not JSON ({e}): {text:?}"));
        let topic = value["topic"]
            .as_str()
            .unwrap_or_else(|| panic!("server message without a string topic: {text}"))
            .to_owned();
        let object = value.as_object().expect("an envelope is an object");
        let positioned = object.get("pos").is_some_and(Value::is_string);
        assert!(
            object.contains_key("data") && object.len() == 2 + usize::from(positioned),
            "an envelope has exactly topic and data (and a pos, if logged): {text}"
        );
        (topic, value["data"].clone())
    }

    /// Asserts that the next message is on `topic` and returns its data.
    pub async fn expect_topic(&mut self, topic: &str) -> Value {
        let (got, data) = self.recv().await;
        assert_eq!(got, topic, "topic of the next message (data {data})");
        data
    }

    /// Asserts that the next message is exactly `{"topic": topic, "data": data}`.
    pub async fn expect(&mut self, topic: &str, data: Value) {
        let got = self.recv().await;
        assert_eq!(got, (topic.to_owned(), data), "next message");
    }

    /// Asserts that the next message is a `rohrpost.error` with `code` and returns its data.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let data = self.expect_topic(ERROR).await;
        assert_eq!(data["code"], code, "error code in {data}");
        assert!(
            data["message"].as_str().is_some_and(|m| !m.is_empty()),
            "an error has a message: {data}"
        );
        data
    }

    /// Asserts that nothing arrives within `window` and the connection stays open.
    pub async fn expect_quiet(&mut self, window: Duration) {
        if let Some(event) = self.next_event(window).await {
            panic!("expected nothing within {window:?}, got {event:?}");
        }
    }

    /// Asserts that the server closes the connection within `within`, and returns the reason.
    pub async fn expect_closed(&mut self, within: Duration) -> Option<CloseReason> {
        match self.next_event(within).await {
            Some(Event::Closed(reason)) => reason,
            Some(Event::Text(text)) => panic!("expected a close, got the message {text:?}"),
            None => panic!("the server did not close the connection within {within:?}"),
        }
    }

    /// Closes the connection from the client side.
    pub async fn close(mut self) {
        let _ = actix_rt::time::timeout(WAIT, self.ws.send(Message::Close(None))).await;
    }
}

/// Whether `text` is a plain position notice: `rohrpost.pos` saying nothing was lost.
pub fn is_progress_notice(text: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    value["topic"] == "rohrpost.pos" && value["data"]["recovered"] != false
}
