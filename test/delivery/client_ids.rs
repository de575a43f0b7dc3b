//! Client messages with ids across a staged restart, on Redis: 20 clients each send 20 numbered
//! messages a second, each with an `id`, while every worker is drained and replaced; the backend
//! is a SUBSCRIBE on their topic.
//!
//! What the clients see: each message is acked on `rohrpost.ack` (on the connection it was sent
//! on, or — for one the server took just before its 1012 — after the resume, through the log)
//! or answered with an error naming its id; never neither, though no client resends anything
//! but what `backend_uncertain` asks it to. The backend receives every acked message, no
//! `backend_unavailable` one, and — after dropping copies with the same `messageId` — each once.

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::backend::{unique, Subscriber};
use crate::books::{Books, Expect};
use crate::crowd::{self, Crowd};
use crate::ledger::{IdBooks, Ledger};
use crate::outbox::Outcome;
use crate::setup::{BrokerUnderTest, Setup};
use crate::tracker::Tracker;

/// Clients sending.
const CLIENTS: usize = 20;
/// Each client's pace: 20 messages a second.
const SEND_EVERY: Duration = Duration::from_millis(50);
/// Sending before the roll, and after it is over.
const LEAD_IN: Duration = Duration::from_secs(1);
const LEAD_OUT: Duration = Duration::from_secs(1);
/// How long after sending stopped every message may take to be acked or answered.
const ANSWER_DEADLINE: Duration = Duration::from_secs(15);
/// How long after that the backend may take to have every acked message.
const BACKEND_DEADLINE: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn client_messages_with_ids_across_a_staged_restart_are_answered_and_reach_the_backend_once()
{
    let mut setup = Setup::start(BrokerUnderTest::Redis, String::new()).await;
    let url = setup.redis().url();
    let topic = format!("anonym.{}.in", unique("ids"));
    let mut backend = Subscriber::on(&url, &topic).await;

    let mut trackers = crowd::open(setup.main_port(), CLIENTS, CLIENTS).await;
    let stop = Rc::new(Cell::new(false));
    for tracker in &mut trackers {
        tracker.outbox.start(&topic, SEND_EVERY, stop.clone());
    }
    let stopped = stop.clone();
    let crowd = Crowd::follow(
        trackers,
        Rc::new(move |t: &Tracker| stopped.get() && t.outbox.all_resolved()),
    );
    actix_rt::time::sleep(LEAD_IN).await;
    let sup = &setup.sup;
    sup.signal("HUP");
    sup.wait_for("the roll is over", |h| h.all_ready_in(2) && !h.rolling)
        .await;
    actix_rt::time::sleep(LEAD_OUT).await;
    stop.set(true);
    let trackers = crowd.finish(Instant::now() + ANSWER_DEADLINE).await;

    // The backend's side: everything acked must be there; read until it is (or the deadline),
    // then whatever else has come.
    let mut outstanding: HashSet<&str> = trackers
        .iter()
        .flat_map(|t| t.outbox.messages())
        .filter(|m| m.outcome == Outcome::Acked)
        .map(|m| m.id.as_str())
        .collect();
    let mut ledger = Ledger::default();
    let deadline = Instant::now() + BACKEND_DEADLINE;
    while !outstanding.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(payload) = backend.next_within(left).await else {
            break;
        };
        ledger.record(&payload);
        if let Some(id) = payload["messageId"].as_str() {
            outstanding.remove(id);
        }
    }
    while let Some(payload) = backend.next_within(Duration::ZERO).await {
        ledger.record(&payload);
    }
    let books = IdBooks::check(
        "client messages with ids across a staged restart, Redis",
        &trackers,
        &ledger,
    );
    // The sessions themselves: every move after a 1012, back in the same session, recovered.
    let sessions = Books::count("the senders' sessions", &trackers, |_| {
        Expect::exactly("none", Vec::new())
    });
    books.assert_ok();
    sessions.assert_ok();
    let unmoved: Vec<usize> = sessions
        .counts
        .iter()
        .filter(|c| c.moves == 0)
        .map(|c| c.client)
        .collect();
    assert!(
        unmoved.is_empty(),
        "clients the roll never moved: {unmoved:?}"
    );
}
