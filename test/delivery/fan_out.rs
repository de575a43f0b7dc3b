//! Numbered fan-out through a fault: the shape of the staged-restart, killed-worker and
//! Redis-restart scenarios.
//!
//! [`through`] opens the clients through `/connect` (each subscribed once its welcome is in:
//! the test does not wait for subscriptions), starts the [`Publisher`] on a topic all of them
//! receive, lets it run for a moment, runs the fault (which returns once the fault is over:
//! the roll done, the worker back, Redis answering again), lets it run a little longer and
//! stops it. Each client is then done once it has the last number the API accepted; what it
//! lacks by the deadline is in the books.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::backend::unique;
use crate::crowd::{self, Crowd};
use crate::publisher::{Published, Publisher};
use crate::tracker::Tracker;

/// The stream every fan-out message is numbered in.
pub const STREAM: &str = "news";
/// The publishing pace: 50 messages a second.
pub const EVERY: Duration = Duration::from_millis(20);
/// Sessions opened at once.
const OPEN_AT_ONCE: usize = 20;
/// Publishing before the fault.
const LEAD_IN: Duration = Duration::from_secs(1);
/// How long after the last publish the clients may take to have everything.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(20);

/// What a run leaves for the books.
pub struct Run {
    pub trackers: Vec<Tracker>,
    pub published: Published,
    /// How long the fault took, from its start until it was over.
    pub fault_took: Duration,
    /// From the last publish until every client had the last number (or the deadline).
    pub caught_up: Duration,
}

/// Fans out numbered messages to `clients` new sessions through the API on `main_port` while
/// `fault` happens, and publishes on for `lead_out` once it is over.
pub async fn through(
    main_port: u16,
    clients: usize,
    lead_out: Duration,
    fault: impl AsyncFnOnce(&Publisher),
) -> Run {
    let topic = format!("anonym.{}.news", unique("fan"));
    let trackers = crowd::open(main_port, clients, OPEN_AT_ONCE).await;
    // 0 while publishing: the last number accepted is known only once it stops.
    let last = Rc::new(Cell::new(0));
    let owed = last.clone();
    let crowd = Crowd::follow(
        trackers,
        Rc::new(move |t: &Tracker| owed.get() > 0 && t.highest(STREAM) >= owed.get()),
    );
    let publisher = Publisher::start(main_port, &topic, STREAM, EVERY);
    actix_rt::time::sleep(LEAD_IN).await;
    assert!(
        publisher.accepted() > 0,
        "the API accepted nothing before the fault"
    );
    let started = Instant::now();
    fault(&publisher).await;
    let fault_took = started.elapsed();
    actix_rt::time::sleep(lead_out).await;
    let published = publisher.stop().await;
    last.set(published.last_accepted());
    let stopped = Instant::now();
    let trackers = crowd.finish(stopped + DELIVERY_DEADLINE).await;
    Run {
        trackers,
        published,
        fault_took,
        caught_up: stopped.elapsed(),
    }
}

impl Run {
    /// The run's own figures, beside the books'.
    pub fn figures(&self) -> String {
        let attempts = self.published.attempts.len();
        let refused = self.published.refused();
        format!(
            "{attempts} publishes at {}/s, {} answered 202 ({} without pos), {} not ({}); fault \
             over after {:?}; every client caught up {:?} after the last publish",
            1000 / EVERY.as_millis(),
            attempts - refused.len(),
            self.published.without_pos(),
            refused.len(),
            refused
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            self.fault_took,
            self.caught_up,
        )
    }
}
