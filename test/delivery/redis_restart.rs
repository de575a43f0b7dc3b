//! Redis killed under a fan-out and started again: with its data (saved just before) and
//! without.
//!
//! What the clients see: their websockets stay open throughout (the workers stay up). The
//! server API refuses publishes while Redis is away; a 202 means the message reaches every
//! subscribed client, also when a worker has not re-subscribed yet (it catches up from the log).
//!
//! - **With its data**: the publisher pauses, Redis `SAVE`s and is killed, then comes back with
//!   its log. Every number the API accepted arrives at every client, exactly once, in order, and
//!   nobody is told of a loss (there is none).
//! - **Without its data**: Redis is killed while the publisher goes on, and comes back empty: a
//!   new log, a new epoch. Every number accepted after Redis is back arrives, exactly once and in
//!   order; a number accepted before may be missing only where the client saw `recovered: false`
//!   (the server cannot know what it lost with the old log).

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::books::{Books, Expect};
use crate::fan_out::{self, STREAM};
use crate::setup::{BrokerUnderTest, Setup};

/// Clients of the fan-out.
const CLIENTS: usize = 20;
/// How long Redis is away.
const OUTAGE: Duration = Duration::from_secs(1);
/// Publishing after Redis is back: longer than a worker's reconnect backoff, so that numbers
/// are accepted while workers are still away from Redis.
const LEAD_OUT: Duration = Duration::from_secs(3);

#[actix_rt::test]
async fn redis_restarted_with_its_data_loses_nothing() {
    let mut setup = Setup::start(BrokerUnderTest::SavingRedis, String::new()).await;
    let main_port = setup.main_port();
    let redis = setup.redis();
    let run = fan_out::through(main_port, CLIENTS, LEAD_OUT, async |publisher| {
        publisher.pause().await;
        redis.save().await;
        redis.stop();
        actix_rt::time::sleep(OUTAGE).await;
        redis.restart().await;
        publisher.resume();
    })
    .await;
    let owed = run.published.accepted();
    let books = Books::count("Redis restarted with its data", &run.trackers, |_| {
        Expect::exactly(STREAM, owed.clone())
    });
    println!("{}", run.figures());
    books.assert_ok();
    assert_eq!(run.published.without_pos(), 0, "every 202 carries a pos");
}

#[actix_rt::test]
async fn redis_restarted_without_its_data_delivers_what_follows_and_tells_of_gaps() {
    let mut setup = Setup::start(BrokerUnderTest::Redis, String::new()).await;
    let main_port = setup.main_port();
    let redis = setup.redis();
    let back = Cell::new(None);
    let run = fan_out::through(main_port, CLIENTS, LEAD_OUT, async |_| {
        redis.stop();
        actix_rt::time::sleep(OUTAGE).await;
        redis.restart().await;
        back.set(Some(Instant::now()));
    })
    .await;
    let back = back.get().expect("Redis came back");
    let owed = run.published.accepted();
    let before = run.published.accepted_before(back);
    let books = Books::count("Redis restarted without its data", &run.trackers, |_| {
        Expect::exactly(STREAM, owed.clone()).excusing(before.clone())
    });
    println!(
        "{}; {} of the numbers accepted were published before Redis was back",
        run.figures(),
        before.len()
    );
    books.assert_ok();
    assert_eq!(run.published.without_pos(), 0, "every 202 carries a pos");
    assert!(
        owed.iter().any(|n| !before.contains(n)),
        "the API accepted numbers after Redis was back"
    );
}
