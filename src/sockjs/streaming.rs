//! HTTP streaming transports: `xhr_streaming`, `eventsource` and `htmlfile`.
//!
//! Each keeps one response open and writes frames into it until `response_limit` bytes were
//! written; the client then opens the next one. Each starts with a prelude that gets browsers and
//! proxies to pass data through at once.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use super::body::{self, ReceivingTransport, Wrap};
use super::headers::{Cors, EVENT_STREAM, HTML, JAVASCRIPT};
use super::receiver::ReceiverKind;
use super::EndpointInner;

/// `POST .../xhr_streaming`: 2 KiB of `h` first, so that old browsers start delivering.
pub async fn xhr_streaming(
    req: &HttpRequest,
    endpoint: &EndpointInner,
    id: Arc<str>,
) -> HttpResponse {
    let mut prelude = vec![b'h'; 2048];
    prelude.push(b'\n');
    let transport = ReceivingTransport {
        kind: ReceiverKind::Streaming,
        wrap: Wrap::Newline,
        prelude: Some(Bytes::from(prelude)),
        content_type: JAVASCRIPT,
        cors: Cors::Credentialed,
        nosniff: false,
    };
    body::receive(req, endpoint, id, transport).await
}

/// `GET .../eventsource`: server-sent events, after an empty line (for Opera).
pub async fn eventsource(
    req: &HttpRequest,
    endpoint: &EndpointInner,
    id: Arc<str>,
) -> HttpResponse {
    let transport = ReceivingTransport {
        kind: ReceiverKind::Streaming,
        wrap: Wrap::EventSource,
        prelude: Some(Bytes::from_static(b"\r\n")),
        content_type: EVENT_STREAM,
        cors: Cors::EventSource,
        nosniff: false,
    };
    body::receive(req, endpoint, id, transport).await
}

/// `GET .../htmlfile?c=callback`: a forever-loading page calling `parent.callback` per frame.
/// The callback name was validated by the router.
pub async fn htmlfile(
    req: &HttpRequest,
    endpoint: &EndpointInner,
    id: Arc<str>,
    callback: &str,
) -> HttpResponse {
    let transport = ReceivingTransport {
        kind: ReceiverKind::Streaming,
        wrap: Wrap::HtmlFile,
        prelude: Some(Bytes::from(htmlfile_prelude(callback))),
        content_type: HTML,
        cors: Cors::None,
        nosniff: true,
    };
    body::receive(req, endpoint, id, transport).await
}

/// The htmlfile page head, padded past 1 KiB so that browsers start rendering it.
fn htmlfile_prelude(callback: &str) -> String {
    let mut page = format!(
        "<!doctype html>\n\
         <html><head>\n\
         \x20 <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n\
         \x20 <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n\
         </head><body><h2>Don't panic!</h2>\n\
         \x20 <script>\n\
         \x20   document.domain = document.domain;\n\
         \x20   var c = parent.{callback};\n\
         \x20   c.start();\n\
         \x20   function p(d) {{c.message(d);}};\n\
         \x20   window.onload = function() {{c.stop();}};\n\
         \x20 </script>"
    );
    let padding = 1024usize.saturating_sub(page.len()) + 14;
    page.extend(std::iter::repeat_n(' ', padding));
    page.push_str("\r\n\r\n");
    page
}

#[cfg(test)]
mod tests {
    #[test]
    fn htmlfile_prelude_is_longer_than_1_kib() {
        let page = super::htmlfile_prelude("callback");
        assert!(page.len() > 1024);
        assert!(page.contains("var c = parent.callback;"));
    }
}
