//! The HTTP side of receiving transports: a response body made of wrapped frames.
//!
//! Every HTTP receiving transport is the same machine with a different wrapping: it attaches a
//! receiver to the session, writes an optional prelude, then writes each frame wrapped for the
//! transport, and ends after one frame (polling), after a close frame, or once `response_limit`
//! bytes of frames were written (streaming; the client then opens a new request).
//! Client messages arrive separately (`xhr_send`, `jsonp_send`) through [`deliver`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use actix_http::ConnectionType;
use actix_web::http::Version;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use log::debug;

use super::frames::{parse_send_body, quote_script, Frame, FrameKind};
use super::headers::{self, Cors};
use super::opening::Opening;
use super::receiver::{self, FrameStream, ReceiverKind};
use super::registry::{Lookup, Receive};
use super::session::ClientMessages;
use super::EndpointInner;
use crate::request_body::{self, BodyError};

/// How a transport wraps each frame.
#[derive(Debug, Clone)]
pub enum Wrap {
    /// `frame\n` (xhr, xhr_streaming).
    Newline,
    /// `data: frame\r\n\r\n` (eventsource).
    EventSource,
    /// `<script>\np("frame");\n</script>\r\n` (htmlfile).
    HtmlFile,
    /// `/**/callback("frame");\r\n` (jsonp; the comment keeps the answer from starting with
    /// bytes the requester chose, the Rosetta Flash defence).
    Jsonp(String),
}

impl Wrap {
    fn wrap(&self, frame: &Frame) -> Bytes {
        let body = &frame.body;
        match self {
            Wrap::Newline => {
                let mut out = BytesMut::with_capacity(body.len() + 1);
                out.put_slice(body);
                out.put_u8(b'\n');
                out.freeze()
            }
            Wrap::EventSource => {
                // sockjs-client runs `decodeURI` on each event, so `%` must travel as `%25`
                // (and line breaks or NUL, which JSON already escapes, could not end the event).
                let mut out = BytesMut::with_capacity(body.len() + 10);
                out.put_slice(b"data: ");
                for &b in body.iter() {
                    match b {
                        b'%' => out.put_slice(b"%25"),
                        b'\r' => out.put_slice(b"%0D"),
                        b'\n' => out.put_slice(b"%0A"),
                        0 => out.put_slice(b"%00"),
                        _ => out.put_u8(b),
                    }
                }
                out.put_slice(b"\r\n\r\n");
                out.freeze()
            }
            Wrap::HtmlFile => Bytes::from(format!(
                "<script>\np({});\n</script>\r\n",
                quote_script(frame.as_str())
            )),
            Wrap::Jsonp(callback) => Bytes::from(format!(
                "/**/{callback}({});\r\n",
                quote_script(frame.as_str())
            )),
        }
    }
}

/// What a receiving transport is: how it attaches, wraps and limits.
pub struct ReceivingTransport {
    pub kind: ReceiverKind,
    pub wrap: Wrap,
    pub prelude: Option<Bytes>,
    pub content_type: &'static str,
    pub cors: Cors,
    /// Whether the answer carries `X-Content-Type-Options: nosniff` (jsonp, htmlfile).
    pub nosniff: bool,
}

/// Attaches a receiving request to session `id` (created if unknown) and streams its frames.
/// A new session the endpoint does not admit gets just the refusal's close frame
/// (`c[1013,"..."]` beyond a cap, the drain's, e.g. `c[1012,"Service Restart"]`, while draining).
pub async fn receive(
    req: &HttpRequest,
    endpoint: &EndpointInner,
    id: Arc<str>,
    transport: ReceivingTransport,
) -> HttpResponse {
    let (receiver, mut frames) = receiver::channel(transport.kind);
    let refusal_tx = receiver.tx.clone();
    let opening = Opening::of(req);
    let address = opening.address;
    let receive = Receive {
        id: id.clone(),
        receiver,
        opening,
    };
    match endpoint.registry().send(receive).await {
        Ok(Ok(handle)) => frames.set_session(handle.detach),
        Ok(Err(refusal)) => {
            debug!("sockjs session refused session={id} address={address:?}: {refusal}");
            // The channel is new and empty: the close frame fits, and the stream ends after it.
            let _ = refusal_tx.try_send(Frame::close(refusal.code(), &refusal.reason()));
        }
        Err(e) => return unavailable(e),
    }
    drop(refusal_tx);

    let limit = match transport.kind {
        ReceiverKind::Polling => usize::MAX,
        ReceiverKind::Streaming => endpoint.options.response_limit,
    };
    let mut res = HttpResponse::Ok();
    headers::session_response(
        req,
        &endpoint.options,
        &mut res,
        transport.content_type,
        transport.cors,
    );
    if transport.nosniff {
        headers::nosniff(&mut res);
    }
    let mut response = res.streaming(TransportBody {
        prelude: transport.prelude,
        frames,
        wrap: transport.wrap,
        sent: 0,
        limit,
        one_shot: transport.kind == ReceiverKind::Polling,
        done: false,
    });
    if req.version() < Version::HTTP_11 {
        // HTTP/1.0 knows no chunked encoding: the body runs until the connection closes.
        let head = response.head_mut();
        head.no_chunking(true);
        head.set_connection_type(ConnectionType::Close);
    }
    response
}

