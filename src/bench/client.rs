//! One benchmark session: the real protocol, as a browser speaks it over the framed SockJS
//! websocket — `GET /connect`, the websocket to `{url}/{server}/{session}/websocket`, the open
//! frame, the hello, the welcome — then a task that reads frames and records every delivery.
//! Against nchan ([`Gateway::Raw`]) a session is the plain websocket, one message per frame,
//! read and recorded by the same task.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::Value;

use super::{now_us, BenchError};

/// What all sessions of a run record.
pub struct Tally {
    /// Deliveries carrying a send timestamp (`data.t`, µs since the epoch).
    pub delivered: u64,
    /// Latency from send to receipt, in µs.
    pub latency: Histogram<u64>,
    /// When the first and the last timed delivery arrived (µs since the epoch).
    pub first_us: u64,
    pub last_us: u64,
    /// Sessions whose connection ended during the run.
    pub dropped_sessions: u64,
}

impl Tally {
    pub fn new() -> Rc<RefCell<Tally>> {
        Rc::new(RefCell::new(Tally {
            delivered: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            first_us: 0,
            last_us: 0,
            dropped_sessions: 0,
        }))
    }

    fn record(&mut self, sent_us: u64) {
        let now = now_us();
        self.delivered += 1;
        let _ = self.latency.record(now.saturating_sub(sent_us).max(1));
        if self.first_us == 0 {
            self.first_us = now;
        }
        self.last_us = now;
    }
}

/// Where a session is opened, and so how its frames read.
#[derive(Debug, Clone)]
pub enum Gateway {
    /// Rohrpost's main port: `/connect`, the framed SockJS websocket, the hello.
    Rohrpost { main: String, legacy: bool },
    /// A plain websocket URL (nchan's subscriber location): no handshake; every text frame is
    /// one message, and what the session sends is one message per frame.
    Raw { url: String },
}

/// How the messages of a connection are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// SockJS: `a[...]` frames holding JSON strings, sent as `[...]`.
    SockJs,
    /// One message per websocket frame, as is.
    Raw,
}

impl Framing {
    /// How a benchmark message's send timestamp key reads inside a frame: escaped in the JSON
    /// strings of a SockJS frame, plain in a raw one.
    fn timestamp_key(self) -> &'static [u8] {
        match self {
            Framing::SockJs => br#"\"t\":"#,
            Framing::Raw => br#""t":"#,
        }
    }

    /// Whether a frame can hold deliveries (SockJS also sends open, heartbeat, close frames).
    fn carries_messages(self, frame: &[u8]) -> bool {
        self == Framing::Raw || frame.starts_with(b"a[")
    }

    /// The frame that sends one message.
    fn frame(self, message: String) -> String {
        match self {
            Framing::SockJs => serde_json::to_string(&[message]).unwrap_or_default(),
            Framing::Raw => message,
        }
    }
}

/// An open session: the queue of frames its connection task sends.
pub struct Session {
    outbox: tokio::sync::mpsc::UnboundedSender<Message>,
    framing: Framing,
}

/// `/connect` on the main port: the SockJS URL of a worker.
pub async fn connect_url(client: &awc::Client, main: &str) -> Result<String, BenchError> {
    let mut res = client
        .get(format!("{main}/connect"))
        .send()
        .await
        .map_err(|e| BenchError::Server(format!("/connect: {e}")))?;
    let body = res
        .body()
        .await
        .map_err(|e| BenchError::Server(format!("/connect body: {e}")))?;
    if !res.status().is_success() {
        return Err(BenchError::Server(format!(
            "/connect answered {}",
            res.status()
        )));
    }
    Ok(String::from_utf8_lossy(&body).trim().to_string())
}

/// How an opened session treats what the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Reads every frame and records the deliveries.
    Reading,
    /// Stops reading after the handshake (a slow consumer): the server's frames pile up in the
    /// socket buffers until the server gives up on the session.
    Stalled,
}

/// The server's answer to the hello (topic `rohrpost.welcome`; with `--legacy` only `session`).
#[derive(Debug, Clone, Default)]
pub struct Welcome {
    /// The worker's SockJS URL (from `/connect`).
    pub worker: String,
    pub session: String,
    pub resume: String,
    pub resumed: bool,
    pub whitelist: Vec<String>,
    /// Where the session is caught up to in the publication log (absent: history disabled).
    pub pos: Option<String>,
    /// On a resume: whether every logged message after `since` follows.
    pub recovered: Option<bool>,
    /// The messages that came in the welcome's frame after it (a recovery's replay, say).
    pub rest: Vec<String>,
}

