//! A Rohrpost 0.x client, speaking as the original's `static/js/rohrpost-client.js` does over
//! sockjs-client: `GET /connect` for a worker's SockJS URL (retried on `404` and on no answer,
//! given up on anything else), a SockJS session over the framed websocket
//! (`<url>/<server>/<session>/websocket`), the session id as its first message, `ok:<id>` as the
//! answer, then JSON envelopes `{"topic", "data"}` both ways.
//!
//! Every wait is bounded; failures the tests expect (a refused session, a restart) are errors or
//! events, not panics.

use std::collections::VecDeque;
use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::client::http;
use crate::common::{WsTransport, WAIT};
use crate::process::POLL;

/// What a 0.x client is told next.
#[derive(Debug, Clone, PartialEq)]
pub enum Told {
    /// One SockJS message, as text (`ok:<id>`, or a JSON envelope).
    Message(String),
    /// A SockJS close frame's code and reason.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Ended,
}

/// One SockJS session of a 0.x client, over the framed websocket.
pub struct LegacyClient {
    ws: Box<dyn WsTransport>,
    /// Messages of an `a[...]` frame not read yet.
    unread: VecDeque<String>,
    ended: bool,
}

impl LegacyClient {
    /// Opens a SockJS session at `base` (a `/connect` answer, `http://host:port/rohrpost`) and
    /// reads its first frame: the session, or what the server closed it with before opening it.
    pub async fn open(base: &str) -> Result<LegacyClient, Told> {
        let session = format!("{:016x}", rand::random::<u64>());
        let url = format!(
            "{}/000/{session}/websocket",
            base.replacen("http://", "ws://", 1)
        );
        let connecting = http().ws(&url).connect();
        let (_res, framed) = match actix_rt::time::timeout(WAIT, connecting).await {
            Ok(Ok(connected)) => connected,
            _ => return Err(Told::Ended),
        };
        let mut client = LegacyClient {
            ws: Box::new(framed),
            unread: VecDeque::new(),
            ended: false,
        };
        match client.frame(WAIT).await {
            Some(SockjsFrame::Open) => Ok(client),
            Some(SockjsFrame::Close(code, reason)) => Err(Told::Closed(code, reason)),
            _ => Err(Told::Ended),
        }
    }

    /// [`LegacyClient::open`], then the handshake: sends `id` and expects `ok:<expected>`.
    pub async fn start(base: &str, id: &str, expected: &str) -> Result<LegacyClient, String> {
        let mut client = LegacyClient::open(base)
            .await
            .map_err(|told| format!("session at {base} not opened: {told:?}"))?;
        client.send(id).await?;
        match client.next(WAIT).await {
            Some(Told::Message(ok)) if ok == format!("ok:{expected}") => Ok(client),
            other => Err(format!(
                "handshake of {id:?}: expected ok:{expected}, got {other:?}"
            )),
        }
    }

    /// Sends one SockJS message.
    pub async fn send(&mut self, message: &str) -> Result<(), String> {
        let frame = json!([message]).to_string();
        actix_rt::time::timeout(WAIT, self.ws.send(Message::Text(frame.into())))
            .await
            .map_err(|_| format!("websocket send not done within {WAIT:?}"))?
            .map_err(|e| format!("websocket send: {e}"))
    }

    /// Sends the envelope `{"topic", "data"}`, as the 0.x client's `publish` does.
    pub async fn publish(&mut self, topic: &str, data: Value) -> Result<(), String> {
        self.send(&json!({"topic": topic, "data": data}).to_string())
            .await
    }

