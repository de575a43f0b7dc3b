//! Session admission. `limits.max_sessions_per_worker` and `limits.max_sessions_per_ip`: a
//! worker refuses new sessions beyond them with a SockJS close frame `c[1013,"..."]` (in whatever
//! transport the client chose), `/connect` answers 503 while every worker is full, refusals are
//! counted in `/metrics`, and places come back as sessions end. A draining worker admits nobody.
//!
//! Clients come from several loopback addresses (127.0.0.1 to 127.0.0.4): the websocket clients
//! from 127.0.0.1, the others over raw HTTP from a socket bound to their own address.

use std::net::{Ipv4Addr, SocketAddr};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{http, Client, Event};
use crate::common::WAIT;
use crate::main_port::{api_restart, get, wait_counter, worker_ws_url, State};
use crate::process::{Options, Supervisor, API_KEY};

/// The caps, and HTTP sessions that outlive their first poll for the whole test.
const CAPS: &str = "[limits]\nmax_sessions_per_worker = 4\nmax_sessions_per_ip = 2\n\n\
                    [sockjs]\ndisconnect_delay = \"60s\"\n";

/// The close frame the refused client gets, up to the reason's end.
const ADDRESS_FULL: &str = "c[1013,\"Too many sessions from your address";
const WORKER_FULL: &str = "c[1013,\"Too many sessions on this server";

const REFUSED: &str = "rohrpost_refused_sessions_total";

/// Opens an `xhr` polling session `session` from `source` and returns the response body: the
/// open frame `o` when admitted, a close frame when refused.
async fn xhr_open_from(source: Ipv4Addr, port: u16, session: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    let mut stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect to the worker");
    let request = format!(
        "POST /rohrpost/000/{session}/xhr HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    actix_rt::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the xhr answer within the wait")
        .expect("read the xhr answer");
    let response = String::from_utf8(response).expect("a text answer");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The first text message of a framed SockJS websocket session from 127.0.0.1.
async fn framed_websocket_first_frame(port: u16, session: &str) -> String {
    let url = format!("ws://127.0.0.1:{port}/rohrpost/000/{session}/websocket");
    let (_res, mut ws) = actix_rt::time::timeout(WAIT, http().ws(&url).connect())
        .await
        .expect("websocket handshake within the wait")
        .expect("websocket handshake");
    loop {
        let frame = actix_rt::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within the wait")
            .expect("a frame before the end")
            .expect("a well-formed frame");
        if let awc::ws::Frame::Text(text) = frame {
            return String::from_utf8(text.to_vec()).expect("UTF-8");
        }
    }
}

#[actix_rt::test]
async fn sessions_beyond_the_caps_are_refused_with_1013_and_connect_says_503() {
    let (sup, worker) = Supervisor::start_one(Options {
        extra_config: CAPS.into(),
        ..Options::default()
    })
    .await;
    let local = Ipv4Addr::new(127, 0, 0, 1);

    // 127.0.0.1 may hold two sessions; every further one is refused, in every transport.
    let (first, _) = Client::new_session(&worker_ws_url(worker)).await;
    let (_second, _) = Client::new_session(&worker_ws_url(worker)).await;
    let mut third = Client::connect(&worker_ws_url(worker))
        .await
        .expect("the upgrade itself succeeds");
    assert_eq!(
        third.next_event(WAIT).await,
        Some(Event::Closed(Some(1013)))
    );
    let framed = framed_websocket_first_frame(worker, "capped-ws").await;
    assert!(framed.starts_with(ADDRESS_FULL), "{framed}");
    let xhr = xhr_open_from(local, worker, "capped-xhr").await;
    assert!(xhr.contains(ADDRESS_FULL), "{xhr}");

    // Other addresses still get in, up to the worker's cap of four sessions.
    for (n, session) in [(2, "from-2"), (3, "from-3")] {
        let answer = xhr_open_from(Ipv4Addr::new(127, 0, 0, n), worker, session).await;
        assert!(
            answer.contains("\r\n\r\no\n") || answer.contains("\no\n"),
            "{answer}"
        );
    }
    let full = xhr_open_from(Ipv4Addr::new(127, 0, 0, 4), worker, "from-4").await;
    assert!(full.contains(WORKER_FULL), "{full}");

    // The main port hands out no full worker.
    sup.wait_for("the worker reports 4 sessions", |h| {
        h.workers[0].sessions == 4
    })
    .await;
    let (status, headers, body) = get(&sup.url("/connect"), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("limits.max_sessions_per_worker"),
        "a reason an operator can act on: {body}"
    );
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    wait_counter(&sup, REFUSED, "address_full", 3).await;
    wait_counter(&sup, REFUSED, "worker_full", 1).await;

    // A session that ends gives its place back: to its own address and to the worker.
    first.close().await;
    sup.wait_for("the worker reports 3 sessions", |h| {
        h.workers[0].sessions == 3
    })
    .await;
    let (status, _, body) = get(&sup.url("/connect"), None).await;
    assert_eq!(status, 200, "{body}");
    let (_again, welcome) = Client::new_session(&worker_ws_url(worker)).await;
    assert!(!welcome.resumed);
}

/// A client handed a worker just before it was told to drain, arriving after the drain began,
/// is not given a session the drain has already passed by (it would be cut at the worker's exit
/// without a close frame): it gets `1012 Service Restart` like everybody else and goes back to
/// `/connect`.
#[actix_rt::test]
async fn a_draining_worker_sends_late_arrivals_elsewhere_with_1012() {
    let (sup, worker) = Supervisor::start_one(Options::default()).await;
    // A client that never answers the close frame keeps the worker draining for a while.
    let (_held, _) = Client::new_session(&worker_ws_url(worker)).await;
    assert_eq!(
        api_restart(&sup, Some(&format!("Bearer {API_KEY}"))).await,
        202
    );
    sup.wait_for("the worker draining", |h| {
        h.workers[0].state == State::Draining
    })
    .await;

    let mut late = Client::connect(&worker_ws_url(worker))
        .await
        .expect("the upgrade itself succeeds");
    assert_eq!(late.next_event(WAIT).await, Some(Event::Closed(Some(1012))));
    let framed = framed_websocket_first_frame(worker, "late-framed").await;
    assert_eq!(framed, "c[1012,\"Service Restart\"]");
    let xhr = xhr_open_from(Ipv4Addr::new(127, 0, 0, 1), worker, "late-xhr").await;
    assert!(xhr.contains("c[1012,\"Service Restart\"]\n"), "{xhr}");
}
