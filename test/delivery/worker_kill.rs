//! A worker killed with SIGKILL in the middle of a fan-out, on each broker.
//!
//! What the clients see: the clients of the killed worker see their connection cut (no close
//! frame), fetch `/connect` and resume on the other worker with `since`; the welcome says
//! `recovered: true` and every number they missed follows, then the live ones — or it says
//! `recovered: false` (or a `rohrpost.pos` does) right where the gap is, and the client knows
//! to resynchronise. Either way no number is lost without a word, none arrives twice or out of
//! order. The clients of the other worker notice nothing: every number, exactly once, in order.

use std::time::Duration;

use crate::books::{Books, Expect};
use crate::fan_out::{self, STREAM};
use crate::main_port::State;
use crate::process::send_signal;
use crate::setup::{BrokerUnderTest, Setup};

/// Clients of the fan-out (about half on each worker).
const CLIENTS: usize = 40;
/// Publishing after the killed worker is back.
const LEAD_OUT: Duration = Duration::from_secs(1);

async fn killed_worker_clients_get_everything_or_are_told(broker: BrokerUnderTest) {
    let setup = Setup::start(broker, String::new()).await;
    let sup = &setup.sup;
    let health = sup.health().await.expect("/health");
    let victim = health.workers[0].pid.expect("worker 0 runs");
    let run = fan_out::through(setup.main_port(), CLIENTS, LEAD_OUT, async |_| {
        send_signal(victim, "KILL");
        sup.wait_for("worker 0 back", |h| {
            h.workers[0].generation == 2 && h.workers[0].state == State::Ready
        })
        .await;
    })
    .await;
    let owed = run.published.accepted();
    let books = Books::count(
        &format!("worker 0 killed, {broker:?}"),
        &run.trackers,
        |t| {
            if t.moves().next().is_none() {
                Expect::exactly(STREAM, owed.clone())
            } else {
                Expect::or_told(STREAM, owed.clone())
            }
        },
    );
    println!("{}", run.figures());
    books.assert_ok();
    assert_eq!(run.published.without_pos(), 0, "every 202 carries a pos");
    let stayed: Vec<usize> = books
        .counts
        .iter()
        .filter(|c| c.first_worker == Some(0) && c.moves == 0)
        .map(|c| c.client)
        .collect();
    assert!(
        stayed.is_empty(),
        "clients of the killed worker that never moved: {stayed:?}"
    );
    assert!(
        books.counts.iter().any(|c| c.first_worker == Some(0)),
        "/connect handed worker 0 to some clients"
    );
}

#[actix_rt::test]
async fn killed_worker_clients_resume_elsewhere_and_get_everything_or_are_told_embedded_broker() {
    killed_worker_clients_get_everything_or_are_told(BrokerUnderTest::Embedded).await;
}

#[actix_rt::test]
async fn killed_worker_clients_resume_elsewhere_and_get_everything_or_are_told_redis() {
    killed_worker_clients_get_everything_or_are_told(BrokerUnderTest::Redis).await;
}
