//! XHR polling: `POST /{server}/{session}/xhr` receives one frame, `.../xhr_send` sends.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use super::body::{self, ReceivingTransport, Wrap};
use super::headers::{self, Cors, JAVASCRIPT, TEXT_PLAIN};
use super::receiver::ReceiverKind;
use super::EndpointInner;

/// `POST .../xhr`: answers with the next frame (open, messages, heartbeat or close).
pub async fn poll(req: &HttpRequest, endpoint: &EndpointInner, id: Arc<str>) -> HttpResponse {
    let transport = ReceivingTransport {
        kind: ReceiverKind::Polling,
        wrap: Wrap::Newline,
        prelude: None,
        content_type: JAVASCRIPT,
        cors: Cors::Credentialed,
        nosniff: false,
    };
    body::receive(req, endpoint, id, transport).await
}

/// `POST .../xhr_send`: a JSON array of messages; `204` with a `text/plain` type (for Firefox).
pub async fn send(
    req: &HttpRequest,
    payload: web::Payload,
    endpoint: &EndpointInner,
    id: Arc<str>,
) -> HttpResponse {
    if let Err(res) = body::deliver(req, payload, endpoint, id, false, Cors::Credentialed).await {
        return res;
    }
    let mut res = HttpResponse::NoContent();
    headers::session_response(
        req,
        &endpoint.options,
        &mut res,
        TEXT_PLAIN,
        Cors::Credentialed,
    );
    res.finish()
}