/// Passes a sending request's body to session `id`. `form` bodies carry the payload in `d=`.
/// The body must arrive whole within `sockjs` options' `body_timeout`; a body cut short or
/// late delivers nothing.
pub async fn deliver(
    req: &HttpRequest,
    payload: web::Payload,
    endpoint: &EndpointInner,
    id: Arc<str>,
    form: bool,
    cors: Cors,
) -> Result<(), HttpResponse> {
    let options = &endpoint.options;
    let body =
        match request_body::read(payload, options.max_frame_bytes, options.body_timeout).await {
            Ok(body) => body,
            Err(e @ BodyError::Broken(_)) => {
                debug!("sockjs send body unreadable session={id} error={e}");
                return Err(headers::error_500(req, options, cors, "Payload expected."));
            }
            Err(e) => {
                debug!("sockjs send body refused session={id} error={e}");
                let mut res = match e {
                    BodyError::TooLarge { .. } => HttpResponse::PayloadTooLarge(),
                    _ => HttpResponse::RequestTimeout(),
                };
                headers::cors(req, &mut res, cors);
                res.force_close();
                return Err(res.content_type(headers::TEXT_PLAIN).body(e.to_string()));
            }
        };
    // As sockjs-node: a bad payload is refused before the session is looked up.
    let messages = parse_send_body(&body, form).map_err(|e| {
        debug!("sockjs send rejected session={id} error={e}");
        headers::error_500(req, options, cors, &e.to_string())
    })?;
    let handle = match endpoint.registry().send(Lookup { id: id.clone() }).await {
        Ok(Some(handle)) => handle,
        Ok(None) => return Err(headers::not_found()),
        Err(e) => return Err(unavailable(e)),
    };
    if !messages.is_empty() {
        handle.incoming.do_send(ClientMessages(messages));
    }
    Ok(())
}

fn unavailable(e: actix::MailboxError) -> HttpResponse {
    log::warn!("sockjs session registry unavailable: {e}");
    HttpResponse::ServiceUnavailable()
        .content_type(headers::TEXT_PLAIN)
        .body("Session registry unavailable, try again.")
}

/// The body of a receiving response.
struct TransportBody {
    prelude: Option<Bytes>,
    frames: FrameStream,
    wrap: Wrap,
    sent: usize,
    limit: usize,
    one_shot: bool,
    done: bool,
}

impl Stream for TransportBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(prelude) = self.prelude.take() {
            return Poll::Ready(Some(Ok(prelude)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut self.frames).poll_next(cx)) {
            None => {
                self.done = true;
                Poll::Ready(None)
            }
            Some(frame) => {
                let bytes = self.wrap.wrap(&frame);
                self.sent = self.sent.saturating_add(bytes.len());
                if self.one_shot || frame.kind == FrameKind::Close || self.sent >= self.limit {
                    self.done = true;
                    self.frames.finish();
                }
                Poll::Ready(Some(Ok(bytes)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockjs::frames::EncodedMessage;

    #[test]
    fn wrapping_per_transport() {
        let frame = Frame::messages(&[EncodedMessage::new("x")]);
        assert_eq!(&Wrap::Newline.wrap(&frame)[..], b"a[\"x\"]\n");
        assert_eq!(
            &Wrap::EventSource.wrap(&frame)[..],
            b"data: a[\"x\"]\r\n\r\n"
        );
        assert_eq!(
            &Wrap::HtmlFile.wrap(&frame)[..],
            b"<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n"
        );
        assert_eq!(
            &Wrap::EventSource.wrap(&Frame::messages(&[EncodedMessage::new("a%41b")]))[..],
            b"data: a[\"a%2541b\"]\r\n\r\n"
        );
        assert_eq!(
            &Wrap::Jsonp("cb".into()).wrap(&Frame::open())[..],
            b"/**/cb(\"o\");\r\n"
        );
    }
}
