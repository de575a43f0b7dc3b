//! Websocket transports: framed (`/{server}/{session}/websocket`) and raw (`/websocket`).
//!
//! A websocket session lives exactly as long as its connection: the transport actor starts its
//! session (with [`Lifetime::Connection`](super::session::Lifetime)) and is its only receiver.
//! The framed transport carries SockJS frames as text messages and takes client messages as a
//! JSON array or string; broken JSON ends the connection at once. The raw transport carries plain
//! messages both ways, with no SockJS framing, for command-line and server-side clients.

use std::sync::Arc;

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason, HandshakeError};
use bytes::BytesMut;
use log::debug;

use super::admission::{Pass, Refusal};
use super::frames::{parse_client_payload, Frame, FrameKind, PayloadShape};
use super::headers::TEXT_PLAIN;
use super::opening::Opening;
use super::receiver::{self, FrameStream, ReceiverKind};
use super::session::{ClientMessages, SessionHandle};
use super::EndpointInner;

/// Which websocket flavour a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Framed,
    Raw,
}

/// Upgrades the request and starts the transport actor, or explains why not.
pub fn start(
    req: &HttpRequest,
    payload: web::Payload,
    endpoint: Arc<EndpointInner>,
    id: Arc<str>,
    flavour: Flavour,
) -> HttpResponse {
    if let Err(e) = ws::handshake(req) {
        return handshake_refused(e);
    }
    let max = endpoint.options.max_frame_bytes;
    let admitted = endpoint.admission.admit(req.peer_addr().map(|a| a.ip()));
    let transport = WsTransport {
        opening: Some(Opening::of(req)),
        admitted,
        endpoint,
        id,
        flavour,
        session: None,
        pending: None,
        max,
        closing: false,
    };
    match ws::WsResponseBuilder::new(transport, req, payload)
        .frame_size(max)
        .start()
    {
        Ok(res) => res,
        Err(e) => {
            debug!("websocket upgrade failed: {e}");
            HttpResponse::BadRequest()
                .content_type(TEXT_PLAIN)
                .body(e.to_string())
        }
    }
}

fn handshake_refused(e: HandshakeError) -> HttpResponse {
    let message = match e {
        HandshakeError::GetMethodRequired => {
            return super::headers::method_not_allowed("GET");
        }
        HandshakeError::NoWebsocketUpgrade => "Can \"Upgrade\" only to \"WebSocket\".",
        HandshakeError::NoConnectionUpgrade => "\"Connection\" must be \"Upgrade\".",
        HandshakeError::NoVersionHeader => "Missing \"Sec-WebSocket-Version\" header.",
        HandshakeError::UnsupportedVersion => "Unsupported \"Sec-WebSocket-Version\".",
        HandshakeError::BadWebsocketKey => "Missing or invalid \"Sec-WebSocket-Key\" header.",
    };
    HttpResponse::BadRequest()
        .content_type(TEXT_PLAIN)
        .body(message)
}

/// The transport actor of one websocket connection.
struct WsTransport {
    /// This connection's place among the endpoint's sessions, held while it lives; or why it
    /// was refused one (it is then closed with the refusal's code, 1013, or the drain's, without
    /// starting a session).
    admitted: Result<Pass, Refusal>,
    /// The upgrade request, handed to the session when it starts.
    opening: Option<Opening>,
    endpoint: Arc<EndpointInner>,
    id: Arc<str>,
    flavour: Flavour,
    session: Option<SessionHandle>,
    /// A fragmented text message being reassembled.
    pending: Option<BytesMut>,
    max: usize,
    /// Our close frame is sent; waiting for the client's.
    closing: bool,
}

impl Actor for WsTransport {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Err(refusal) = self.admitted {
            debug!("websocket session refused session={}: {refusal}", self.id);
            let frame = Frame::close(refusal.code(), &refusal.reason());
            if self.flavour == Flavour::Framed {
                ctx.text(frame.as_str());
            }
            self.start_closing(Some(raw_close_reason(&frame)), ctx);
            return;
        }
        let (receiver, mut frames): (_, FrameStream) = receiver::channel(ReceiverKind::Streaming);
        let opening = self.opening.take().unwrap_or_default();
        let handle = self
            .endpoint
            .start_connection(self.id.clone(), receiver, &opening);
        frames.set_session(handle.detach.clone());
        self.session = Some(handle);
        ctx.add_stream(frames);
    }
}

