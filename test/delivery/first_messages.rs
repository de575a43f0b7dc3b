//! First messages right after the welcome, for 1,000 sessions on each broker.
//!
//! The backend sends each session a message on its direct topic (`POST /api/sessions/{id}`) the
//! moment it sees the session's welcome — without waiting for anything, as a backend that
//! greets its users does. Then each session leaves its connection and resumes on the *other*
//! worker with `since`, and is sent a second message the moment that welcome arrives; then a
//! third, which fences the count (anything replayed or delivered twice would come before it).
//!
//! What the clients see: every one of the three messages, exactly once, in order — the welcome
//! goes out only once the broker has confirmed the session's subscriptions, so nothing the
//! backend publishes after it can be lost; the resume recovers (there is nothing to replay) and
//! repeats nothing.

use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use serde_json::json;

use crate::books::{Books, Expect};
use crate::main_port::{api_post, worker_ws_url};
use crate::setup::{BrokerUnderTest, Setup};
use crate::tracker::Tracker;

/// Sessions, all open at the end.
const SESSIONS: usize = 1000;
/// Sessions going through a step at once.
const AT_ONCE: usize = 50;
/// One address holds every session: the per-address cap is raised above them all.
const LIMITS: &str = "[limits]\nmax_sessions_per_ip = 5000\n";
/// How long one message may take to arrive.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(10);
const STREAM: &str = "first";

/// Sends message `n` to the tracker's session, as the backend does.
async fn greet(main_port: u16, tracker: &Tracker, n: u64) {
    let path = format!("/api/sessions/{}", tracker.session);
    let body = json!({"topic": "greeting", "data": {"stream": STREAM, "n": n}});
    let answer = api_post(main_port, &path, &body).await;
    assert!(
        matches!(&answer, Ok(a) if a.status == 202 && a.body["pos"].is_string()),
        "client {}: POST {path} of message {n}: {answer:?}",
        tracker.index
    );
}

/// Greets the tracker with message `n` and reads until it has it (or the deadline).
async fn greet_and_read(main_port: u16, mut tracker: Tracker, n: u64) -> Tracker {
    greet(main_port, &tracker, n).await;
    let until = |t: &Tracker| t.has(STREAM, n);
    tracker
        .follow(&until, Instant::now() + ARRIVAL_DEADLINE)
        .await;
    tracker
}

async fn first_messages_after_the_welcome_reach_every_session(broker: BrokerUnderTest) {
    let setup = Setup::start(broker, LIMITS.into()).await;
    let main_port = setup.main_port();
    let health = setup.sup.health().await.expect("/health");
    let ports = [health.workers[0].port, health.workers[1].port];

    let started = Instant::now();
    let mut trackers: Vec<Tracker> = stream::iter(0..SESSIONS)
        .map(|i| async move {
            let tracker = Tracker::open(i, main_port)
                .await
                .unwrap_or_else(|e| panic!("client {i}: no session: {e}"));
            greet_and_read(main_port, tracker, 1).await
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let opened = started.elapsed();

    let started = Instant::now();
    trackers = stream::iter(trackers)
        .map(|mut tracker| async move {
            let other = ports[1 - tracker.first_worker.unwrap_or(0)];
            if let Err(e) = tracker.move_to(&worker_ws_url(other)).await {
                panic!("client {}: no resume on port {other}: {e}", tracker.index);
            }
            greet_and_read(main_port, tracker, 2).await
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let resumed = started.elapsed();

    let started = Instant::now();
    trackers = stream::iter(trackers)
        .map(|tracker| greet_and_read(main_port, tracker, 3))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let fenced = started.elapsed();
    trackers.sort_by_key(|t| t.index);

    let books = Books::count(
        &format!("first messages after the welcome, {broker:?}"),
        &trackers,
        |_| Expect::exactly(STREAM, vec![1, 2, 3]),
    );
    let per_worker = trackers
        .iter()
        .filter(|t| t.first_worker == Some(0))
        .count();
    println!(
        "{SESSIONS} sessions ({per_worker} first on worker 0): opened and greeted in \
         {opened:?}, resumed on the other worker and greeted in {resumed:?}, fenced in \
         {fenced:?}"
    );
    books.assert_ok();
}

#[actix_rt::test]
async fn first_messages_after_the_welcome_reach_every_one_of_1000_sessions_embedded_broker() {
    first_messages_after_the_welcome_reach_every_session(BrokerUnderTest::Embedded).await;
}

#[actix_rt::test]
async fn first_messages_after_the_welcome_reach_every_one_of_1000_sessions_redis() {
    first_messages_after_the_welcome_reach_every_session(BrokerUnderTest::Redis).await;
}
