//! Websocket transports: framed (`/{server}/{session}/websocket`) and raw (`/websocket`).
//!
//! This file answers the handshake; the connection after it is served by
//! [`connection`](super::connection). A websocket request reaches the endpoint's routes through
//! the server's upgrade path ([`upgrade`](super::upgrade)), which leaves a [`HandoverSlot`] in
//! the request: the route checks the handshake and the endpoint's admission, answers `101`, and
//! leaves in the slot what the connection needs to start its session. The upgrade path writes
//! the answer and, on a `101`, gives the socket to the connection.
//!
//! A websocket session lives exactly as long as its connection: the connection starts its
//! session (with [`Lifetime::Connection`](super::session::Lifetime)) and is its only receiver.
//! The framed transport carries SockJS frames as text messages and takes client messages as a
//! JSON array or string; broken JSON ends the connection at once. The raw transport carries plain
//! messages both ways, with no SockJS framing, for command-line and server-side clients.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use actix_http::ws::{self, HandshakeError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};

use super::admission::{Pass, Refusal};
use super::headers::TEXT_PLAIN;
use super::opening::Opening;
use super::EndpointInner;

/// Which websocket flavour a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Framed,
    Raw,
}

/// What a connection needs to start once its handshake is answered.
pub struct Handover {
    pub endpoint: Arc<EndpointInner>,
    pub id: Arc<str>,
    pub flavour: Flavour,
    /// The upgrade request, handed to the session when it starts.
    pub opening: Opening,
    /// This connection's place among the endpoint's sessions, held while it lives; or why it
    /// was refused one (it is then closed with the refusal's code, 1013, or the drain's, without
    /// starting a session).
    pub admitted: Result<Pass, Refusal>,
}

/// Where a route leaves the [`Handover`] of an upgrade request it answered with `101`; put into
/// the request's extensions by the upgrade path.
#[derive(Clone, Default)]
pub struct HandoverSlot(Rc<RefCell<Option<Handover>>>);

impl HandoverSlot {
    /// What the route left, if it switched protocols.
    pub fn take(&self) -> Option<Handover> {
        self.0.borrow_mut().take()
    }
}

/// Answers the websocket handshake and leaves the connection's start in the request's
/// [`HandoverSlot`], or explains why not.
pub fn start(
    req: &HttpRequest,
    endpoint: Arc<EndpointInner>,
    id: Arc<str>,
    flavour: Flavour,
) -> HttpResponse {
    if let Err(e) = verify_handshake(req) {
        return handshake_refused(e);
    }
    let response = ws::handshake_response(req.head()).finish();
    let Some(slot) = req.extensions().get::<HandoverSlot>().cloned() else {
        // Only a request that came through the upgrade path can be switched: one that did not
        // carry `Upgrade: websocket` is refused above, so this is a server built without it.
        log::error!("websocket request outside the upgrade path: the server cannot take it over");
        return HttpResponse::InternalServerError()
            .content_type(TEXT_PLAIN)
            .body("This server cannot serve websockets.");
    };
    let admitted = endpoint.admission.admit(req.peer_addr().map(|a| a.ip()));
    *slot.0.borrow_mut() = Some(Handover {
        endpoint,
        id,
        flavour,
        opening: Opening::of(req),
        admitted,
    });
    HttpResponse::from(response.map_into_boxed_body())
}

/// The websocket versions SockJS clients speak: RFC 6455's 13, and the drafts' 7 and 8.
const DRAFT_VERSIONS: [&[u8]; 2] = [b"7", b"8"];

/// actix-http's handshake check, which knows only version 13: a draft version is checked as 13
/// (the drafts' handshake is the same).
fn verify_handshake(req: &HttpRequest) -> Result<(), HandshakeError> {
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION);
    if version.is_some_and(|v| DRAFT_VERSIONS.contains(&v.as_bytes())) {
        let mut head = req.head().clone();
        head.headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return ws::verify_handshake(&head);
    }
    ws::verify_handshake(req.head())
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
