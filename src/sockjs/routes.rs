//! URL routing under an endpoint's prefix: which SockJS URL a request is, and who answers it.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use super::frames::valid_callback;
use super::headers::{self, Cors};
use super::info;
use super::websocket::{self, Flavour};
use super::{jsonp, streaming, xhr, EndpointInner};

/// A transport named by the last segment of a session URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Websocket,
    Xhr,
    XhrSend,
    XhrStreaming,
    EventSource,
    HtmlFile,
    Jsonp,
    JsonpSend,
}

impl Transport {
    fn from_segment(segment: &str) -> Option<Self> {
        Some(match segment {
            "websocket" => Transport::Websocket,
            "xhr" => Transport::Xhr,
            "xhr_send" => Transport::XhrSend,
            "xhr_streaming" => Transport::XhrStreaming,
            "eventsource" => Transport::EventSource,
            "htmlfile" => Transport::HtmlFile,
            "jsonp" => Transport::Jsonp,
            "jsonp_send" => Transport::JsonpSend,
            _ => return None,
        })
    }
}

/// A SockJS URL, parsed from the path below the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Greeting,
    Info,
    Iframe,
    RawWebsocket,
    Session {
        session: String,
        transport: Transport,
    },
    NotFound,
}

impl Route {
    /// Parses the path below the prefix (`""`, `"/"`, `"/info"`, `"/000/abc/xhr"`, ...).
    pub fn parse(rest: &str) -> Route {
        match rest {
            "" | "/" => return Route::Greeting,
            "/info" => return Route::Info,
            "/websocket" => return Route::RawWebsocket,
            _ => {}
        }
        let Some(rest) = rest.strip_prefix('/') else {
            return Route::NotFound;
        };
        if info::is_iframe_path(rest) {
            return Route::Iframe;
        }
        let mut parts = rest.split('/');
        let (Some(server), Some(session), Some(transport), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Route::NotFound;
        };
        let valid = |s: &str| !s.is_empty() && !s.contains('.');
        match Transport::from_segment(transport) {
            Some(transport) if valid(server) && valid(session) => Route::Session {
                session: session.to_string(),
                transport,
            },
            _ => Route::NotFound,
        }
    }
}

/// The single entry point of an endpoint's scope.
pub async fn entry(
    req: HttpRequest,
    payload: web::Payload,
    endpoint: web::Data<EndpointInner>,
) -> HttpResponse {
    let endpoint = endpoint.into_inner();
    let rest = req
        .path()
        .strip_prefix(endpoint.options.prefix.as_str())
        .unwrap_or("");
    let method = req.method().clone();
    let route = Route::parse(rest);
    let guarded = !matches!(route, Route::Greeting | Route::Iframe | Route::NotFound);
    if guarded && !headers::origin_allowed(&req, &endpoint.options.allowed_origins) {
        return headers::origin_refused(&req);
    }
    match route {
        Route::Greeting if method == Method::GET => info::greeting(),
        Route::Greeting => headers::method_not_allowed("GET"),
        Route::Info if method == Method::GET => info::info(&req, &endpoint.options),
        Route::Info if method == Method::OPTIONS => {
            headers::preflight(&req, &endpoint.options, "OPTIONS, GET")
        }
        Route::Info => headers::method_not_allowed("OPTIONS, GET"),
        Route::Iframe if method == Method::GET => endpoint.iframe.respond(&req),
        Route::Iframe => headers::method_not_allowed("GET"),
        Route::RawWebsocket
        | Route::Session {
            transport: Transport::Websocket,
            ..
        } if !endpoint.options.websocket => headers::not_found(),
        Route::RawWebsocket => {
            let id: Arc<str> = Arc::from(format!("raw-{:032x}", rand::random::<u128>()));
            websocket::start(&req, endpoint, id, Flavour::Raw)
        }
        Route::Session { session, transport } => {
            session_request(
                req,
                payload,
                endpoint,
                Arc::from(session),
                transport,
                method,
            )
            .await
        }
        Route::NotFound => headers::not_found(),
    }
}

async fn session_request(
    req: HttpRequest,
    payload: web::Payload,
    endpoint: Arc<EndpointInner>,
    id: Arc<str>,
    transport: Transport,
    method: Method,
) -> HttpResponse {
    use Transport::*;
    let post_transport = matches!(transport, Xhr | XhrSend | XhrStreaming | JsonpSend);
    if method == Method::OPTIONS && post_transport {
        return headers::preflight(&req, &endpoint.options, "OPTIONS, POST");
    }
    let expected = if post_transport {
        Method::POST
    } else {
        Method::GET
    };
    if method != expected {
        return headers::method_not_allowed(if post_transport {
            "OPTIONS, POST"
        } else {
            "GET"
        });
    }
    match transport {
        Websocket => websocket::start(&req, endpoint, id, Flavour::Framed),
        Xhr => xhr::poll(&req, &endpoint, id).await,
        XhrSend => xhr::send(&req, payload, &endpoint, id).await,
        XhrStreaming => streaming::xhr_streaming(&req, &endpoint, id).await,
        EventSource => streaming::eventsource(&req, &endpoint, id).await,
        HtmlFile => match callback(&req) {
            Ok(cb) => streaming::htmlfile(&req, &endpoint, id, &cb).await,
            Err(message) => headers::error_500(&req, &endpoint.options, Cors::None, message),
        },
        Jsonp => match callback(&req) {
            Ok(cb) => jsonp::poll(&req, &endpoint, id, &cb).await,
            Err(message) => headers::error_500(&req, &endpoint.options, Cors::None, message),
        },
        JsonpSend => jsonp::send(&req, payload, &endpoint, id).await,
    }
}

/// The `c` (or `callback`) query parameter of JSONP and htmlfile requests, validated.
fn callback(req: &HttpRequest) -> Result<String, &'static str> {
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let value = query
        .into_iter()
        .find(|(k, _)| k == "c" || k == "callback")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty());
    match value {
        None => Err("\"callback\" parameter required"),
        Some(v) if valid_callback(&v) => Ok(v),
        Some(_) => Err("invalid \"callback\" parameter: only [a-zA-Z0-9_.] allowed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(s: &str, t: Transport) -> Route {
        Route::Session {
            session: s.into(),
            transport: t,
        }
    }

    #[test]
    fn static_urls() {
        assert_eq!(Route::parse(""), Route::Greeting);
        assert_eq!(Route::parse("/"), Route::Greeting);
        assert_eq!(Route::parse("/info"), Route::Info);
        assert_eq!(Route::parse("/websocket"), Route::RawWebsocket);
        assert_eq!(Route::parse("/iframe-0.3.html"), Route::Iframe);
        for bad in ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"] {
            assert_eq!(Route::parse(bad), Route::NotFound, "{bad}");
        }
    }

    #[test]
    fn session_urls() {
        assert_eq!(Route::parse("/000/abc/xhr"), session("abc", Transport::Xhr));
        assert_eq!(
            Route::parse("/a/b%20c/jsonp_send"),
            session("b%20c", Transport::JsonpSend)
        );
        for bad in [
            "///xhr",
            "/a./a/xhr",
            "/a/a./xhr",
            "/./././xhr",
            "//xhr",
            "/a/a/nope",
            "/a/a/a/xhr",
        ] {
            assert_eq!(Route::parse(bad), Route::NotFound, "{bad}");
        }
    }
}
