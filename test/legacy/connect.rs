//! `/connect` while no worker can take a session: the original's `404 No connection available`
//! in legacy mode (the 0.x client retries on 404 only and gives up for good on anything else),
//! `503` otherwise.
//!
//! "No worker is ready" is made by holding the only worker's port before the supervisor starts:
//! its worker cannot bind and is restarted, with backoff, until the test lets the port go.

use std::net::TcpListener;

use crate::client_0x::connect_as_0x;
use crate::main_port::{cors, get};
use crate::ports::PortBlock;
use crate::process::{Options, Supervisor, SETTLE};
use crate::{client_id, LEGACY};

/// A supervisor of one worker whose port the returned listener holds, so that it is never ready;
/// it keeps restarting that worker (with backoff) instead of giving the port up.
async fn start_without_a_ready_worker(extra_config: &str) -> (Supervisor, TcpListener) {
    let ports = PortBlock::find(1);
    let held = TcpListener::bind(("127.0.0.1", ports.worker(0))).expect("hold the worker's port");
    let options = Options {
        workers: 1,
        max_restarts: 1_000,
        extra_config: extra_config.to_owned(),
        ..Options::default()
    };
    (Supervisor::start(options, ports).await, held)
}

#[actix_rt::test]
async fn connect_answers_404_no_connection_available_while_no_worker_is_ready() {
    let (sup, held) = start_without_a_ready_worker(LEGACY).await;
    let (status, headers, body) = get(&sup.url("/connect"), None).await;
    assert_eq!((status, body.as_str()), (404, "No connection available"));
    assert_eq!(cors(&headers), Some("*"));

    // A 0.x client retrying on it gets in once the worker is up.
    drop(held);
    let id = client_id();
    connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("the 0.x client connects once a worker is ready");
}

#[actix_rt::test]
async fn without_legacy_mode_connect_still_answers_503_while_no_worker_is_ready() {
    let (sup, _held) = start_without_a_ready_worker("").await;
    let (status, headers, body) = get(&sup.url("/connect"), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("No worker is available"), "{body}");
    assert_eq!(cors(&headers), Some("*"));
}

#[actix_rt::test]
async fn connect_answers_404_while_every_worker_is_full() {
    let options = Options {
        extra_config: format!("{LEGACY}\n[limits]\nmax_sessions_per_worker = 1\n"),
        ..Options::default()
    };
    let (sup, _port) = Supervisor::start_one(options).await;
    let id = client_id();
    let _only = connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("the worker's one session");
    sup.wait_for("the worker reports its session", |h| {
        h.workers[0].sessions == 1
    })
    .await;
    let (status, headers, body) = get(&sup.url("/connect"), None).await;
    assert_eq!((status, body.as_str()), (404, "No connection available"));
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
}