impl Welcome {
    fn read(message: &str, legacy: bool) -> Option<Welcome> {
        if legacy {
            let session = message.strip_prefix("ok:")?.to_string();
            return Some(Welcome {
                session,
                ..Welcome::default()
            });
        }
        let v: Value = serde_json::from_str(message).ok()?;
        if v["topic"] != "rohrpost.welcome" {
            return None;
        }
        let data = &v["data"];
        Some(Welcome {
            worker: String::new(),
            session: data["session"].as_str()?.to_string(),
            resume: data["resume"].as_str().unwrap_or("").to_string(),
            resumed: data["resumed"].as_bool().unwrap_or(false),
            whitelist: data["whitelist"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect(),
            pos: data["pos"].as_str().map(str::to_string),
            recovered: data["recovered"].as_bool(),
            rest: Vec::new(),
        })
    }
}

/// The session a [`dial`] resumes: its token and, to recover what it missed, its position.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    pub token: &'a str,
    pub since: Option<&'a str>,
}

/// Opens a session's framed websocket on the worker `/connect` names and says hello, resuming
/// the session of `resume` if given: the connection and the welcome.
pub async fn dial(
    client: &awc::Client,
    main: &str,
    legacy: bool,
    resume: Option<Resume<'_>>,
) -> Result<
    (
        impl futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>>
            + futures_util::Sink<Message, Error = awc::error::WsProtocolError>
            + Unpin,
        Welcome,
    ),
    BenchError,
> {
    let url = connect_url(client, main).await?;
    let sid = format!("{:016x}", rand::random::<u64>());
    let ws_url = format!("{}/000/{sid}/websocket", url.replacen("http", "ws", 1));
    let mut conn = websocket(client, &ws_url).await?;
    // The open frame, then the handshake.
    expect_text(&mut conn, |t| t == "o").await?;
    let hello = match (legacy, resume) {
        (true, _) => format!("bench{sid}"),
        (false, Some(Resume { token, since })) => {
            serde_json::json!({"hello": 1, "resume": token, "since": since}).to_string()
        }
        (false, None) => "{\"hello\":1}".to_string(),
    };
    let frame = serde_json::to_string(&[hello]).unwrap_or_default();
    conn.send(Message::Text(frame.into()))
        .await
        .map_err(|e| BenchError::Server(format!("send hello: {e}")))?;
    let answer = expect_text(&mut conn, |t| t.starts_with("a[")).await?;
    let mut messages = frame_messages(&answer).into_iter();
    let welcome = messages
        .by_ref()
        .find_map(|m| Welcome::read(&m, legacy))
        .ok_or_else(|| BenchError::Server(format!("no welcome: {answer}")))?;
    Ok((
        conn,
        Welcome {
            worker: url,
            rest: messages.collect(),
            ..welcome
        },
    ))
}

/// A plain websocket to `url` (the bench's frames are at most 1 MiB).
async fn websocket(
    client: &awc::Client,
    url: &str,
) -> Result<
    impl futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>>
        + futures_util::Sink<Message, Error = awc::error::WsProtocolError>
        + Unpin,
    BenchError,
> {
    let (_res, conn) = client
        .ws(url)
        .max_frame_size(1 << 20)
        .connect()
        .await
        .map_err(|e| BenchError::Server(format!("websocket {url}: {e}")))?;
    Ok(conn)
}

/// Opens one session on `gateway` and starts its reader; deliveries go to `tally`.
pub async fn open(
    client: &awc::Client,
    gateway: &Gateway,
    reader: Reader,
    tally: Rc<RefCell<Tally>>,
) -> Result<Session, BenchError> {
    match gateway {
        Gateway::Rohrpost { main, legacy } => {
            let (conn, _welcome) = dial(client, main, *legacy, None).await?;
            Ok(start(conn, Framing::SockJs, reader, tally))
        }
        Gateway::Raw { url } => {
            let conn = websocket(client, url).await?;
            Ok(start(conn, Framing::Raw, reader, tally))
        }
    }
}

