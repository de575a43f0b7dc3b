//! Protocol steps many tests take on the way to what they check: make a fresh session url,
//! open it, send to it and poll it with xhr, open a websocket session.

use std::time::Duration;

use crate::common::{session_id, RawConnection, RawHead, Reply, TestServer, WsClient, WsTransport};

/// The url of a fresh session under `base` (`/echo`, `/close`, ...), with server id `000`.
pub fn session_url(base: &str) -> String {
    format!("{base}/000/{}", session_id())
}

/// One xhr poll of the session at `url`.
pub async fn xhr_poll(server: &TestServer, url: &str) -> Reply {
    server.post(&format!("{url}/xhr"), "").await
}

/// Polls the session at `url` with xhr and expects `200` with exactly `frames`.
pub async fn expect_xhr_poll(server: &TestServer, url: &str, frames: &str) {
    let r = xhr_poll(server, url).await;
    assert_eq!((r.status, r.text()), (200, frames), "xhr poll of {url}");
}

/// Opens the session at `url` with a first xhr poll, which must answer the open frame.
pub async fn xhr_open(server: &TestServer, url: &str) {
    expect_xhr_poll(server, url, "o\n").await;
}

/// Sends `body` with xhr_send to the session at `url`; it must be accepted with an empty 204.
pub async fn xhr_send(server: &TestServer, url: &str, body: &str) {
    let r = server.post(&format!("{url}/xhr_send"), body).await;
    assert_eq!(r.status, 204, "xhr_send {body:?} to {url}");
    assert!(r.body.is_empty(), "xhr_send answers without a body");
}

/// Starts an xhr poll of the open session at `url` that stays pending (the session has
/// nothing to send), on a raw socket the test can cut; gives the server 250 ms to register it.
pub async fn hold_xhr_poll(server: &TestServer, url: &str) -> RawConnection {
    let mut conn = RawConnection::connect(server.port());
    conn.send_request("POST", &format!("{url}/xhr"), "1.1", &[], "");
    actix_rt::time::sleep(Duration::from_millis(250)).await;
    conn
}

/// The handshake key of RFC 6455's example; [`WEBSOCKET_ACCEPT`] is its answer.
pub const WEBSOCKET_KEY: &str = "x3JJHMbDL1EzLkh9GBhXDw==";
pub const WEBSOCKET_ACCEPT: &str = "HSmrc0sMlYUkAGmm5OPpG2HaGWk=";

/// Sends a websocket handshake for `path` over a raw socket and returns the answer's head.
/// `connection` is the `Connection` header (browsers differ); `version` the protocol version.
pub fn websocket_handshake(
    server: &TestServer,
    path: &str,
    connection: &str,
    version: &str,
) -> RawHead {
    let mut conn = RawConnection::connect(server.port());
    conn.send_request(
        "GET",
        path,
        "1.1",
        &[
            ("Upgrade", "websocket"),
            ("Connection", connection),
            ("Sec-WebSocket-Version", version),
            ("Sec-WebSocket-Origin", "http://asd"),
            ("Sec-WebSocket-Key", WEBSOCKET_KEY),
        ],
        "",
    );
    conn.read_head()
}

/// Opens a websocket on a fresh session under `base` and reads its open frame.
pub async fn open_websocket(server: &TestServer, base: &str) -> WsClient<impl WsTransport> {
    let mut ws = server.ws(&format!("{}/websocket", session_url(base))).await;
    ws.expect_text("o").await;
    ws
}
