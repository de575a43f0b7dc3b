//! Many trackers at once: opened through `/connect`, then each following its session in a task of
//! its own until the test's condition holds for it, or the test gives up on it at a deadline.
//!
//! A condition is what the test knows it is owed (the last number published, every answer the
//! backend gave): the crowd is done when each tracker has it, not after a time. The deadline only
//! bounds a failing run; what is missing then is in the books.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{stream, StreamExt};
use tokio::task::JoinHandle;

use crate::tracker::Tracker;

/// What a tracker must reach before its task ends.
pub type Until = Rc<dyn Fn(&Tracker) -> bool>;

/// The longest any follow may run, whatever the test's deadline: no task outlives its test.
const FOLLOW_LIMIT: Duration = Duration::from_secs(150);
/// How often [`Crowd::finish`] looks whether every tracker is done.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Opens `count` sessions through `/connect` on `main_port`, `at_once` at a time; tracker `i` is
/// client `i`.
pub async fn open(main_port: u16, count: usize, at_once: usize) -> Vec<Tracker> {
    let mut trackers: Vec<Tracker> = stream::iter(0..count)
        .map(|i| async move {
            Tracker::open(i, main_port)
                .await
                .unwrap_or_else(|e| panic!("client {i}: no session: {e}"))
        })
        .buffer_unordered(at_once)
        .collect()
        .await;
    trackers.sort_by_key(|t| t.index);
    trackers
}

/// Trackers following their sessions.
pub struct Crowd {
    tasks: Vec<JoinHandle<Tracker>>,
    give_up: Rc<Cell<bool>>,
}

impl Crowd {
    /// Starts a task per tracker that follows it until `until` holds for it.
    pub fn follow(trackers: Vec<Tracker>, until: Until) -> Crowd {
        let give_up = Rc::new(Cell::new(false));
        let tasks = trackers
            .into_iter()
            .map(|mut tracker| {
                let until = until.clone();
                let give_up = give_up.clone();
                actix_rt::spawn(async move {
                    let done = move |t: &Tracker| give_up.get() || until(t);
                    tracker.follow(&done, Instant::now() + FOLLOW_LIMIT).await;
                    tracker
                })
            })
            .collect();
        Crowd { tasks, give_up }
    }

    /// How many trackers are done.
    pub fn done(&self) -> usize {
        self.tasks.iter().filter(|t| t.is_finished()).count()
    }

    /// Waits until every tracker is done, or `deadline`, when the rest are given up; the
    /// trackers, in their order.
    pub async fn finish(self, deadline: Instant) -> Vec<Tracker> {
        while self.done() < self.tasks.len() && Instant::now() < deadline {
            actix_rt::time::sleep(CHECK_EVERY).await;
        }
        self.give_up.set(true);
        join_all(self.tasks)
            .await
            .into_iter()
            .map(|t| t.expect("a tracker's task panicked (see above)"))
            .collect()
    }
}
