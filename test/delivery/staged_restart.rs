//! A staged restart while 40 clients receive 50 numbered messages a second through
//! `/api/publish`, on each broker.
//!
//! What the clients see: each is closed with 1012 once or twice (its worker drains; a client of
//! worker 0 lands on worker 1, which drains next), fetches `/connect` and resumes with `since`;
//! each welcome says `recovered: true`, and the client receives every number the API accepted,
//! exactly once and in order — nothing may be excused, because nothing had to be lost: a staged
//! restart should cost a client nothing at all.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::backend::unique;
use crate::books::{Books, Expect};
use crate::crowd::{self, Crowd};
use crate::fan_out::{self, STREAM};
use crate::main_port::{api_post, api_restart};
use crate::process::API_KEY;
use crate::setup::{BrokerUnderTest, Setup};
use crate::tracker::Tracker;

/// Clients of the fan-out.
const CLIENTS: usize = 40;
/// Publishing after the roll is over.
const LEAD_OUT: Duration = Duration::from_secs(1);
/// How long the quiet sessions may take to be back after the roll.
const DEADLINE: Duration = Duration::from_secs(20);

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

/// Sessions in the log's history, whose own topics stay quiet.
const QUIET_SESSIONS: usize = 6;
/// `history.size` of the quiet test, and the publishes made meanwhile on a topic no session
/// holds: the log goes on three times past its history.
const SMALL_HISTORY: usize = 100;
const PUBLISHED_ELSEWHERE: usize = 300;

/// A staged restart moves sessions whose own topics were quiet while the log went on far past
/// its history (300 publishes on a topic none of them holds, `history.size = 100`).
///
/// What the clients see: `rohrpost.pos` notices (from the log's head beacons) keep their
/// position inside the history, so each resume after the 1012 still says `recovered: true` —
/// a quiet client is not told it may have lost something it never could have received.
async fn a_quiet_session_stays_recoverable(broker: BrokerUnderTest) {
    let config = format!("[history]\nsize = {SMALL_HISTORY}\n");
    let setup = Setup::start(broker, config).await;
    let main_port = setup.main_port();
    let sup = &setup.sup;
    let trackers = crowd::open(main_port, QUIET_SESSIONS, QUIET_SESSIONS).await;
    let roll_over = Rc::new(Cell::new(false));
    let over = roll_over.clone();
    let crowd = Crowd::follow(
        trackers,
        Rc::new(move |t: &Tracker| over.get() && t.moves().count() > 0),
    );
    let elsewhere = format!("elsewhere.{}", unique("quiet"));
    for n in 0..PUBLISHED_ELSEWHERE {
        let body = json!({"topic": elsewhere, "data": {"n": n}});
        let answer = api_post(main_port, "/api/publish", &body)
            .await
            .expect("the API answers");
        assert_eq!(answer.status, 202, "publish {n}: {}", answer.body);
    }
    sup.signal("HUP");
    sup.wait_for("the roll is over", |h| h.all_ready_in(2) && !h.rolling)
        .await;
    roll_over.set(true);
    let trackers = crowd.finish(Instant::now() + DEADLINE).await;
    for tracker in &trackers {
        let moves: Vec<_> = tracker.moves().collect();
        assert!(
            !moves.is_empty(),
            "client {} was never moved",
            tracker.index
        );
        for m in moves {
            assert_eq!(
                m.welcome.recovered,
                Some(true),
                "client {}: resume from {:?} after {} publishes elsewhere (history {SMALL_HISTORY})",
                tracker.index,
                m.since,
                PUBLISHED_ELSEWHERE
            );
        }
    }
    println!(
        "{broker:?}: {QUIET_SESSIONS} quiet sessions, {PUBLISHED_ELSEWHERE} publishes elsewhere \
         with a history of {SMALL_HISTORY}: {} moves, all recovered: true",
        trackers.iter().map(|t| t.moves().count()).sum::<usize>()
    );
}

#[actix_rt::test]
async fn a_quiet_session_stays_recoverable_across_a_staged_restart_embedded_broker() {
    a_quiet_session_stays_recoverable(BrokerUnderTest::Embedded).await;
}

#[actix_rt::test]
async fn a_quiet_session_stays_recoverable_across_a_staged_restart_redis() {
    a_quiet_session_stays_recoverable(BrokerUnderTest::Redis).await;
}
