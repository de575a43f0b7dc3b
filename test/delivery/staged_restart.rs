//! A staged restart while 40 clients receive 50 numbered messages a second through
//! `/api/publish`, on each broker.
//!
//! What the clients see: each is closed with 1012 once or twice (its worker drains; a client of
//! worker 0 lands on worker 1, which drains next), fetches `/connect` and resumes with `since`;
//! each welcome says `recovered: true`, and the client receives every number the API accepted,
//! exactly once and in order — nothing may be excused, because nothing had to be lost: a staged
//! restart should cost a client nothing at all.

use crate::books::{Books, Expect};
use crate::fan_out::{self, STREAM};
use crate::main_port::api_restart;
use crate::process::API_KEY;
use crate::setup::{BrokerUnderTest, Setup};

/// Clients of the fan-out.
const CLIENTS: usize = 40;
/// Publishing after the roll is over.
const LEAD_OUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How the roll is started.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Sighup,
    ApiRestart,
}

async fn staged_restart_loses_nothing(broker: BrokerUnderTest, trigger: Trigger) {
    let setup = Setup::start(broker, String::new()).await;
    let sup = &setup.sup;
    let run = fan_out::through(setup.main_port(), CLIENTS, LEAD_OUT, async |_| {
        match trigger {
            Trigger::Sighup => sup.signal("HUP"),
            Trigger::ApiRestart => {
                let status = api_restart(sup, Some(&format!("Bearer {API_KEY}"))).await;
                assert_eq!(status, 202, "POST /api/restart");
            }
        }
        sup.wait_for("the roll is over", |h| h.all_ready_in(2) && !h.rolling)
            .await;
    })
    .await;
    let owed = run.published.accepted();
    let books = Books::count(
        &format!("staged restart ({trigger:?}), {broker:?}"),
        &run.trackers,
        |_| Expect::exactly(STREAM, owed.clone()),
    );
    println!("{}", run.figures());
    books.assert_ok();
    assert!(
        run.published.refused().is_empty(),
        "the API refused publishes during a staged restart: {:?}",
        run.published.refused()
    );
    assert_eq!(run.published.without_pos(), 0, "every 202 carries a pos");
    let unmoved: Vec<usize> = books
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

#[actix_rt::test]
async fn staged_restart_loses_nothing_embedded_broker() {
    staged_restart_loses_nothing(BrokerUnderTest::Embedded, Trigger::Sighup).await;
}

#[actix_rt::test]
async fn staged_restart_loses_nothing_redis() {
    staged_restart_loses_nothing(BrokerUnderTest::Redis, Trigger::ApiRestart).await;
}