/// Starts the task of an open connection: it reads (unless stalled) and sends the outbox.
fn start<C>(mut conn: C, framing: Framing, reader: Reader, tally: Rc<RefCell<Tally>>) -> Session
where
    C: futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>>
        + futures_util::Sink<Message, Error = awc::error::WsProtocolError>
        + Unpin
        + 'static,
{
    let (outbox, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<Message>();
    if reader == Reader::Stalled {
        actix_rt::spawn(async move {
            // Hold the connection, read nothing, until the session is dropped or closed.
            let _held = conn;
            while let Some(message) = outgoing.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        });
        return Session { outbox, framing };
    }
    actix_rt::spawn(async move {
        loop {
            tokio::select! {
                frame = conn.next() => {
                    let text = match frame {
                        Some(Ok(Frame::Text(bytes))) => bytes,
                        Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => continue,
                    };
                    if !framing.carries_messages(&text) {
                        continue;
                    }
                    let mut tally = tally.borrow_mut();
                    for_each_timestamp(&text, framing.timestamp_key(), |sent| tally.record(sent));
                }
                out = outgoing.recv() => {
                    let Some(out) = out else { break };
                    let closing = matches!(out, Message::Close(_));
                    if conn.send(out).await.is_err() || closing {
                        break;
                    }
                }
            }
        }
        tally.borrow_mut().dropped_sessions += 1;
    });
    Session { outbox, framing }
}

/// Calls `on_message` for every message a plain websocket to `url` receives (nchan's
/// subscriber location, counting what inbound sessions publish), until it closes.
pub async fn listen(
    client: &awc::Client,
    url: &str,
    on_message: impl Fn() + 'static,
) -> Result<(), BenchError> {
    let mut conn = websocket(client, url).await?;
    actix_rt::spawn(async move {
        while let Some(Ok(frame)) = conn.next().await {
            match frame {
                Frame::Text(_) | Frame::Binary(_) => on_message(),
                Frame::Close(_) => break,
                _ => {}
            }
        }
    });
    Ok(())
}

impl Session {
    /// Queues one envelope; false when the connection is gone.
    pub fn publish(&self, topic: &str, data: &Value) -> bool {
        let envelope = serde_json::json!({"topic": topic, "data": data}).to_string();
        let frame = self.framing.frame(envelope);
        self.outbox.send(Message::Text(frame.into())).is_ok()
    }

    /// Says goodbye (`{"bye": 1}`): the session ends for good.
    pub fn bye(&self) {
        let frame = self.framing.frame(r#"{"bye":1}"#.to_string());
        let _ = self.outbox.send(Message::Text(frame.into()));
    }

    /// Closes the websocket.
    pub fn close(&self) {
        let _ = self.outbox.send(Message::Close(None));
    }
}

async fn expect_text<S>(stream: &mut S, want: impl Fn(&str) -> bool) -> Result<String, BenchError>
where
    S: futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>> + Unpin,
{
    loop {
        let next = actix_rt::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .map_err(|_| BenchError::Server("no answer within 10 s".into()))?;
        match next {
            Some(Ok(Frame::Text(b))) => {
                let text = String::from_utf8_lossy(&b).into_owned();
                if want(&text) {
                    return Ok(text);
                }
                if text.starts_with("c[") {
                    return Err(BenchError::Server(format!("closed by the server: {text}")));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(BenchError::Server(e.to_string())),
            None => return Err(BenchError::Server("connection closed".into())),
        }
    }
}

/// The messages of an `a[...]` frame.
pub fn frame_messages(frame: &str) -> Vec<String> {
    serde_json::from_str(frame.get(1..).unwrap_or("[]")).unwrap_or_default()
}

/// Calls `f` with the send timestamp of every benchmark message in a frame. The messages are
/// `{"topic": …, "data": {"t": µs, …}}`; in an `a[...]` frame they are JSON strings inside the
/// frame's array, so the key reads `\"t\":` there, in a raw frame `"t":` ([`Framing`]). A
/// scan instead of two JSON parses per message keeps the load generator, which shares the
/// machine with the server, from being what is measured.
fn for_each_timestamp(frame: &[u8], key: &[u8], mut f: impl FnMut(u64)) {
    for at in memchr::memmem::find_iter(frame, key) {
        let rest = &frame[at + key.len()..];
        let digits = rest
            .iter()
            .skip_while(|b| **b == b' ')
            .take_while(|b| b.is_ascii_digit());
        let mut value: u64 = 0;
        let mut any = false;
        for d in digits {
            value = value.saturating_mul(10).saturating_add(u64::from(d - b'0'));
            any = true;
        }
        if any {
            f(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{for_each_timestamp, Framing};

    const MESSAGES: [&str; 3] = [
        r#"{"topic":"anonym.bench","data":{"t":1700000000000001,"i":0}}"#,
        r#"{"topic":"anonym.bench","data":{"i":1, "t": 42}}"#,
        r#"{"topic":"rohrpost.welcome","data":{"session":"x"}}"#,
    ];

    #[test]
    fn timestamps_are_found_in_every_message_of_a_frame() {
        let frame = format!("a{}", serde_json::to_string(&MESSAGES).unwrap());
        let mut seen = Vec::new();
        let key = Framing::SockJs.timestamp_key();
        for_each_timestamp(frame.as_bytes(), key, |t| seen.push(t));
        assert_eq!(seen, [1_700_000_000_000_001, 42]);
    }

    #[test]
    fn a_raw_frame_is_one_message_read_as_is() {
        let mut seen = Vec::new();
        for message in MESSAGES {
            assert!(Framing::Raw.carries_messages(message.as_bytes()));
            let key = Framing::Raw.timestamp_key();
            for_each_timestamp(message.as_bytes(), key, |t| seen.push(t));
        }
        assert_eq!(seen, [1_700_000_000_000_001, 42]);
        assert_eq!(Framing::Raw.frame(MESSAGES[0].into()), MESSAGES[0]);
    }

    #[test]
    fn a_sockjs_frame_wraps_its_message_in_an_array() {
        assert_eq!(
            Framing::SockJs.frame(r#"{"bye":1}"#.into()),
            r#"["{\"bye\":1}"]"#
        );
        assert!(!Framing::SockJs.carries_messages(b"h"));
    }
}
