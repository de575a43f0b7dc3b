//! A Rohrpost client on the raw websocket (`/rohrpost/websocket`), where one text message is one
//! SockJS message holding JSON.
//!
//! Unlike a conformance test, these tests expect connections to break (workers are drained,
//! killed and replaced), so connecting, the handshake and sending return errors instead of
//! panicking, and the caller decides whether to retry. Every wait is bounded.

use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::common::{WsTransport, WAIT};
use crate::main_port::handout;
use crate::process::POLL;

/// Topic of the server's answer to the handshake.
pub const WELCOME: &str = "rohrpost.welcome";
/// Topic of the server's error reports.
pub const ERROR: &str = "rohrpost.error";
/// Close code of a draining worker: reconnect through `/connect` and resume.
pub const SERVICE_RESTART: u16 = 1012;

thread_local! {
    /// One HTTP client per test thread, without a connection limit: every open websocket holds
    /// one of the connector's slots, and a test opens hundreds.
    static HTTP: awc::Client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .disable_timeout()
        .finish();
}

/// The test thread's HTTP client.
pub fn http() -> awc::Client {
    HTTP.with(awc::Client::clone)
}

/// What the server sends a client, as [`Client::next_event`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An envelope `{"topic", "data"}`.
    Message { topic: String, data: Value },
    /// A close frame with its code, or `None` for a connection that just ended.
    Closed(Option<u16>),
}

/// What the server sends a client, as it came ([`Client::next_envelope`]): for the tests that
/// look at a message's position and at a close's reason.
#[allow(dead_code)] // used by test/delivery.rs
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// The whole envelope: `topic`, `data`, and `pos` when the message came from the log.
    Envelope(Value),
    /// A close frame's code and reason, or `None` for a connection that just ended.
    Closed(Option<(u16, String)>),
}

/// The data of `rohrpost.welcome`.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub session: String,
    pub resume: String,
    pub resumed: bool,
    pub whitelist: Vec<String>,
    /// Where the session is caught up to (absent when the server keeps no history).
    #[allow(dead_code)] // used by test/delivery.rs
    pub pos: Option<String>,
    /// On a resume: whether every logged message since the hello's `since` follows.
    #[allow(dead_code)] // used by test/delivery.rs
    pub recovered: Option<bool>,
}

impl Welcome {
    fn parse(data: &Value) -> Result<Welcome, String> {
        let text = |key: &str| {
            data[key]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("welcome without a string {key:?}: {data}"))
        };
        let whitelist = data["whitelist"]
            .as_array()
            .ok_or_else(|| format!("welcome without a whitelist: {data}"))?
            .iter()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect();
        Ok(Welcome {
            session: text("session")?,
            resume: text("resume")?,
            resumed: data["resumed"]
                .as_bool()
                .ok_or_else(|| format!("welcome without a bool \"resumed\": {data}"))?,
            whitelist,
            pos: data["pos"].as_str().map(str::to_owned),
            recovered: data["recovered"].as_bool(),
        })
    }

    /// The session's direct topic, where a backend reaches it alone.
    pub fn direct_topic(&self) -> String {
        format!("rohrpost.client.{}", self.session)
    }
}

/// One websocket connection to a worker.
pub struct Client {
    ws: Box<dyn WsTransport>,
    closed: bool,
}

impl Client {
    /// Opens the websocket to `url`; the handshake is up to the caller.
    pub async fn connect(url: &str) -> Result<Client, String> {
        let connecting = http().ws(url).connect();
        let (_res, framed) = actix_rt::time::timeout(WAIT, connecting)
            .await
            .map_err(|_| format!("websocket {url}: no handshake within {WAIT:?}"))?
            .map_err(|e| format!("websocket {url}: {e}"))?;
        Ok(Client {
            ws: Box::new(framed),
            closed: false,
        })
    }

    /// Opens the websocket and starts a new session; panics on failure.
    pub async fn new_session(url: &str) -> (Client, Welcome) {
        let mut client = Client::connect(url).await.unwrap_or_else(|e| panic!("{e}"));
        let welcome = client
            .handshake(json!({"hello": 1}))
            .await
            .unwrap_or_else(|e| panic!("hello on {url}: {e}"));
        (client, welcome)
    }

    /// Asks to resume the session `token` was issued for.
    pub async fn resume(&mut self, token: &str) -> Result<Welcome, String> {
        self.resume_since(token, None).await
    }

    /// Asks to resume the session `token` was issued for, caught up to position `since`: the
    /// server is to replay what the session missed after it.
    pub async fn resume_since(
        &mut self,
        token: &str,
        since: Option<&str>,
    ) -> Result<Welcome, String> {
        let mut hello = json!({"hello": 1, "resume": token});
        if let Some(since) = since {
            hello["since"] = since.into();
        }
        self.handshake(hello).await
    }

