//! Session urls `/<server>/<session>/<transport>` and the basic protocol, driven through
//! xhr-polling (`SessionURLs`, `Protocol`).

use awc::http::Method;

use crate::common::{session_id, TestServer};
use crate::steps::{
    expect_xhr_poll, hold_xhr_poll, session_url, websocket_handshake, xhr_open, xhr_send,
};

#[actix_rt::test]
async fn any_server_and_session_value_opens_a_session() {
    let server = TestServer::sockjs().await;
    for session in ["/a/a", "/_/_", "/1/1", "/abcdefgh_i-j%20/abcdefg_i-j%20"] {
        xhr_open(&server, &format!("/echo{session}")).await;
    }
}

#[actix_rt::test]
async fn session_paths_with_empty_or_missing_parts_are_404() {
    let server = TestServer::sockjs().await;
    for session in ["//", "/", "///"] {
        let path = format!("/echo{session}/xhr");
        assert_eq!(server.get(&path).await.status, 404, "GET {path}");
        assert_eq!(server.post(&path, "").await.status, 404, "POST {path}");
    }
}

#[actix_rt::test]
async fn server_or_session_segment_with_a_dot_is_404() {
    let server = TestServer::sockjs().await;
    for session in ["/a./a", "/a/a.", "/./.", "/000/a.b", "/0.0/abc"] {
        let path = format!("/echo{session}/xhr");
        assert_eq!(server.get(&path).await.status, 404, "GET {path}");
        assert_eq!(server.post(&path, "").await.status, 404, "POST {path}");
    }
    // Our issue: no transport may accept a dotted server or session id.
    for session in ["/000/a.b", "/0.0/abc"] {
        for (method, transport) in [
            (Method::POST, "xhr_send"),
            (Method::POST, "xhr_streaming"),
            (Method::GET, "eventsource"),
            (Method::GET, "htmlfile?c=x"),
            (Method::GET, "jsonp?c=x"),
            (Method::POST, "jsonp_send"),
        ] {
            let path = format!("/echo{session}/{transport}");
            let body = if method == Method::POST {
                "[\"x\"]"
            } else {
                ""
            };
            let r = server.request(method.clone(), &path, &[], body).await;
            assert_eq!(r.status, 404, "{method} {path}");
        }

        let path = format!("/echo{session}/websocket");
        let head = websocket_handshake(&server, &path, "Upgrade", "13");
        assert_eq!(head.status, 404, "websocket handshake {path}");
    }
}

#[actix_rt::test]
async fn server_id_is_ignored_when_finding_a_session() {
    let server = TestServer::sockjs().await;
    let session = session_id();
    xhr_open(&server, &format!("/echo/000/{session}")).await;
    xhr_send(&server, &format!("/echo/000/{session}"), r#"["a"]"#).await;
    expect_xhr_poll(&server, &format!("/echo/999/{session}"), "a[\"a\"]\n").await;
}

#[actix_rt::test]
async fn new_session_sends_open_frame_then_echoes_sent_messages() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    xhr_open(&server, &url).await;
    xhr_send(&server, &url, r#"["a"]"#).await;
    expect_xhr_poll(&server, &url, "a[\"a\"]\n").await;
}

#[actix_rt::test]
async fn second_receiving_request_gets_2010_another_connection_still_open() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    xhr_open(&server, &url).await;
    let _waiting = hold_xhr_poll(&server, &url).await;
    expect_xhr_poll(&server, &url, "c[2010,\"Another connection still open\"]\n").await;
}

#[actix_rt::test]
async fn closed_session_serves_its_close_frame_on_every_poll() {
    let server = TestServer::sockjs().await;
    let url = session_url("/close");
    xhr_open(&server, &url).await;
    for _ in 0..2 {
        expect_xhr_poll(&server, &url, "c[3000,\"Go away!\"]\n").await;
    }
}
