//! Numbered news from the backend, and a bystander client reading it: the witness that a worker
//! crashing next door changes nothing for a client elsewhere.
//!
//! [`News`] publishes `{"data": {"seq": n}}` on one topic every [`NEWS_EVERY`]. A [`Bystander`]
//! reads that topic in its own task and records every sequence number and whether its websocket
//! ever closed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;

use crate::backend::Backend;
use crate::client::{Client, Event};
use crate::common::WAIT;

/// How often the backend publishes news.
const NEWS_EVERY: Duration = Duration::from_millis(50);
/// How long a published item may take to reach the bystander.
const NEWS_WAIT: Duration = Duration::from_secs(5);

/// The backend publishing numbered news.
pub struct News {
    stop: Rc<Cell<bool>>,
    task: JoinHandle<u64>,
}

impl News {
    /// Starts publishing on `topic`.
    pub async fn start(topic: &str) -> News {
        let mut backend = Backend::connect().await;
        let stop = Rc::new(Cell::new(false));
        let stopped = stop.clone();
        let topic = topic.to_owned();
        let task = actix_rt::spawn(async move {
            let mut seq = 0;
            while !stopped.get() {
                seq += 1;
                backend
                    .publish(&topic, &json!({"data": {"seq": seq}}))
                    .await;
                actix_rt::time::sleep(NEWS_EVERY).await;
            }
            seq
        });
        News { stop, task }
    }

    /// Stops publishing; the number of the last item published.
    pub async fn stop(self) -> u64 {
        self.stop.set(true);
        actix_rt::time::timeout(WAIT, self.task)
            .await
            .expect("the news publisher stops")
            .expect("the news publisher")
    }
}

/// What the bystander saw.
pub struct Seen {
    /// Sequence numbers in the order they arrived.
    pub seqs: Vec<u64>,
    /// Whether its websocket ended.
    pub closed: bool,
}

/// A client reading the news in its own task.
pub struct Bystander {
    seen: Rc<RefCell<Seen>>,
    /// Once set: stop after receiving this sequence number.
    last: Rc<Cell<Option<u64>>>,
    task: JoinHandle<()>,
}

impl Bystander {
    pub fn start(mut client: Client, topic: &str) -> Bystander {
        let seen = Rc::new(RefCell::new(Seen {
            seqs: Vec::new(),
            closed: false,
        }));
        let last = Rc::new(Cell::new(None));
        let (seen_by_task, last_for_task) = (seen.clone(), last.clone());
        let topic = topic.to_owned();
        let task = actix_rt::spawn(async move {
            let mut heard_at = Instant::now();
            loop {
                let done = |s: &Seen| {
                    last_for_task
                        .get()
                        .is_some_and(|last| s.seqs.last() >= Some(&last))
                };
                if done(&seen_by_task.borrow()) {
                    return;
                }
                match client.next_event(NEWS_EVERY).await {
                    Some(Event::Message { topic: t, data }) if t == topic => {
                        let seq = data["seq"].as_u64().expect("numbered news");
                        seen_by_task.borrow_mut().seqs.push(seq);
                        heard_at = Instant::now();
                    }
                    Some(Event::Message { .. }) => {}
                    Some(Event::Closed(_)) => {
                        seen_by_task.borrow_mut().closed = true;
                        return;
                    }
                    None => assert!(
                        heard_at.elapsed() < NEWS_WAIT,
                        "the bystander received nothing for {NEWS_WAIT:?}"
                    ),
                }
            }
        });
        Bystander { seen, last, task }
    }

    /// Waits until the news reaches the bystander (its subscription is made asynchronously,
    /// just after its welcome).
    pub async fn wait_until_receiving(&self) {
        let deadline = Instant::now() + NEWS_WAIT;
        while self.seen.borrow().seqs.is_empty() {
            assert!(
                Instant::now() < deadline,
                "no news reached the bystander within {NEWS_WAIT:?}"
            );
            actix_rt::time::sleep(NEWS_EVERY).await;
        }
    }

    /// Lets the bystander read up to item `last`, then what it saw.
    pub async fn stop_after(self, last: u64) -> Seen {
        self.last.set(Some(last));
        actix_rt::time::timeout(NEWS_WAIT + WAIT, self.task)
            .await
            .expect("the bystander receives the last item")
            .expect("the bystander");
        Rc::try_unwrap(self.seen)
            .ok()
            .expect("the bystander's task is done")
            .into_inner()
    }
}