    /// The next message or close, if one comes within `within`; heartbeats are skipped.
    pub async fn next(&mut self, within: Duration) -> Option<Told> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(message) = self.unread.pop_front() {
                return Some(Told::Message(message));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.frame(left).await? {
                SockjsFrame::Messages(messages) => self.unread.extend(messages),
                SockjsFrame::Close(code, reason) => return Some(Told::Closed(code, reason)),
                SockjsFrame::End => return Some(Told::Ended),
                SockjsFrame::Open | SockjsFrame::Heartbeat => continue,
            }
        }
    }

    /// The data of the next envelope on `topic` within `within`, skipping other envelopes
    /// (position notices, say); `None` on a close or when nothing comes.
    pub async fn wait_for_topic(&mut self, topic: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Told::Message(text) = self.next(left).await? else {
                return None;
            };
            let envelope: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("a 0.x client's message is not JSON ({e}): {text}"));
            if envelope["topic"] == topic {
                return Some(envelope["data"].clone());
            }
        }
    }

    /// The next close frame within `within`, skipping messages; `None` if none comes.
    pub async fn wait_for_close(&mut self, within: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Told::Message(_) => continue,
                Told::Closed(code, reason) => return Some((code, reason)),
                Told::Ended => return None,
            }
        }
    }

    /// Closes the connection, as a page that goes away does.
    pub async fn close(mut self) {
        let _ = actix_rt::time::timeout(WAIT, self.ws.send(Message::Close(None))).await;
    }

    async fn frame(&mut self, within: Duration) -> Option<SockjsFrame> {
        if self.ended {
            return Some(SockjsFrame::End);
        }
        loop {
            let next = actix_rt::time::timeout(within, self.ws.next()).await.ok()?;
            let text = match next {
                Some(Ok(Frame::Text(text))) => text,
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
                _ => {
                    self.ended = true;
                    return Some(SockjsFrame::End);
                }
            };
            let text = String::from_utf8(text.to_vec()).expect("SockJS frames are UTF-8");
            return Some(SockjsFrame::parse(&text));
        }
    }
}

/// A SockJS frame as the server sends it over the framed websocket.
enum SockjsFrame {
    Open,
    Heartbeat,
    Messages(Vec<String>),
    Close(u16, String),
    End,
}

impl SockjsFrame {
    fn parse(text: &str) -> SockjsFrame {
        let (kind, body) = text.split_at(1.min(text.len()));
        match kind {
            "o" => SockjsFrame::Open,
            "h" => SockjsFrame::Heartbeat,
            "a" => SockjsFrame::Messages(
                serde_json::from_str(body).unwrap_or_else(|e| panic!("frame {text:?}: {e}")),
            ),
            "c" => {
                let (code, reason) =
                    serde_json::from_str(body).unwrap_or_else(|e| panic!("frame {text:?}: {e}"));
                SockjsFrame::Close(code, reason)
            }
            _ => panic!("not a SockJS frame: {text:?}"),
        }
    }
}

/// What the 0.x client does to (re)connect, for at most `within`: `GET /connect` on
/// `main_port`, again after a pause while it answers `404` or nothing (the only answers it
/// retries on), then a session at the URL it was given with the handshake of `id`, expecting
/// `ok:<expected>`. A session refused or cut during the handshake (a worker that started
/// draining meanwhile) is tried again through `/connect` too. Any other `/connect` status is an
/// error at once: the 0.x client would have given up for good.
pub async fn connect_as_0x(
    main_port: u16,
    id: &str,
    expected: &str,
    within: Duration,
) -> Result<LegacyClient, String> {
    let url = format!("http://127.0.0.1:{main_port}/connect");
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = actix_rt::time::timeout(WAIT, http().get(&url).send()).await;
        let mut last = String::from("no answer");
        if let Ok(Ok(mut res)) = answer {
            let status = res.status().as_u16();
            let body = actix_rt::time::timeout(WAIT, res.body()).await;
            let body = match body {
                Ok(Ok(body)) => String::from_utf8_lossy(&body).into_owned(),
                _ => String::new(),
            };
            match status {
                200 => match LegacyClient::start(&body, id, expected).await {
                    Ok(client) => return Ok(client),
                    Err(e) => last = e,
                },
                404 => last = format!("404 {body:?}"),
                other => {
                    return Err(format!(
                        "GET {url}: {other} {body:?}; a 0.x client gives up"
                    ))
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("not connected within {within:?}; last: {last}"));
        }
        actix_rt::time::sleep(POLL).await;
    }
}
