//! Response headers every SockJS transport shares: CORS, caching and the `JSESSIONID` cookie.
//!
//! They are sockjs-node 0.3.24's (the server sockjs-client 1.x is developed against): CORS
//! only where a browser asks for it (XHR transports, `/info`, eventsource), with the page's
//! `Origin` echoed — `null` included — and `Vary: Origin`; `no-transform` in `Cache-Control`
//! so that recompressing proxies leave streams alone; `X-Content-Type-Options: nosniff` on the
//! script and frame transports.

use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

use super::options::SockjsOptions;

/// `Cache-Control` for responses that must never be cached (GET transports, POSTs on iOS 6).
pub const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
/// One year, the cache lifetime of the iframe page and of preflight answers.
pub const ONE_YEAR_SECS: u64 = 31_536_000;

/// `text/plain; charset=UTF-8`
pub const TEXT_PLAIN: &str = "text/plain; charset=UTF-8";
/// `application/javascript; charset=UTF-8`
pub const JAVASCRIPT: &str = "application/javascript; charset=UTF-8";
/// `application/json; charset=UTF-8`
pub const JSON: &str = "application/json; charset=UTF-8";
/// `text/html; charset=UTF-8`
pub const HTML: &str = "text/html; charset=UTF-8";
/// `text/event-stream` (the format is UTF-8 by definition; sockjs-node names no charset)
pub const EVENT_STREAM: &str = "text/event-stream";

/// Which CORS headers a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cors {
    /// XHR transports, `/info` and preflights: the request's `Origin` echoed (`null` too: pages
    /// in sandboxed frames or opened from `file://`) with credentials allowed, since
    /// sockjs-client sends its XHRs with credentials; `*` when there is no `Origin`.
    Credentialed,
    /// eventsource: as [`Cors::Credentialed`], but `null` gets `*` (an `EventSource` sends no
    /// credentials).
    EventSource,
    /// jsonp, jsonp_send and htmlfile: none, as browsers load them as scripts, forms and frames.
    None,
}

/// Adds the CORS headers of `policy`, with `Vary: Origin` since they depend on it, and the
/// requested headers allowed.
pub fn cors(req: &HttpRequest, res: &mut HttpResponseBuilder, policy: Cors) {
    let origin = match policy {
        Cors::None => return,
        Cors::Credentialed => req.headers().get(header::ORIGIN),
        Cors::EventSource => {
            (req.headers().get(header::ORIGIN)).filter(|o| o.as_bytes() != b"null")
        }
    };
    match origin.filter(|o| !o.is_empty()) {
        Some(origin) => {
            res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
            res.insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"));
        }
        None => {
            res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
        }
    }
    res.insert_header((header::VARY, "Origin"));
    if let Some(requested) = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|h| !h.is_empty())
    {
        res.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone()));
    }
}

/// `X-Content-Type-Options: nosniff`: a jsonp or htmlfile answer is never taken for another
/// type (the Rosetta Flash defence, with the `/**/` before a JSONP callback).
pub fn nosniff(res: &mut HttpResponseBuilder) {
    res.insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
}

/// Whether the page that sent `req` may use the endpoint (`http.allowed_origins`; see
/// [`SockjsOptions::allowed_origins`]). Requests without an `Origin` are not from a
/// cross-origin page (browsers send it on every websocket upgrade and cross-origin request) and
/// pass; `null` (sandboxed frames, `file://`) does not pass a list, nor does a request with two
/// `Origin` headers.
pub fn origin_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let mut origins = req.headers().get_all(header::ORIGIN);
    let Some(origin) = origins.next() else {
        return true;
    };
    if origins.next().is_some() {
        // No browser sends two; which one a cache or proxy looked at is anyone's guess.
        return false;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().to_ascii_lowercase();
    if allowed.contains(&origin) {
        return true;
    }
    // The server's own pages (the iframe transports post from there).
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    host.is_some() && origin_host == host.as_deref()
}

/// 403 for a page from an origin not in `http.allowed_origins`; no CORS headers, so the page
/// cannot read even this.
pub fn origin_refused(req: &HttpRequest) -> HttpResponse {
    log::debug!(
        "request refused: origin not allowed origin={:?} path={}",
        req.headers().get(header::ORIGIN),
        req.path()
    );
    HttpResponse::Forbidden()
        .content_type(TEXT_PLAIN)
        .body("Origin not allowed\n")
}

/// Forbids caching.
pub fn no_cache(res: &mut HttpResponseBuilder) {
    res.insert_header((header::CACHE_CONTROL, NO_CACHE));
}

/// Allows caching for a year.
pub fn cache_for_a_year(res: &mut HttpResponseBuilder) {
    res.insert_header((
        header::CACHE_CONTROL,
        format!("public, max-age={ONE_YEAR_SECS}"),
    ));
    let expires = SystemTime::now() + Duration::from_secs(ONE_YEAR_SECS);
    res.insert_header(header::Expires(expires.into()));
}

/// Sets `JSESSIONID` for sticky load balancers when the endpoint asks for it: the client's own
/// value echoed, else `dummy`.
pub fn session_cookie(req: &HttpRequest, options: &SockjsOptions, res: &mut HttpResponseBuilder) {
    if !options.cookie_needed {
        return;
    }
    let value = req
        .cookie("JSESSIONID")
        .map(|c| c.value().to_string())
        .filter(|v| v.bytes().all(|b| b.is_ascii_graphic() && b != b';'))
        .unwrap_or_else(|| "dummy".to_string());
    if let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={value}; path=/")) {
        res.insert_header((header::SET_COOKIE, v));
    }
}

/// The answer to a CORS preflight (`OPTIONS`) for a URL allowing `methods`; it sets the
/// `JSESSIONID` cookie too when wanted, as every sockjs-node answer about a session does.
pub fn preflight(
    req: &HttpRequest,
    options: &SockjsOptions,
    methods: &'static str,
) -> HttpResponse {
    let mut res = HttpResponse::NoContent();
    cache_for_a_year(&mut res);
    res.insert_header((header::ACCESS_CONTROL_MAX_AGE, ONE_YEAR_SECS.to_string()));
    res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods));
    cors(req, &mut res, Cors::Credentialed);
    session_cookie(req, options, &mut res);
    res.finish()
}

/// `404` with sockjs-node's plain-text body, for URLs under the prefix that are no SockJS URL
/// and for sends to sessions that do not exist.
pub fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type(TEXT_PLAIN)
        .body("404 Error: Page not found\n")
}

/// `405 Method Not Allowed` with an `Allow` header and no body or content type.
pub fn method_not_allowed(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .finish()
}

/// The headers of every response about a session: its content type, no caching, the CORS
/// headers of its transport and the `JSESSIONID` cookie when wanted.
pub fn session_response(
    req: &HttpRequest,
    options: &SockjsOptions,
    res: &mut HttpResponseBuilder,
    content_type: &'static str,
    policy: Cors,
) {
    res.content_type(content_type);
    no_cache(res);
    cors(req, res, policy);
    session_cookie(req, options, res);
}

/// A `500` with a plain-text message, as SockJS clients expect for bad requests.
pub fn error_500(
    req: &HttpRequest,
    options: &SockjsOptions,
    policy: Cors,
    message: &str,
) -> HttpResponse {
    let mut res = HttpResponse::InternalServerError();
    session_response(req, options, &mut res, TEXT_PLAIN, policy);
    res.body(message.to_string())
}
