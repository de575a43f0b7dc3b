//! JSONP polling: `GET /{server}/{session}/jsonp?c=callback` receives one frame as a script,
//! `POST .../jsonp_send` sends (form-encoded `d=` or a raw JSON body).

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::{self, ReceivingTransport, Wrap};
use super::headers::{self, Cors, JAVASCRIPT, TEXT_PLAIN};
use super::receiver::ReceiverKind;
use super::EndpointInner;

/// `GET .../jsonp?c=callback`; the callback name was validated by the router.
pub async fn poll(
    req: &HttpRequest,
    endpoint: &EndpointInner,
    id: Arc<str>,
    callback: &str,
) -> HttpResponse {
    let transport = ReceivingTransport {
        kind: ReceiverKind::Polling,
        wrap: Wrap::Jsonp(callback.to_string()),
        prelude: None,
        content_type: JAVASCRIPT,
        cors: Cors::None,
        nosniff: true,
    };
    body::receive(req, endpoint, id, transport).await
}

/// `POST .../jsonp_send`: answers `200 ok` (Konqueror mishandles `204`).
pub async fn send(
    req: &HttpRequest,
    payload: web::Payload,
    endpoint: &EndpointInner,
    id: Arc<str>,
) -> HttpResponse {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if let Err(res) = body::deliver(req, payload, endpoint, id, form, Cors::None).await {
        return res;
    }
    let mut res = HttpResponse::Ok();
    headers::session_response(req, &endpoint.options, &mut res, TEXT_PLAIN, Cors::None);
    res.body("ok")
}
