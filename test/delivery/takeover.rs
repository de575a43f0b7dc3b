//! One session, one connection: a resume of a session that is connected elsewhere takes it over.
//!
//! What the clients see: a session opened on worker 0 is resumed, while its connection is open,
//! by a second connection on worker 1 (a duplicated browser tab does exactly this); the first is
//! closed with `4001 "Session resumed elsewhere"` and receives nothing more. A third connection,
//! on worker 1 as well, takes the session over from the second in the same way. Counted per
//! logical client, every direct message (numbered 1 to 4, sent while one or the other connection
//! holds the session) arrives once, on the connection that holds the session.

use std::time::Instant;

use serde_json::json;

use crate::client::{Client, Received, Welcome};
use crate::common::WAIT;
use crate::main_port::{api_post, worker_ws_url};
use crate::setup::{BrokerUnderTest, Setup};
use crate::tracker::TAKEN_OVER;

/// The reason of a takeover's close.
const RESUMED_ELSEWHERE: &str = "Session resumed elsewhere";

/// Sends direct message `n` to `session`.
async fn send(main_port: u16, session: &str, n: u64) {
    let path = format!("/api/sessions/{session}");
    let body = json!({"topic": "direct", "data": {"stream": "direct", "n": n}});
    let answer = api_post(main_port, &path, &body).await;
    assert!(
        matches!(&answer, Ok(a) if a.status == 202),
        "POST {path}: {answer:?}"
    );
}

/// Reads `client` until direct message `n` arrives; its `pos`. Fails on any other numbered
/// message, a close, or nothing within [`WAIT`].
async fn expect_number(client: &mut Client, who: &str, n: u64) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_envelope(left).await {
            Some(Received::Envelope(e)) if e["data"]["stream"] == "direct" => {
                assert_eq!(e["data"]["n"], n, "{who}: the next direct message");
                return e["pos"].as_str().map(str::to_owned);
            }
            Some(Received::Envelope(_)) => {}
            other => panic!("{who}: waiting for direct message {n}, got {other:?}"),
        }
    }
}

/// Reads `client` until it is closed, which must be a takeover's close, with no direct message
/// before it.
async fn expect_taken_over(client: &mut Client, who: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_envelope(left).await {
            Some(Received::Closed(close)) => {
                assert_eq!(
                    close,
                    Some((TAKEN_OVER, RESUMED_ELSEWHERE.to_owned())),
                    "{who}: closed as taken over"
                );
                return;
            }
            Some(Received::Envelope(e)) => {
                assert_ne!(
                    e["data"]["stream"], "direct",
                    "{who}: after the takeover: {e}"
                );
            }
            None => panic!("{who}: still open {WAIT:?} after another connection resumed it"),
        }
    }
}

/// Resumes `welcome`'s session on the worker on `port`, caught up to `since`.
async fn take_over(
    port: u16,
    welcome: &Welcome,
    since: Option<&str>,
    who: &str,
) -> (Client, Welcome) {
    let mut client = Client::connect(&worker_ws_url(port))
        .await
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    let again = client
        .resume_since(&welcome.resume, since)
        .await
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert!(again.resumed, "{who}: resumed: {again:?}");
    assert_eq!(again.session, welcome.session, "{who}: the same session");
    assert_eq!(again.recovered, Some(true), "{who}: {again:?}");
    (client, again)
}

#[actix_rt::test]
async fn second_connection_resuming_a_token_closes_the_first_with_4001() {
    let setup = Setup::start(BrokerUnderTest::Embedded, String::new()).await;
    let main_port = setup.main_port();
    let health = setup.sup.health().await.expect("/health");
    let (port0, port1) = (health.workers[0].port, health.workers[1].port);

    let mut first = Client::connect(&worker_ws_url(port0))
        .await
        .unwrap_or_else(|e| panic!("first: {e}"));
    let welcome = first
        .handshake(json!({"hello": 1}))
        .await
        .unwrap_or_else(|e| panic!("first: {e}"));
    let session = welcome.session.clone();
    send(main_port, &session, 1).await;
    let pos = expect_number(&mut first, "first", 1)
        .await
        .or(welcome.pos.clone());

    // A second connection on the other worker, while the first is open.
    let (mut second, welcome2) = take_over(port1, &welcome, pos.as_deref(), "second").await;
    expect_taken_over(&mut first, "first").await;
    send(main_port, &session, 2).await;
    let pos = expect_number(&mut second, "second", 2)
        .await
        .or(welcome2.pos.clone());

    // A third on the same worker as the second.
    let (mut third, _) = take_over(port1, &welcome2, pos.as_deref(), "third").await;
    expect_taken_over(&mut second, "second").await;
    send(main_port, &session, 3).await;
    send(main_port, &session, 4).await;
    expect_number(&mut third, "third", 3).await;
    expect_number(&mut third, "third", 4).await;
    println!(
        "session {session}: taken over across workers and on one worker; direct messages 1 to \
         4 each once, on the connection holding the session"
    );
}
