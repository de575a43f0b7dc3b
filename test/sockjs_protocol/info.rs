//! `/info`: server capabilities, entropy and CORS preflight (`InfoTest`).

use awc::http::Method;

use crate::checks::{
    assert_content_type, assert_cors, assert_no_cookie, assert_not_cached, assert_options_preflight,
};
use crate::common::TestServer;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not JSON: {e}"))
}

/// The entropy value, which must be an integer in 0..=2^32-1.
fn entropy(info: &serde_json::Value) -> u64 {
    let entropy = info["entropy"]
        .as_u64()
        .unwrap_or_else(|| panic!("entropy must be an unsigned integer: {info}"));
    assert!(
        entropy <= u64::from(u32::MAX),
        "entropy {entropy} above 2^32-1"
    );
    entropy
}

#[actix_rt::test]
async fn info_describes_the_server_uncached_with_cors() {
    let server = TestServer::sockjs().await;
    let r = server.get("/echo/info").await;
    assert_eq!(r.status, 200);
    assert_content_type(&r, "application/json;charset=UTF-8");
    assert_no_cookie(&r);
    assert_not_cached(&r);
    assert_cors(&r, None);

    let info = json(r.text());
    assert_eq!(info["websocket"], true);
    assert!(info["cookie_needed"].is_boolean(), "{info}");
    assert_eq!(info["origins"], serde_json::json!(["*:*"]));
    entropy(&info);
}

#[actix_rt::test]
async fn info_entropy_differs_between_requests() {
    let server = TestServer::sockjs().await;
    let first = entropy(&json(server.get("/echo/info").await.text()));
    let second = entropy(&json(server.get("/echo/info").await.text()));
    assert_ne!(first, second);
}

#[actix_rt::test]
async fn info_answers_options_preflight() {
    let server = TestServer::sockjs().await;
    assert_options_preflight(&server, "/echo/info", "OPTIONS, GET").await;
}

/// A page in a sandboxed frame or opened from `file://` sends `Origin: null`; sockjs-client's
/// XHRs carry credentials, which browsers refuse with `*`, so `null` is echoed with
/// credentials allowed (sockjs-node 0.3.16: "Fix CORS response for null origin").
#[actix_rt::test]
async fn info_from_null_origin_echoes_null_with_credentials() {
    let server = TestServer::sockjs().await;
    let r = server
        .request(Method::OPTIONS, "/echo/info", &[("Origin", "null")], "")
        .await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_cors(&r, Some("null"));
    let r = server
        .request(Method::GET, "/echo/info", &[("Origin", "null")], "")
        .await;
    assert_eq!(r.status, 200);
    assert_cors(&r, Some("null"));
}

#[actix_rt::test]
async fn info_of_disabled_websocket_endpoint_says_websocket_false() {
    let server = TestServer::sockjs().await;
    let r = server.get("/disabled_websocket_echo/info").await;
    assert_eq!(r.status, 200);
    assert_eq!(json(r.text())["websocket"], false);
}
