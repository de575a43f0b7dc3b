//! The websocket transport `/<server>/<session>/websocket`, its HTTP errors, and the raw
//! `/websocket` entry point (`WebsocketHttpErrors`, `WebsocketHybi10`, `RawWebsocket`).

use crate::common::{RawConnection, TestServer, WsEvent};
use crate::steps::{open_websocket, session_url, websocket_handshake, WEBSOCKET_ACCEPT};

#[actix_rt::test]
async fn plain_get_of_websocket_url_is_400_can_upgrade_only_to_websocket() {
    let server = TestServer::sockjs().await;
    let r = server.get("/echo/0/0/websocket").await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains(r#"Can "Upgrade" only to "WebSocket"."#),
        "body {:?}",
        r.text()
    );
}

#[actix_rt::test]
async fn websocket_upgrade_without_connection_upgrade_is_400() {
    let server = TestServer::sockjs().await;
    let mut conn = RawConnection::connect(server.port());
    conn.send_request(
        "GET",
        "/echo/0/0/websocket",
        "1.1",
        &[("Upgrade", "WebSocket"), ("Connection", "close")],
        "",
    );
    let head = conn.read_head();
    let body = conn.read_body(&head);
    assert_eq!(head.status, 400);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains(r#""Connection" must be "Upgrade"."#),
        "body {body:?}"
    );
}

/// The hixie-76 handshake (browsers of 2010–2011: `Sec-WebSocket-Key1`/`Key2`, no version) is
/// refused with 400, deliberately (README, "Compared with sockjs-node"); sockjs-client then
/// falls back to an HTTP transport.
#[actix_rt::test]
async fn hixie_76_handshake_is_refused_with_400() {
    let server = TestServer::sockjs().await;
    let mut conn = RawConnection::connect(server.port());
    conn.send_request(
        "GET",
        "/echo/0/0/websocket",
        "1.1",
        &[
            ("Upgrade", "WebSocket"),
            ("Connection", "Upgrade"),
            ("Origin", "http://example.com"),
            ("Sec-WebSocket-Key1", "4 @1  46546xW%0l 1 5"),
            ("Sec-WebSocket-Key2", "12998 5 Y3 1  .P00"),
        ],
        "^n:ds[4U",
    );
    let head = conn.read_head();
    assert_eq!(head.status, 400, "hixie-76 must be refused");
    let body = String::from_utf8_lossy(&conn.read_body(&head)).into_owned();
    assert!(body.contains("Sec-WebSocket-Version"), "body {body:?}");
}

#[actix_rt::test]
async fn post_to_websocket_url_is_405_with_allow_and_no_body() {
    let server = TestServer::sockjs().await;
    let upgrade: &[(&str, &str)] = &[("Upgrade", "WebSocket"), ("Connection", "Upgrade")];
    for headers in [upgrade, &[]] {
        let mut conn = RawConnection::connect(server.port());
        conn.send_request("POST", "/echo/0/0/websocket", "1.1", headers, "");
        let head = conn.read_head();
        let body = conn.read_body(&head);
        assert_eq!(head.status, 405, "headers {headers:?}");
        assert_eq!(head.header("content-type"), None, "no Content-Type on 405");
        assert!(
            head.header("allow").is_some_and(|a| !a.is_empty()),
            "Allow header on 405"
        );
        assert!(body.is_empty(), "no body on 405");
    }
}

#[actix_rt::test]
async fn websocket_sends_open_frame_and_echoes_messages() {
    let server = TestServer::sockjs().await;
    let mut ws = open_websocket(&server, "/echo").await;
    ws.send_text(r#"["a"]"#).await;
    ws.expect_text(r#"a["a"]"#).await;
    ws.close().await;
}

#[actix_rt::test]
async fn websocket_ignores_empty_frames() {
    let server = TestServer::sockjs().await;
    let mut ws = open_websocket(&server, "/echo").await;
    ws.send_text("").await;
    ws.send_text(r#"["a"]"#).await;
    ws.expect_text(r#"a["a"]"#).await;
    ws.close().await;
}

#[actix_rt::test]
async fn websocket_on_close_endpoint_gets_go_away_then_disconnect() {
    let server = TestServer::sockjs().await;
    let mut ws = open_websocket(&server, "/close").await;
    ws.expect_text(r#"c[3000,"Go away!"]"#).await;
    ws.expect_closed().await;
}

#[actix_rt::test]
async fn websocket_session_id_can_serve_two_connections_at_once() {
    let server = TestServer::sockjs().await;
    let path = format!("{}/websocket", session_url("/echo"));
    let mut first = server.ws(&path).await;
    first.expect_text("o").await;
    let mut second = server.ws(&path).await;
    second.expect_text("o").await;

    first.send_text(r#"["a"]"#).await;
    first.expect_text(r#"a["a"]"#).await;
    second.send_text(r#"["b"]"#).await;
    second.expect_text(r#"a["b"]"#).await;
    first.close().await;
    second.close().await;
}

#[actix_rt::test]
async fn websocket_session_id_can_be_reused_after_close() {
    let server = TestServer::sockjs().await;
    let path = format!("{}/websocket", session_url("/echo"));
    let mut first = server.ws(&path).await;
    first.expect_text("o").await;
    first.close().await;

    let mut again = server.ws(&path).await;
    again.expect_text("o").await;
    again.send_text(r#"["a"]"#).await;
    again.expect_text(r#"a["a"]"#).await;
    again.close().await;
}

#[actix_rt::test]
async fn websocket_broken_json_terminates_the_connection() {
    let server = TestServer::sockjs().await;
    let mut ws = open_websocket(&server, "/echo").await;
    ws.send_text(r#"["a"#).await;
    ws.expect_closed().await;
}

#[actix_rt::test]
async fn websocket_handshake_accepts_versions_7_8_and_13() {
    let server = TestServer::sockjs().await;
    for version in ["7", "8", "13"] {
        let path = format!("{}/websocket", session_url("/echo"));
        let head = websocket_handshake(&server, &path, "Upgrade", version);
        assert_eq!(head.status, 101, "version {version}");
        assert_eq!(head.header("sec-websocket-accept"), Some(WEBSOCKET_ACCEPT));
        let lower = |name| head.header(name).map(str::to_ascii_lowercase);
        assert_eq!(lower("connection").as_deref(), Some("upgrade"));
        assert_eq!(lower("upgrade").as_deref(), Some("websocket"));
        assert_eq!(head.header("content-length"), None, "version {version}");
    }
}

#[actix_rt::test]
async fn websocket_accepts_connection_keep_alive_upgrade_header() {
    let server = TestServer::sockjs().await;
    // Firefox 6 sends this instead of a plain `Connection: Upgrade`.
    let path = format!("{}/websocket", session_url("/echo"));
    let head = websocket_handshake(&server, &path, "keep-alive, Upgrade", "7");
    assert_eq!(head.status, 101);
}

#[actix_rt::test]
async fn raw_websocket_echoes_text_verbatim() {
    let server = TestServer::sockjs().await;
    let mut ws = server.ws("/echo/websocket").await;
    ws.send_text("Hello world!\u{ffff}").await;
    ws.expect_text("Hello world!\u{ffff}").await;
    ws.close().await;
}

#[actix_rt::test]
async fn raw_websocket_on_close_endpoint_closes_the_connection() {
    let server = TestServer::sockjs().await;
    let mut ws = server.ws("/close/websocket").await;
    assert_eq!(ws.recv().await, WsEvent::Closed);
}
