//! Xhr-polling: `/<server>/<session>/xhr` and `/xhr_send` (`XhrPolling`).

use awc::http::Method;

use crate::checks::{
    assert_content_type, assert_cors, assert_not_cached, assert_options_preflight,
};
use crate::common::TestServer;
use crate::steps::{expect_xhr_poll, session_url, xhr_open, xhr_poll, xhr_send};

#[actix_rt::test]
async fn xhr_and_xhr_send_answer_options_preflight() {
    let server = TestServer::sockjs().await;
    for transport in ["xhr", "xhr_send"] {
        let path = format!("/echo/abc/abc/{transport}");
        assert_options_preflight(&server, &path, "OPTIONS, POST").await;
    }
}

#[actix_rt::test]
async fn xhr_polling_delivers_frames_uncached_with_cors() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let r = xhr_poll(&server, &url).await;
    assert_eq!((r.status, r.text()), (200, "o\n"));
    assert_content_type(&r, "application/javascript;charset=UTF-8");
    assert_cors(&r, None);
    assert_not_cached(&r);

    let r = server.post(&format!("{url}/xhr_send"), r#"["x"]"#).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    // Even a 204 says text/plain, or Firefox guesses xml and complains.
    assert_content_type(&r, "text/plain;charset=UTF-8");
    assert_cors(&r, None);
    assert_not_cached(&r);

    expect_xhr_poll(&server, &url, "a[\"x\"]\n").await;
}

/// Pages in sandboxed frames and `file://` pages send `Origin: null`; sockjs-client's XHRs
/// carry credentials, which browsers refuse with `*`: `null` is echoed like any origin.
#[actix_rt::test]
async fn xhr_from_a_null_origin_echoes_null_with_credentials() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let origin = [("Origin", "null")];
    for (path, body, status) in [("xhr", "", 200), ("xhr_send", r#"["x"]"#, 204)] {
        let r = server
            .request(Method::POST, &format!("{url}/{path}"), &origin, body)
            .await;
        assert_eq!(r.status, status, "{path}");
        assert_cors(&r, Some("null"));
    }
    let path = format!("{}/xhr_streaming", session_url("/echo"));
    let (head, _body) = server.open_stream(Method::POST, &path, &origin).await;
    assert_eq!(head.status, 200);
    assert_cors(&head, Some("null"));
}

#[actix_rt::test]
async fn xhr_from_an_origin_echoes_it_and_allows_credentials() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let origin = [("Origin", "http://example.com")];
    let r = server
        .request(Method::POST, &format!("{url}/xhr"), &origin, "")
        .await;
    assert_eq!((r.status, r.text()), (200, "o\n"));
    assert_cors(&r, Some("http://example.com"));

    let r = server
        .request(
            Method::POST,
            &format!("{url}/xhr_send"),
            &origin,
            r#"["x"]"#,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_cors(&r, Some("http://example.com"));
}

#[actix_rt::test]
async fn xhr_send_to_unknown_session_is_404() {
    let server = TestServer::sockjs().await;
    for url in [session_url("/echo"), "/echo/000/bad_session".to_owned()] {
        let r = server.post(&format!("{url}/xhr_send"), r#"["x"]"#).await;
        assert_eq!(r.status, 404, "{url}");
    }
}

#[actix_rt::test]
async fn xhr_send_with_broken_json_is_500_broken_json_encoding() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    xhr_open(&server, &url).await;

    let r = server.post(&format!("{url}/xhr_send"), r#"["x"#).await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("Broken JSON encoding."), "{:?}", r.text());

    // The session survives a rejected send.
    xhr_send(&server, &url, r#"["a"]"#).await;
    expect_xhr_poll(&server, &url, "a[\"a\"]\n").await;
}

#[actix_rt::test]
async fn xhr_send_without_payload_is_500_payload_expected() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    xhr_open(&server, &url).await;

    let r = server.post(&format!("{url}/xhr_send"), "").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("Payload expected."), "{:?}", r.text());
    assert_cors(&r, None);

    // A send is an array of messages: a bare JSON string, object, number or null is not one
    // (sockjs-node answers each with "Payload expected."), and none of it is delivered.
    for body in [r#""x""#, "{}", "1", "null"] {
        let r = server.post(&format!("{url}/xhr_send"), body).await;
        assert_eq!(r.status, 500, "body {body}");
        assert!(
            r.text().contains("Payload expected."),
            "{body}: {:?}",
            r.text()
        );
    }

    xhr_send(&server, &url, r#"["a"]"#).await;
    expect_xhr_poll(&server, &url, "a[\"a\"]\n").await;
}

#[actix_rt::test]
async fn xhr_send_accepts_any_content_type() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    xhr_open(&server, &url).await;

    let content_types = [
        "text/plain",
        "T",
        "application/json",
        "application/xml",
        "",
        "application/json; charset=utf-8",
        "text/xml; charset=utf-8",
        "text/xml",
    ];
    for content_type in content_types {
        let r = server
            .request(
                Method::POST,
                &format!("{url}/xhr_send"),
                &[("Content-Type", content_type)],
                r#"["a"]"#,
            )
            .await;
        assert_eq!(r.status, 204, "Content-Type {content_type:?}");
        assert!(r.body.is_empty());
    }

    let all = vec![r#""a""#; content_types.len()].join(",");
    expect_xhr_poll(&server, &url, &format!("a[{all}]\n")).await;
}

#[actix_rt::test]
async fn xhr_echoes_access_control_request_headers() {
    let server = TestServer::sockjs().await;
    let r = server
        .request(
            Method::POST,
            &format!("{}/xhr", session_url("/echo")),
            &[("Access-Control-Request-Headers", "a, b, c")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_cors(&r, None);
    assert_eq!(r.header("access-control-allow-headers"), Some("a, b, c"));
}

#[actix_rt::test]
async fn xhr_without_request_headers_sends_no_allow_headers() {
    let server = TestServer::sockjs().await;
    let empty: &[(&str, &str)] = &[("Access-Control-Request-Headers", "")];
    for headers in [empty, &[]] {
        let path = format!("{}/xhr", session_url("/echo"));
        let r = server.request(Method::POST, &path, headers, "").await;
        assert_eq!(r.status, 200, "headers {headers:?}");
        assert_cors(&r, None);
        assert_eq!(r.header("access-control-allow-headers"), None);
    }
}
