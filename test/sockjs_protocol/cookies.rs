//! The `JSESSIONID` cookie that sticky load balancers need, on the `/cookie_needed_echo`
//! endpoint (`JsessionidCookie`).

use awc::http::Method;

use crate::checks::assert_no_cookie;
use crate::common::{Reply, TestServer};
use crate::steps::session_url;

/// `Set-Cookie: JSESSIONID=<value>; path=/...`
fn assert_jsessionid(reply: &Reply, value: &str) {
    let cookie = reply.header("set-cookie").expect("Set-Cookie header");
    let mut parts = cookie.split(';').map(str::trim);
    assert_eq!(
        parts.next(),
        Some(format!("JSESSIONID={value}").as_str()),
        "{cookie}"
    );
    assert_eq!(
        parts.next().map(str::to_ascii_lowercase).as_deref(),
        Some("path=/"),
        "{cookie}"
    );
}

/// Opens a streaming transport on the cookie endpoint and checks the cookie on its head.
async fn assert_streaming_sets_cookie(method: Method, transport: &str) {
    let server = TestServer::sockjs().await;
    let path = format!("{}/{transport}", session_url("/cookie_needed_echo"));
    let (head, _body) = server.open_stream(method, &path, &[]).await;
    assert_eq!(head.status, 200, "{path}");
    assert_jsessionid(&head, "dummy");
}

#[actix_rt::test]
async fn info_of_cookie_endpoint_says_cookie_needed_without_setting_one() {
    let server = TestServer::sockjs().await;
    let r = server.get("/cookie_needed_echo/info").await;
    assert_eq!(r.status, 200);
    assert_no_cookie(&r);
    let info: serde_json::Value = serde_json::from_str(r.text()).expect("JSON info");
    assert_eq!(info["cookie_needed"], true);
}

#[actix_rt::test]
async fn xhr_on_cookie_endpoint_sets_dummy_jsessionid() {
    let server = TestServer::sockjs().await;
    let url = session_url("/cookie_needed_echo");
    let r = server.post(&format!("{url}/xhr"), "").await;
    assert_eq!((r.status, r.text()), (200, "o\n"));
    assert_jsessionid(&r, "dummy");
}

#[actix_rt::test]
async fn xhr_on_cookie_endpoint_echoes_an_existing_jsessionid() {
    let server = TestServer::sockjs().await;
    let url = session_url("/cookie_needed_echo");
    let r = server
        .request(
            Method::POST,
            &format!("{url}/xhr"),
            &[("Cookie", "JSESSIONID=abcdef")],
            "",
        )
        .await;
    assert_eq!((r.status, r.text()), (200, "o\n"));
    assert_jsessionid(&r, "abcdef");
}

#[actix_rt::test]
async fn xhr_streaming_on_cookie_endpoint_sets_jsessionid() {
    assert_streaming_sets_cookie(Method::POST, "xhr_streaming").await;
}

#[actix_rt::test]
async fn eventsource_on_cookie_endpoint_sets_jsessionid() {
    assert_streaming_sets_cookie(Method::GET, "eventsource").await;
}

#[actix_rt::test]
async fn htmlfile_on_cookie_endpoint_sets_jsessionid() {
    assert_streaming_sets_cookie(Method::GET, "htmlfile?c=%63allback").await;
}

#[actix_rt::test]
async fn jsonp_and_jsonp_send_on_cookie_endpoint_set_jsessionid() {
    let server = TestServer::sockjs().await;
    let url = session_url("/cookie_needed_echo");
    let r = server.get(&format!("{url}/jsonp?c=%63allback")).await;
    assert_eq!(r.status, 200);
    assert_jsessionid(&r, "dummy");
    assert_eq!(r.text(), "/**/callback(\"o\");\r\n");

    let r = server
        .request(
            Method::POST,
            &format!("{url}/jsonp_send"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "d=%5B%22x%22%5D",
        )
        .await;
    assert_eq!((r.status, r.text()), (200, "ok"));
    assert_jsessionid(&r, "dummy");
}
