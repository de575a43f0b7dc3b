//! HTTP-topic answers in flight during a drain: an HTTP backend that answers every request after
//! 0.5 s with a direct message — every tenth a login, whose answer grants a pattern with `add` —
//! while 20 clients send 10 requests a second each (with ids) and every worker is drained and
//! replaced (embedded broker).
//!
//! What the clients see: every request is acked or answered with an error, never neither; every
//! request that reached the backend has its answer reach its client exactly once — on the
//! connection it was sent from, or, for an answer that came back to a worker that had closed the
//! session with 1012 meanwhile, after the resume (the worker put it in the log for the session's
//! direct topic). Every grant holds: once a client has its login answer, a message published on
//! the granted pattern reaches it.
//!
//! The backend drops a retried request (a `messageId` it has seen) with an empty answer, as the
//! contract asks backends to.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::backend::unique;
use crate::books::{Books, Expect};
use crate::crowd::{self, Crowd};
use crate::http_backend::{Answer, Backend, Recorded};
use crate::ledger::{IdBooks, Ledger};
use crate::main_port::api_post;
use crate::setup::{BrokerUnderTest, Setup};
use crate::tracker::Tracker;

/// Clients sending requests.
const CLIENTS: usize = 20;
/// Each client's pace: 10 requests a second.
const SEND_EVERY: Duration = Duration::from_millis(100);
/// How long the backend takes to answer.
const ANSWER_DELAY: Duration = Duration::from_millis(500);
/// Every this many requests is a login: its answer grants a pattern.
const LOGIN_EVERY: u64 = 10;
/// Sending before the roll, and after it is over.
const LEAD_IN: Duration = Duration::from_secs(1);
const LEAD_OUT: Duration = Duration::from_secs(1);
/// How long after sending stopped every request may take to be answered.
const ANSWER_DEADLINE: Duration = Duration::from_secs(15);
/// How long the grant probes may take to arrive.
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

const ANSWERS: &str = "answer";
const PROBES: &str = "probe";

/// The pattern login `n` of client `client` is granted (outside the default whitelist).
fn granted(namespace: &str, client: usize, n: u64) -> String {
    format!("{namespace}.g.{client}.{n}.*")
}

/// What the backend answers: the first copy of a request after [`ANSWER_DELAY`], a retried copy
/// with nothing.
fn answer(namespace: &str, ledger: &Mutex<Ledger>, request: &Recorded) -> Answer {
    let first = ledger.lock().expect("the ledger").record(&request.body);
    if !first {
        return Answer::Raw {
            status: 204,
            content_type: "application/json",
            body: "",
        };
    }
    let data = &request.body["data"];
    let (client, n) = (
        data["c"].as_u64().unwrap_or(0),
        data["n"].as_u64().unwrap_or(0),
    );
    let mut message = json!({"topic": "answer", "data": {"stream": ANSWERS, "n": n}});
    if n % LOGIN_EVERY == 0 {
        message["add"] = json!([granted(namespace, client as usize, n)]);
    }
    Answer::Delayed(ANSWER_DELAY, Box::new(Answer::Json(message)))
}

#[actix_rt::test]
async fn http_answers_in_flight_during_a_drain_reach_their_clients() {
    let namespace = unique("http");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (ns, books) = (namespace.clone(), ledger.clone());
    let backend = Backend::start(move |request| answer(&ns, &books, request));
    let topic = format!("anonym.{namespace}.http.request");
    let rule = format!(
        "[[http_topics]]\npattern = \"anonym.{namespace}.http.*\"\nurl = \"{}\"\ntimeout = \"5s\"\n",
        backend.url()
    );
    let setup = Setup::start(BrokerUnderTest::Embedded, rule).await;
    let main_port = setup.main_port();

    let mut trackers = crowd::open(main_port, CLIENTS, CLIENTS).await;
    let stop = Rc::new(Cell::new(false));
    for tracker in &mut trackers {
        tracker.outbox.start(&topic, SEND_EVERY, stop.clone());
    }
    let (stopped, owed) = (stop.clone(), ledger.clone());
    let crowd = Crowd::follow(
        trackers,
        Rc::new(move |t: &Tracker| {
            stopped.get() && t.outbox.all_resolved() && {
                let numbers = owed.lock().expect("the ledger").numbers_of(t.index);
                numbers.iter().all(|&n| t.has(ANSWERS, n))
            }
        }),
    );
    actix_rt::time::sleep(LEAD_IN).await;
    let sup = &setup.sup;
    sup.signal("HUP");
    sup.wait_for("the roll is over", |h| h.all_ready_in(2) && !h.rolling)
        .await;
    actix_rt::time::sleep(LEAD_OUT).await;
    stop.set(true);
    let stopped_at = Instant::now();
    let trackers = crowd.finish(stopped_at + ANSWER_DEADLINE).await;
    let answered_after = stopped_at.elapsed();

    // Every login answer a client received granted a pattern: publish on each, once.
    let mut logins: Vec<(usize, u64)> = trackers
        .iter()
        .flat_map(|t| {
            t.numbers(ANSWERS)
                .filter(|n| n % LOGIN_EVERY == 0)
                .map(|n| (t.index, n))
                .collect::<Vec<_>>()
        })
        .collect();
    logins.sort_unstable();
    logins.dedup();
    let probes = logins.iter().map(|&(client, n)| {
        let topic = granted(&namespace, client, n).replace('*', "probe");
        async move {
            let body = json!({"topic": topic, "data": {"stream": PROBES, "n": n}});
            let answer = api_post(main_port, "/api/publish", &body).await;
            assert!(
                matches!(&answer, Ok(a) if a.status == 202),
                "publish on {topic}: {answer:?}"
            );
        }
    });
    join_all(probes).await;
    let owed_probes = |t: &Tracker| -> Vec<u64> {
        let mut numbers: Vec<u64> = t
            .numbers(ANSWERS)
            .filter(|n| n % LOGIN_EVERY == 0)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    };
    let crowd = Crowd::follow(
        trackers,
        Rc::new(move |t: &Tracker| owed_probes(t).iter().all(|&n| t.has(PROBES, n))),
    );
    let trackers = crowd.finish(Instant::now() + PROBE_DEADLINE).await;

    let ledger = ledger.lock().expect("the ledger");
    let answers = Books::count("HTTP answers across a drain", &trackers, |t| {
        Expect::exactly(ANSWERS, ledger.numbers_of(t.index)).unordered()
    });
    let grants = Books::count("grants of those answers", &trackers, |t| {
        Expect::exactly(PROBES, owed_probes(t)).unordered()
    });
    let ids = IdBooks::check("HTTP requests with ids across a drain", &trackers, &ledger);
    println!(
        "every request answered {answered_after:?} after sending stopped; {} logins probed",
        logins.len()
    );
    answers.assert_ok();
    grants.assert_ok();
    ids.assert_ok();
}
