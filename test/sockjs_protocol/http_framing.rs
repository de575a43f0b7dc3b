//! HTTP/1.0 and HTTP/1.1 message framing on the wire (`Http10`, `Http11`): lengths, chunking
//! and keep-alive, seen through a raw socket because an HTTP client would hide them.

use crate::common::{RawConnection, TestServer};
use crate::steps::session_url;

const GREETING: &[u8] = b"Welcome to SockJS!\n";

/// The `/close` endpoint's xhr_streaming body: prelude, open frame, close frame.
fn expected_close_stream() -> Vec<u8> {
    let mut body = "h".repeat(2048).into_bytes();
    body.extend_from_slice(b"\no\nc[3000,\"Go away!\"]\n");
    body
}

#[actix_rt::test]
async fn http10_greeting_is_length_or_close_delimited() {
    let server = TestServer::sockjs().await;
    let mut conn = RawConnection::connect(server.port());
    let keep_alive = [("Connection", "Keep-Alive")];
    conn.send_request("GET", "/echo", "1.0", &keep_alive, "");
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert!(
        ["HTTP/1.0", "HTTP/1.1"].contains(&head.version.as_str()),
        "{}",
        head.version
    );
    assert_eq!(
        head.header("transfer-encoding"),
        None,
        "no chunking in HTTP/1.0"
    );

    let connection = head.header("connection").unwrap_or_default().to_lowercase();
    match head.header("content-length") {
        None => {
            assert_eq!(connection, "close");
            assert_eq!(conn.read_to_end(), GREETING);
        }
        Some(length) => {
            assert_eq!(length, "19");
            assert_eq!(conn.read_exact(19), GREETING);
            if connection == "keep-alive" {
                conn.send_request("GET", "/echo", "1.0", &keep_alive, "");
                assert_eq!(conn.read_head().status, 200);
            } else {
                assert_eq!(connection, "close", "Connection: {connection}");
                assert!(conn.is_closed(), "HTTP/1.0 without keep-alive must close");
            }
        }
    }
}

#[actix_rt::test]
async fn http10_streaming_is_close_delimited() {
    let server = TestServer::sockjs().await;
    let mut conn = RawConnection::connect(server.port());
    let path = format!("{}/xhr_streaming", session_url("/close"));
    conn.send_request("POST", &path, "1.0", &[("Connection", "Keep-Alive")], "");
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("transfer-encoding"),
        None,
        "no chunking in HTTP/1.0"
    );
    assert_eq!(
        head.header("content-length"),
        None,
        "the length is unknown when the stream starts"
    );
    assert_eq!(conn.read_to_end(), expected_close_stream());
}

#[actix_rt::test]
async fn http11_connection_is_kept_alive_between_requests() {
    let server = TestServer::sockjs().await;
    let mut conn = RawConnection::connect(server.port());
    let keep_alive = [("Connection", "Keep-Alive")];
    conn.send_request("GET", "/echo", "1.1", &keep_alive, "");
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.version, "HTTP/1.1");
    let connection = head.header("connection").unwrap_or_default().to_lowercase();
    assert!(
        ["keep-alive", ""].contains(&connection.as_str()),
        "Connection: {connection}"
    );
    match head.header("content-length") {
        Some(length) => {
            assert_eq!(length, "19");
            assert_eq!(head.header("transfer-encoding"), None);
            assert_eq!(conn.read_exact(19), GREETING);
        }
        None => {
            let te = head.header("transfer-encoding").unwrap_or_default();
            assert!(
                te.eq_ignore_ascii_case("chunked"),
                "Transfer-Encoding: {te}"
            );
            assert_eq!(conn.read_chunk(), GREETING);
            assert_eq!(conn.read_chunk(), b"");
        }
    }

    conn.send_request("GET", "/echo", "1.1", &keep_alive, "");
    assert_eq!(conn.read_head().status, 200);
}

#[actix_rt::test]
async fn http11_streaming_is_chunked_and_ends_with_the_last_chunk() {
    let server = TestServer::sockjs().await;
    let mut conn = RawConnection::connect(server.port());
    let path = format!("{}/xhr_streaming", session_url("/close"));
    conn.send_request("POST", &path, "1.1", &[("Connection", "Keep-Alive")], "");
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    let te = head.header("transfer-encoding").unwrap_or_default();
    assert!(
        te.eq_ignore_ascii_case("chunked"),
        "Transfer-Encoding: {te}"
    );
    assert_eq!(head.header("content-length"), None);

    let expected = expected_close_stream();
    let first = conn.read_chunk();
    assert_eq!(
        first.first(),
        Some(&b'h'),
        "the first chunk starts the prelude"
    );
    let mut body = first;
    body.extend(conn.read_chunked_payload(expected.len().saturating_sub(body.len())));
    assert_eq!(body, expected);
    assert_eq!(
        conn.read_chunk(),
        b"",
        "the stream ends with the last chunk"
    );
}
