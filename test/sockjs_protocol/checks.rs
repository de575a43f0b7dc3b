//! Rules the protocol states once and applies to many urls: content types, CORS, caching,
//! cookies and the answer to `OPTIONS`. Each is one assertion function the test modules share.

use awc::http::Method;

use crate::common::{Reply, TestServer};

/// Compares `Content-Type` ignoring spaces, as the protocol does.
pub fn assert_content_type(reply: &Reply, expected: &str) {
    let got = reply
        .header("content-type")
        .unwrap_or_default()
        .replace(' ', "");
    assert_eq!(got, expected, "Content-Type");
}

pub fn assert_no_cookie(reply: &Reply) {
    assert_eq!(reply.header("set-cookie"), None, "no Set-Cookie expected");
}

/// The CORS headers of XHR transports, `/info` and preflights, as sockjs-node 0.3.24 sends
/// them: the request's origin echoed with credentials allowed — `null` too (sandboxed frames,
/// `file://` pages: sockjs-client's credentialed XHRs fail on `*`) — and `*` without an origin;
/// `Vary: Origin` either way, since the answer depends on it.
pub fn assert_cors(reply: &Reply, origin: Option<&str>) {
    match origin {
        Some(origin) => {
            assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
            assert_eq!(
                reply.header("access-control-allow-credentials"),
                Some("true")
            );
        }
        None => {
            assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
            assert_eq!(reply.header("access-control-allow-credentials"), None);
        }
    }
    assert_eq!(
        reply.header("vary"),
        Some("Origin"),
        "Vary: Origin expected"
    );
}

/// Script and frame transports (jsonp, jsonp_send, htmlfile) carry no CORS headers: browsers
/// load them as scripts, forms and frames, and never ask.
pub fn assert_no_cors(reply: &Reply) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "vary",
    ] {
        assert_eq!(reply.header(name), None, "no {name} expected");
    }
}

/// `X-Content-Type-Options: nosniff` (jsonp and htmlfile; the Rosetta Flash defence).
pub fn assert_nosniff(reply: &Reply) {
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "X-Content-Type-Options: nosniff expected"
    );
}

/// Private answers to GET (and POST, for iOS 6) must never be cached, nor transformed by a
/// proxy (one that recompresses would hold streaming answers back).
pub fn assert_not_cached(reply: &Reply) {
    assert_eq!(
        reply.header("cache-control"),
        Some("no-store, no-cache, no-transform, must-revalidate, max-age=0")
    );
    assert_eq!(reply.header("expires"), None, "no Expires expected");
    assert_eq!(
        reply.header("last-modified"),
        None,
        "no Last-Modified expected"
    );
}

/// `Cache-Control: public, max-age=<at least 1000000>` and an `Expires` header.
pub fn assert_long_cacheable(reply: &Reply) {
    let cache_control = reply.header("cache-control").unwrap_or_default();
    assert!(cache_control.contains("public"), "{cache_control:?}");
    let max_age: u64 = cache_control
        .split("max-age=")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no max-age in {cache_control:?}"));
    assert!(
        max_age >= 1_000_000,
        "max-age {max_age} must be large, one year is best"
    );
    assert!(reply.header("expires").is_some(), "Expires expected");
}

/// The preflight answer of a CORS-capable url, for no origin, a real origin and `null`.
pub async fn assert_options_preflight(server: &TestServer, path: &str, allowed_methods: &str) {
    for origin in [None, Some("test"), Some("null")] {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        let r = server.request(Method::OPTIONS, path, &headers, "").await;
        assert_eq!(r.status, 204, "OPTIONS {path} origin {origin:?}");
        assert_long_cacheable(&r);
        let max_age: u64 = r
            .header("access-control-max-age")
            .and_then(|v| v.parse().ok())
            .expect("numeric Access-Control-Max-Age");
        assert!(max_age > 1_000_000, "Access-Control-Max-Age {max_age}");
        assert_eq!(
            r.header("access-control-allow-methods"),
            Some(allowed_methods)
        );
        assert!(r.body.is_empty(), "OPTIONS answer has no body");
        assert_cors(&r, origin);
    }
}

/// Callback names the server must refuse: they could run script in the page that loads them.
/// Each pair is the raw name and its url-encoded form.
pub const UNSAFE_CALLBACKS: [(&str, &str); 2] = [
    ("alert(1)", "alert%281%29"),
    (
        "<img src=x onerror=alert(1)>",
        "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E",
    ),
];

/// `GET path` (a jsonp or htmlfile url without `c=`) must fail with 500 and say why.
pub async fn assert_callback_required(server: &TestServer, path: &str) {
    let r = server.get(path).await;
    assert_eq!(r.status, 500, "GET {path}");
    assert!(
        r.text().contains(r#""callback" parameter required"#),
        "GET {path}: {:?}",
        r.text()
    );
}

/// `GET path` must fail with 500 and an error message that does not repeat `raw_callback`.
/// Reads the head first, so that a wrongly accepted streaming request fails clearly.
pub async fn assert_callback_rejected(server: &TestServer, path: &str, raw_callback: &str) {
    let (head, mut body) = server.open_stream(Method::GET, path, &[]).await;
    assert_eq!(head.status, 500, "GET {path} must refuse the callback");
    let body = body.read_to_end().await;
    let body = String::from_utf8_lossy(&body);
    assert!(!body.trim().is_empty(), "GET {path}: 500 without a message");
    assert!(
        !body.contains(raw_callback),
        "GET {path}: error message reflects the callback: {body:?}"
    );
}
