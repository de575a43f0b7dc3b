//! Jsonp-polling: `/<server>/<session>/jsonp?c=<callback>` and `/jsonp_send` (`JsonPolling`),
//! plus the callback-name check our issue asks for.

use awc::http::Method;

use crate::checks::{
    assert_callback_rejected, assert_callback_required, assert_content_type, assert_no_cors,
    assert_nosniff, assert_not_cached, UNSAFE_CALLBACKS,
};
use crate::common::{Reply, TestServer};
use crate::steps::session_url;

const FORM: &str = "application/x-www-form-urlencoded";

async fn jsonp_send(server: &TestServer, url: &str, content_type: &str, body: &str) -> Reply {
    server
        .request(
            Method::POST,
            &format!("{url}/jsonp_send"),
            &[("Content-Type", content_type)],
            body,
        )
        .await
}

/// Polls with callback `x`, expecting `frame` (as a JavaScript string literal's content).
async fn expect_poll(server: &TestServer, url: &str, frame: &str) {
    let r = server.get(&format!("{url}/jsonp?c=x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("/**/x(\"{frame}\");\r\n"));
}

#[actix_rt::test]
async fn jsonp_polling_delivers_frames_and_accepts_form_encoded_sends() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let r = server.get(&format!("{url}/jsonp?c=%63allback")).await;
    assert_eq!(r.status, 200);
    assert_content_type(&r, "application/javascript;charset=UTF-8");
    assert_not_cached(&r);
    // `/**/` first and nosniff: the answer never starts with bytes the requester chose, and is
    // never taken for anything but a script (the Rosetta Flash defence, as sockjs-node).
    assert_nosniff(&r);
    assert_eq!(r.text(), "/**/callback(\"o\");\r\n");

    let r = jsonp_send(&server, &url, FORM, "d=%5B%22x%22%5D").await;
    // Konqueror mishandles 204, so jsonp_send answers 200 "ok".
    assert_eq!((r.status, r.text()), (200, "ok"));
    assert_content_type(&r, "text/plain;charset=UTF-8");
    assert_not_cached(&r);

    let r = server.get(&format!("{url}/jsonp?c=%63allback")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "/**/callback(\"a[\\\"x\\\"]\");\r\n");
}

/// Scripts and forms need no CORS: jsonp and jsonp_send answer without it, whatever the
/// `Origin` (as sockjs-node).
#[actix_rt::test]
async fn jsonp_answers_carry_no_cors_headers() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    for origin in ["http://example.com", "null"] {
        let headers = [("Origin", origin)];
        let r = server
            .request(Method::GET, &format!("{url}/jsonp?c=x"), &headers, "")
            .await;
        assert_eq!(r.status, 200);
        assert_no_cors(&r);
        let r = server
            .request(
                Method::POST,
                &format!("{url}/jsonp_send"),
                &[("Origin", origin), ("Content-Type", FORM)],
                "d=%5B%22x%22%5D",
            )
            .await;
        assert_eq!((r.status, r.text()), (200, "ok"));
        assert_no_cors(&r);
    }
}

#[actix_rt::test]
async fn jsonp_without_callback_is_500_callback_parameter_required() {
    let server = TestServer::sockjs().await;
    assert_callback_required(&server, "/echo/a/a/jsonp").await;
}

#[actix_rt::test]
async fn jsonp_refuses_callback_names_outside_letters_digits_dot_underscore() {
    let server = TestServer::sockjs().await;
    for (raw, encoded) in UNSAFE_CALLBACKS {
        let path = format!("{}/jsonp?c={encoded}", session_url("/echo"));
        assert_callback_rejected(&server, &path, raw).await;
    }
}

#[actix_rt::test]
async fn jsonp_accepts_callback_names_with_dots_and_underscores() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let r = server.get(&format!("{url}/jsonp?c=_jp.a1B2_c3")).await;
    assert_eq!((r.status, r.text()), (200, "/**/_jp.a1B2_c3(\"o\");\r\n"));
}

#[actix_rt::test]
async fn jsonp_send_with_broken_json_is_500_broken_json_encoding() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    expect_poll(&server, &url, "o").await;

    let r = jsonp_send(&server, &url, FORM, "d=%5B%22x").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("Broken JSON encoding."), "{:?}", r.text());

    // The session survives a rejected send.
    let r = jsonp_send(&server, &url, FORM, "d=%5B%22b%22%5D").await;
    assert_eq!(r.text(), "ok");
    expect_poll(&server, &url, "a[\\\"b\\\"]").await;
}

#[actix_rt::test]
async fn jsonp_send_without_payload_is_500_payload_expected() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    expect_poll(&server, &url, "o").await;

    for body in ["", "d=", "p=p", "d=%22x%22", "d=%7B%7D"] {
        let r = jsonp_send(&server, &url, FORM, body).await;
        assert_eq!(r.status, 500, "body {body:?}");
        assert!(r.text().contains("Payload expected."), "{:?}", r.text());
    }

    let r = jsonp_send(&server, &url, FORM, "d=%5B%22b%22%5D").await;
    assert_eq!(r.text(), "ok");
    expect_poll(&server, &url, "a[\\\"b\\\"]").await;
}

#[actix_rt::test]
async fn jsonp_send_accepts_form_encoded_and_raw_bodies() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    expect_poll(&server, &url, "o").await;

    let r = jsonp_send(&server, &url, FORM, "d=%5B%22abc%22%5D").await;
    assert_eq!(r.text(), "ok");
    // A raw body is taken as it is: no url-decoding.
    let r = jsonp_send(&server, &url, "text/plain", r#"["%61bc"]"#).await;
    assert_eq!(r.text(), "ok");

    expect_poll(&server, &url, "a[\\\"abc\\\",\\\"%61bc\\\"]").await;
}

#[actix_rt::test]
async fn jsonp_on_close_endpoint_serves_its_close_frame_on_every_poll() {
    let server = TestServer::sockjs().await;
    let url = session_url("/close");
    expect_poll(&server, &url, "o").await;
    expect_poll(&server, &url, "c[3000,\\\"Go away!\\\"]").await;
    expect_poll(&server, &url, "c[3000,\\\"Go away!\\\"]").await;
}
