//! Restarts in legacy mode: a draining worker closes 0.x sessions with the original's code 100,
//! the one the 0.x client reconnects on at once (1012 would leave it backing off, or, on
//! sockjs-client 1.x, dead), and modern sessions beside them with 1012 as ever. Sessions that
//! have not said which client they are, and new ones refused while the worker drains, get 100
//! too (Rohrpost's own client reconnects at once on it as well).

use std::time::Duration;

use serde_json::json;

use crate::backend::{unique, Backend};
use crate::client::{Client, Event, SERVICE_RESTART};
use crate::client_0x::{connect_as_0x, LegacyClient, Told};
use crate::common::WAIT;
use crate::main_port::{api_restart, worker_ws_url, State};
use crate::process::{Supervisor, API_KEY, SETTLE};
use crate::{client_id, legacy, RESTART_100};

/// The code of the close a modern client sees next, skipping messages; `None` if the connection
/// just ends or nothing comes within `within`.
async fn close_code(client: &mut Client, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next_event(left).await? {
            Event::Message { .. } => continue,
            Event::Closed(code) => return code,
        }
    }
}

fn restart_100() -> Option<(u16, String)> {
    Some((RESTART_100.0, RESTART_100.1.to_owned()))
}

#[actix_rt::test]
async fn a_staged_restart_closes_0x_sessions_with_100_and_modern_ones_with_1012() {
    let (sup, port) = Supervisor::start_one(legacy()).await;
    let id = client_id();
    let mut old = connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("a 0.x session");
    let (mut modern, _) = Client::new_session(&worker_ws_url(port)).await;

    // A grant before the restart, to see the 0.x session come through it.
    let vip = unique("vip");
    let direct = format!("rohrpost.client.{id}");
    let mut backend = Backend::connect().await;
    let grant = json!({"add": [format!("{vip}.*")], "data": "granted"});
    backend.publish(&direct, &grant).await;
    assert_eq!(
        old.wait_for_topic(&direct, WAIT).await,
        Some(json!("granted"))
    );

    sup.signal("HUP");
    assert_eq!(old.wait_for_close(SETTLE).await, restart_100());
    assert_eq!(close_code(&mut modern, SETTLE).await, Some(SERVICE_RESTART));
    old.close().await;

    // The 0.x client reconnects at once through /connect (404 until the new worker is ready)
    // and is still the session it was.
    let mut again = connect_as_0x(sup.ports.main, &id, &id, SETTLE)
        .await
        .expect("the 0.x client back after the restart");
    let news = format!("{vip}.news");
    backend
        .publish(&news, &json!({"data": "still granted"}))
        .await;
    assert_eq!(
        again.wait_for_topic(&news, WAIT).await,
        Some(json!("still granted"))
    );
}

#[actix_rt::test]
async fn a_draining_worker_tells_sessions_not_known_to_be_modern_100() {
    let (sup, port) = Supervisor::start_one(legacy()).await;
    let base = format!("http://127.0.0.1:{port}/rohrpost");
    // Open before the drain, but silent: it may be a 0.x client.
    let mut silent = LegacyClient::open(&base).await.expect("a SockJS session");
    // A modern session that does not answer its close frame keeps the worker draining a while.
    let (mut modern, _) = Client::new_session(&worker_ws_url(port)).await;
    assert_eq!(
        api_restart(&sup, Some(&format!("Bearer {API_KEY}"))).await,
        202
    );
    assert_eq!(silent.wait_for_close(WAIT).await, restart_100());
    sup.wait_for("the worker draining", |h| {
        h.workers[0].state == State::Draining
    })
    .await;

    // Late arrivals are refused before they say anything: with 100, whoever they are.
    let late = LegacyClient::open(&base).await.err();
    assert_eq!(
        late,
        Some(Told::Closed(RESTART_100.0, RESTART_100.1.into()))
    );
    // On the raw websocket, where 100 is no websocket close code, 1012 says the same.
    let mut raw = Client::connect(&worker_ws_url(port))
        .await
        .expect("the upgrade itself succeeds");
    assert_eq!(raw.next_event(WAIT).await, Some(Event::Closed(Some(1012))));

    // The modern session, which said hello, was told 1012.
    assert_eq!(close_code(&mut modern, WAIT).await, Some(SERVICE_RESTART));
}