/// Frames from the session, out to the client.
impl StreamHandler<Frame> for WsTransport {
    fn handle(&mut self, frame: Frame, ctx: &mut Self::Context) {
        match (self.flavour, frame.kind) {
            (Flavour::Framed, FrameKind::Close) => {
                ctx.text(frame.as_str());
                self.start_closing(Some(CloseReason::from(CloseCode::Normal)), ctx);
            }
            (Flavour::Framed, _) => ctx.text(frame.as_str()),
            (Flavour::Raw, FrameKind::Open) => {}
            (Flavour::Raw, FrameKind::Heartbeat) => ctx.ping(b""),
            (Flavour::Raw, FrameKind::Messages) => {
                let array = frame.body.get(1..).unwrap_or_default();
                match serde_json::from_slice::<Vec<String>>(array) {
                    Ok(messages) => messages.into_iter().for_each(|m| ctx.text(m)),
                    Err(e) => log::error!("undecodable message frame for raw websocket: {e}"),
                }
            }
            (Flavour::Raw, FrameKind::Close) => {
                self.start_closing(Some(raw_close_reason(&frame)), ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The session ended and let go of us.
        ctx.stop();
    }
}

/// Messages from the client, in to the session.
impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsTransport {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                debug!("websocket protocol error session={} error={e}", self.id);
                let code = match e {
                    ws::ProtocolError::Overflow => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                ctx.close(Some(CloseReason {
                    code,
                    description: Some(e.to_string()),
                }));
                ctx.stop();
                return;
            }
        };
        match msg {
            ws::Message::Text(text) => self.incoming(text.as_bytes(), ctx),
            ws::Message::Continuation(item) => self.continuation(item, ctx),
            ws::Message::Ping(bytes) => ctx.pong(&bytes),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Binary(_) => {
                ctx.close(Some(CloseReason {
                    code: CloseCode::Unsupported,
                    description: Some("binary messages are not supported".into()),
                }));
                ctx.stop();
            }
            ws::Message::Close(reason) => {
                if !self.closing {
                    ctx.close(reason);
                }
                ctx.stop();
            }
        }
    }
}

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl WsTransport {
    /// Sends the websocket close frame and waits for the client's: messages it sent before it
    /// saw ours still reach the session (a draining worker loses nothing). The session ends the
    /// transport when it stops; a client that never answers is cut after [`CLOSE_WAIT`].
    fn start_closing(&mut self, reason: Option<CloseReason>, ctx: &mut ws::WebsocketContext<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        ctx.close(reason);
        ctx.run_later(CLOSE_WAIT, |_act, ctx| ctx.stop());
    }

    fn incoming(&mut self, text: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        let Some(session) = &self.session else {
            return;
        };
        match self.flavour {
            Flavour::Raw => match std::str::from_utf8(text) {
                Ok(text) => session
                    .incoming
                    .do_send(ClientMessages(vec![text.to_string()])),
                Err(_) => ctx.stop(),
            },
            Flavour::Framed => {
                if text.is_empty() {
                    return;
                }
                match parse_client_payload(text, PayloadShape::ArrayOrString) {
                    Ok(messages) if messages.is_empty() => {}
                    Ok(messages) => session.incoming.do_send(ClientMessages(messages)),
                    Err(e) => {
                        // SockJS: broken data ends the connection abruptly.
                        debug!("websocket payload rejected session={} error={e}", self.id);
                        ctx.stop();
                    }
                }
            }
        }
    }

    fn continuation(&mut self, item: Item, ctx: &mut ws::WebsocketContext<Self>) {
        let is_last = matches!(item, Item::Last(_));
        match item {
            Item::FirstText(bytes) => self.pending = Some(BytesMut::from(&bytes[..])),
            Item::FirstBinary(_) => {
                ctx.close(Some(CloseCode::Unsupported.into()));
                ctx.stop();
            }
            Item::Continue(bytes) | Item::Last(bytes) => {
                let last = is_last;
                let Some(pending) = self.pending.as_mut() else {
                    ctx.close(Some(CloseCode::Protocol.into()));
                    ctx.stop();
                    return;
                };
                if pending.len() + bytes.len() > self.max {
                    ctx.close(Some(CloseReason {
                        code: CloseCode::Size,
                        description: Some(format!("message larger than {} bytes", self.max)),
                    }));
                    ctx.stop();
                    return;
                }
                pending.extend_from_slice(&bytes);
                if last {
                    if let Some(whole) = self.pending.take() {
                        self.incoming(&whole, ctx);
                    }
                }
            }
        }
    }
}

/// The websocket close reason for a raw connection, from a SockJS close frame. Codes a websocket
/// may not carry become 1000 (SockJS's 2010, say), except Rohrpost 0.x's restart code 100,
/// which becomes the websocket code that says the same, 1012.
fn raw_close_reason(frame: &Frame) -> CloseReason {
    let parsed: Option<(u16, String)> = frame
        .body
        .get(1..)
        .and_then(|b| serde_json::from_slice(b).ok());
    let (code, reason) = parsed.unwrap_or((1000, String::new()));
    let code = if (3000..=4999).contains(&code) || (1000..=1014).contains(&code) {
        CloseCode::from(code)
    } else if code == crate::legacy::RESTART.0 {
        CloseCode::Restart
    } else {
        CloseCode::Normal
    };
    CloseReason {
        code,
        description: Some(reason),
    }
}
