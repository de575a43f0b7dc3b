//! The backend publishing numbered messages through the server API, `POST /api/publish`, one of
//! the publish paths that go through the log.
//!
//! A [`Publisher`] posts `{"topic", "data": {"stream", "n"}}` with n = 1, 2, … at a steady pace,
//! one request at a time, so that the log holds them in the order of their numbers. It notes
//! for each attempt when it started and what the API answered: a 202 promises the message
//! reaches every subscribed client, any other answer promises nothing. It can pause (the test
//! saves Redis with nothing in flight) and stops when told.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;

use crate::common::WAIT;
use crate::main_port::api_post;

/// While paused, how often the publisher looks whether it may go on.
const PAUSED_STEP: Duration = Duration::from_millis(5);

/// One publish.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub n: u64,
    pub started: Instant,
    /// The API's status, or why there was none.
    pub status: Result<u16, String>,
    /// The `pos` of a 202's answer.
    pub pos: Option<String>,
}

#[derive(Default)]
struct Switches {
    paused: Cell<bool>,
    /// Set by the publisher while it is paused between two publishes.
    idle: Cell<bool>,
    stop: Cell<bool>,
}

/// The numbered publishing in progress.
pub struct Publisher {
    switches: Rc<Switches>,
    attempts: Rc<RefCell<Vec<Attempt>>>,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Publishes number after number of `stream` on `topic` through the API on `main_port`, one
    /// every `every`.
    pub fn start(main_port: u16, topic: &str, stream: &'static str, every: Duration) -> Publisher {
        let switches = Rc::new(Switches::default());
        let attempts = Rc::new(RefCell::new(Vec::new()));
        let (s, log, topic) = (switches.clone(), attempts.clone(), topic.to_owned());
        let task = actix_rt::spawn(async move {
            let mut next = Instant::now();
            let mut n = 0;
            while !s.stop.get() {
                if s.paused.get() {
                    s.idle.set(true);
                    actix_rt::time::sleep(PAUSED_STEP).await;
                    next = Instant::now();
                    continue;
                }
                s.idle.set(false);
                n += 1;
                let started = Instant::now();
                let body = json!({"topic": topic, "data": {"stream": stream, "n": n}});
                let answer = api_post(main_port, "/api/publish", &body).await;
                log.borrow_mut().push(Attempt {
                    n,
                    started,
                    pos: answer
                        .as_ref()
                        .ok()
                        .and_then(|a| a.body["pos"].as_str().map(str::to_owned)),
                    status: answer.map(|a| a.status),
                });
                next = (next + every).max(Instant::now());
                actix_rt::time::sleep_until(next.into()).await;
            }
        });
        Publisher {
            switches,
            attempts,
            task,
        }
    }

    /// How many publishes were answered 202 so far.
    pub fn accepted(&self) -> usize {
        self.attempts
            .borrow()
            .iter()
            .filter(|a| a.status == Ok(202))
            .count()
    }

    /// Stops publishing, and returns once no publish is in flight.
    pub async fn pause(&self) {
        self.switches.paused.set(true);
        let deadline = Instant::now() + WAIT;
        while !self.switches.idle.get() {
            assert!(Instant::now() < deadline, "the publisher did not pause");
            actix_rt::time::sleep(PAUSED_STEP).await;
        }
    }

    pub fn resume(&self) {
        self.switches.paused.set(false);
    }

    /// Stops for good, once the publish in flight is answered.
    pub async fn stop(self) -> Published {
        self.switches.stop.set(true);
        actix_rt::time::timeout(WAIT * 2, self.task)
            .await
            .expect("the publisher stops")
            .expect("the publisher's task");
        let attempts = self.attempts.take();
        Published { attempts }
    }
}

/// Every publish of a run.
#[derive(Debug)]
pub struct Published {
    pub attempts: Vec<Attempt>,
}

impl Published {
    /// The numbers answered 202, in order: what every subscribed client is owed.
    pub fn accepted(&self) -> Vec<u64> {
        self.attempts
            .iter()
            .filter(|a| a.status == Ok(202))
            .map(|a| a.n)
            .collect()
    }

    /// The numbers answered 202 whose publish started before `at`.
    pub fn accepted_before(&self, at: Instant) -> BTreeSet<u64> {
        self.attempts
            .iter()
            .filter(|a| a.status == Ok(202) && a.started < at)
            .map(|a| a.n)
            .collect()
    }

    /// The highest number answered 202.
    pub fn last_accepted(&self) -> u64 {
        self.accepted().last().copied().unwrap_or(0)
    }

    /// Attempts not answered 202, as `n: status` (for the figures).
    pub fn refused(&self) -> Vec<String> {
        self.attempts
            .iter()
            .filter(|a| a.status != Ok(202))
            .map(|a| match &a.status {
                Ok(status) => format!("{}: {status}", a.n),
                Err(e) => format!("{}: {e}", a.n),
            })
            .collect()
    }

    /// The 202 answers without a `pos` (the contract says every one has it).
    pub fn without_pos(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.status == Ok(202) && a.pos.is_none())
            .count()
    }
}