    /// Sends `hello` and expects the welcome as the very next message.
    pub async fn handshake(&mut self, hello: Value) -> Result<Welcome, String> {
        self.send_text(hello.to_string()).await?;
        match self.next_event(WAIT).await {
            Some(Event::Message { topic, data }) if topic == WELCOME => Welcome::parse(&data),
            other => Err(format!("expected the welcome, got {other:?}")),
        }
    }

    /// Sends the envelope `{"topic", "data"}`.
    pub async fn publish(&mut self, topic: &str, data: Value) -> Result<(), String> {
        self.send_json(&json!({"topic": topic, "data": data})).await
    }

    /// Sends any JSON message (an envelope with an `id`, say).
    pub async fn send_json(&mut self, message: &Value) -> Result<(), String> {
        self.send_text(message.to_string()).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), String> {
        if self.closed {
            return Err("the connection is closed".into());
        }
        actix_rt::time::timeout(WAIT, self.ws.send(Message::Text(text.into())))
            .await
            .map_err(|_| format!("websocket send not done within {WAIT:?}"))?
            .map_err(|e| format!("websocket send: {e}"))
    }

    /// The next message or close, if one comes within `within`. A close frame is answered, which
    /// completes the closing handshake the server waits for.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            return Some(match self.next_envelope(left).await? {
                // The server tells quiet sessions now and then how far they are caught up, like
                // a heartbeat; only `recovered: false` says something happened.
                Received::Envelope(envelope)
                    if envelope["topic"] == "rohrpost.pos"
                        && envelope["data"]["recovered"] != false =>
                {
                    continue
                }
                Received::Envelope(envelope) => Event::Message {
                    topic: envelope["topic"].as_str().unwrap_or_default().to_owned(),
                    data: envelope["data"].clone(),
                },
                Received::Closed(close) => Event::Closed(close.map(|(code, _)| code)),
            });
        }
    }

    /// [`Client::next_event`], with the whole envelope and the close's reason.
    pub async fn next_envelope(&mut self, within: Duration) -> Option<Received> {
        if self.closed {
            return Some(Received::Closed(None));
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            let received = match next {
                Some(Ok(Frame::Text(text))) => Received::Envelope(parse_envelope(&text)),
                Some(Ok(Frame::Close(reason))) => {
                    let _ = actix_rt::time::timeout(WAIT, self.ws.send(Message::Close(None))).await;
                    Received::Closed(
                        reason.map(|r| (u16::from(r.code), r.description.unwrap_or_default())),
                    )
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Received::Closed(None),
            };
            if matches!(received, Received::Closed(_)) {
                self.closed = true;
            }
            return Some(received);
        }
    }

    /// Closes the connection from the client side, as a browser leaving the page does, and waits
    /// for the server's answer to the close.
    pub async fn close(mut self) {
        let _ = actix_rt::time::timeout(WAIT, self.ws.send(Message::Close(None))).await;
        while let Some(Event::Message { .. }) = self.next_event(WAIT).await {}
    }

    /// Waits until an envelope on `topic` arrives (skipping others); `None` when the connection
    /// closes or nothing comes within `within`.
    pub async fn wait_for_topic(&mut self, topic: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                Event::Message { topic: t, data } if t == topic => return Some(data),
                Event::Message { .. } => continue,
                Event::Closed(_) => return None,
            }
        }
    }
}

/// Does what a client told to reconnect does: asks `/connect` on `main_port` for a worker and
/// resumes the session of `token` there. Tries again every [`POLL`] while that fails (no worker
/// ready yet, or the one handed out started draining meanwhile), for at most `within`.
pub async fn resume_through_connect(
    main_port: u16,
    token: &str,
    within: Duration,
) -> Result<(Client, Welcome), String> {
    resume_since_through_connect(main_port, token, None, within).await
}

/// [`resume_through_connect`], caught up to position `since`.
pub async fn resume_since_through_connect(
    main_port: u16,
    token: &str,
    since: Option<&str>,
    within: Duration,
) -> Result<(Client, Welcome), String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let attempt = async {
            let handout = handout(main_port).await?;
            let mut client = Client::connect(&handout.ws_url()).await?;
            let welcome = client.resume_since(token, since).await?;
            Ok::<_, String>((client, welcome))
        };
        match attempt.await {
            Ok(resumed) => return Ok(resumed),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("not resumed within {within:?}: {e}"))
            }
            Err(_) => actix_rt::time::sleep(POLL).await,
        }
    }
}

/// A server message as an envelope with a string topic; anything else fails the test, as the
/// server must not send it.
fn parse_envelope(text: &[u8]) -> Value {
    let value: Value = serde_json::from_slice(text).unwrap_or_else(|e| {
        panic!(
            "server message is not JSON ({e}): {}",
            String::from_utf8_lossy(text)
        )
    });
    assert!(
        value["topic"].is_string(),
        "server message without a string topic: {value}"
    );
    value
}
