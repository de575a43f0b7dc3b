//! HTTP backends that fail at the TCP level: one that accepts requests and never answers, one
//! that closes or resets connections. (A backend that answers 500, or 200 with an HTML page,
//! is covered as such by the messaging suite's `backend_failures`: `backend_error`, and the
//! session keeps working.)

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::broker::{settle, BrokerKind, TestBroker};
use crate::client::{Client, ERROR};
use crate::process::{FaultWorker, Tweak};
use crate::tcp_backend::{Behaviour, TcpBackend};
use crate::worker::{HttpRule, WorkerConfig};

/// `http.max_in_flight` of these workers.
const MAX_IN_FLIGHT: usize = 4;
/// The slowest round trip through the broker that counts as prompt.
const PROMPT: Duration = Duration::from_millis(500);
/// How quickly a refusal (`backend_unavailable`) must come back: well before any timeout.
const REFUSAL: Duration = Duration::from_secs(1);

/// A worker on a private Redis whose `http.*` topics (namespaced) go to `backend` with
/// `timeout`, holding at most [`MAX_IN_FLIGHT`] backend requests.
async fn worker_for(
    backend: &TcpBackend,
    timeout: &str,
) -> (TestBroker, WorkerConfig, FaultWorker) {
    let broker = TestBroker::stoppable(BrokerKind::Redis).await;
    let mut config = WorkerConfig::on(&broker);
    let http = config.pattern("http");
    config.default_whitelist.push(http.clone());
    config
        .http_topics
        .push(HttpRule::new(&http, &backend.url()).timeout(timeout));
    let tweaks: [Tweak; 1] = [("http", "max_in_flight", (MAX_IN_FLIGHT as i64).into())];
    let worker = FaultWorker::start(&config, &tweaks).await;
    (broker, config, worker)
}

/// The next message on `client`, which must be a `rohrpost.error` about `topic`; its code and
/// message.
async fn next_error(client: &mut Client, topic: &str) -> (String, String) {
    let data = client.expect_topic(ERROR).await;
    assert_eq!(data["topic"], topic, "error {data}");
    let text = |key: &str| data[key].as_str().unwrap_or_default().to_owned();
    (text("code"), text("message"))
}

/// What the clients see with a backend that takes requests and never answers: each request
/// on an HTTP topic gets `backend_timeout` after the rule's 1 s timeout (not before, and not
/// much later); meanwhile another session of the same worker, on an ordinary topic, keeps
/// prompt round trips through the broker, as if nothing were wrong.
#[actix_rt::test]
async fn hanging_backend_gives_backend_timeout_and_other_sessions_stay_prompt() {
    const REQUESTS: usize = 3;
    const ROUNDS: u64 = 20;
    let backend = TcpBackend::start(Behaviour::Hang);
    let (broker, config, worker) = worker_for(&backend, "1s").await;
    let (mut stuck, _) = worker.session().await;
    let (mut other, welcome) = worker.session().await;
    let ping = config.topic("ping");
    // Answers go to the other session's direct topic, which reaches no one else.
    let pong = welcome.direct_topic();
    let mut redis = broker.connect().await;
    settle(&mut redis, &mut other, &pong).await;
    let mut seen = broker.subscribe(&ping).await;

    let topic = config.topic("http");
    let sent = Instant::now();
    for n in 0..REQUESTS {
        stuck.publish(&topic, json!({"n": n})).await;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while backend.requests() < REQUESTS {
        assert!(
            Instant::now() < deadline,
            "the requests reached the backend"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }

    // The other session's round trips while every request hangs.
    let mut round_trips = Vec::new();
    for n in 0..ROUNDS {
        let start = Instant::now();
        other.publish(&ping, json!({"n": n})).await;
        assert_eq!(seen.next_json().await["data"], json!({"n": n}));
        redis.publish(&pong, &json!({"data": {"pong": n}})).await;
        other.expect(&pong, json!({"pong": n})).await;
        round_trips.push(start.elapsed());
    }
    assert_eq!(
        backend.open(),
        REQUESTS,
        "still hanging during the round trips"
    );

    for _ in 0..REQUESTS {
        let (code, message) = next_error(&mut stuck, &topic).await;
        assert_eq!(code, "backend_timeout", "{message}");
    }
    let timed_out = sent.elapsed();
    assert!(
        timed_out >= Duration::from_secs(1) && timed_out < Duration::from_secs(3),
        "timeouts after the rule's 1 s: {timed_out:?}"
    );
    round_trips.sort();
    let max = round_trips[round_trips.len() - 1];
    assert!(
        max < PROMPT,
        "the other session's round trips stayed prompt: {round_trips:?}"
    );
    println!(
        "hanging backend: {REQUESTS} requests, backend_timeout each after {timed_out:?}; \
         the other session's {ROUNDS} round trips meanwhile: median {:?}, max {max:?}",
        round_trips[round_trips.len() / 2]
    );
}

/// What the clients see when they send more requests than `http.max_in_flight` (4) to a
/// backend that hangs: the worker opens at most 4 connections to it (the backend counts them);
/// every request beyond gets `backend_unavailable` ("busy") at once, the 4 taken get
/// `backend_timeout` after the rule's timeout, and once those are over, requests reach the
/// backend again (the slots are free).
#[actix_rt::test]
async fn hanging_backend_holds_at_most_max_in_flight_requests() {
    const SESSIONS: usize = 2;
    const PER_SESSION: usize = 5;
    let backend = TcpBackend::start(Behaviour::Hang);
    let (_broker, config, worker) = worker_for(&backend, "2s").await;
    let topic = config.topic("http");
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        clients.push(worker.session().await.0);
    }

    let sent = Instant::now();
    for client in &mut clients {
        for n in 0..PER_SESSION {
            client.publish(&topic, json!({"n": n})).await;
        }
    }
    let total = SESSIONS * PER_SESSION;
    // Every client reads at once, so each error's time is when it arrived.
    let reads = clients.iter_mut().map(|client| {
        let topic = &topic;
        async move {
            let mut errors = Vec::new();
            for _ in 0..PER_SESSION {
                let (code, message) = next_error(client, topic).await;
                errors.push((code, message, sent.elapsed()));
            }
            errors
        }
    });
    let mut busy = Vec::new();
    let mut timeouts = Vec::new();
    for (code, message, at) in join_all(reads).await.into_iter().flatten() {
        match code.as_str() {
            "backend_unavailable" => {
                assert!(message.contains("busy"), "{message}");
                busy.push(at);
            }
            "backend_timeout" => timeouts.push(at),
            other => panic!("unexpected error {other}: {message}"),
        }
    }
    assert_eq!(
        timeouts.len(),
        MAX_IN_FLIGHT,
        "the requests that got a slot"
    );
    assert_eq!(
        busy.len(),
        total - MAX_IN_FLIGHT,
        "the requests beyond the bound"
    );
    let slowest_refusal = busy.iter().max().copied().unwrap_or_default();
    assert!(slowest_refusal < REFUSAL, "refusals came at once: {busy:?}");
    assert!(
        timeouts.iter().all(|t| *t >= Duration::from_secs(2)),
        "{timeouts:?}"
    );
    assert_eq!(backend.requests(), MAX_IN_FLIGHT);
    let max_open = backend.max_open();
    assert_eq!(
        max_open, MAX_IN_FLIGHT,
        "connections open at the backend at once"
    );

    // The slots are free again: the next requests reach the backend.
    clients[0].publish(&topic, json!("again")).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while backend.requests() <= MAX_IN_FLIGHT {
        assert!(Instant::now() < deadline, "a request reached the backend");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "max_in_flight {MAX_IN_FLIGHT}: {total} requests to a hanging backend; at most \
         {max_open} connections open at the backend; {} refused as busy within \
         {slowest_refusal:?}; {} timed out after {:?}",
        busy.len(),
        timeouts.len(),
        timeouts.iter().min().copied().unwrap_or_default(),
    );
}

/// What the clients see when the backend closes each connection as soon as it is accepted, or
/// resets it once it has read the request: `backend_unavailable` for each request, promptly,
/// and never "busy" although there are three times more failed requests than
/// `http.max_in_flight` (a failed request frees its slot); when the backend behaves again the
/// next request gets its answer.
#[actix_rt::test]
async fn closing_or_resetting_backend_gives_backend_unavailable() {
    const EACH: usize = 6;
    let backend = TcpBackend::start(Behaviour::Close);
    let (_broker, config, worker) = worker_for(&backend, "2s").await;
    let topic = config.topic("http");
    let (mut client, _) = worker.session().await;

    let mut slowest = Duration::ZERO;
    for behaviour in [Behaviour::Close, Behaviour::Reset] {
        backend.set(behaviour);
        for n in 0..EACH {
            let sent = Instant::now();
            client.publish(&topic, json!({"n": n})).await;
            let (code, message) = next_error(&mut client, &topic).await;
            assert_eq!(code, "backend_unavailable", "{behaviour:?}: {message}");
            assert!(!message.contains("busy"), "{behaviour:?}: {message}");
            slowest = slowest.max(sent.elapsed());
        }
    }
    assert!(slowest < REFUSAL, "errors came promptly: {slowest:?}");
    assert_eq!(backend.requests(), EACH, "the reset requests were read");

    backend.set(Behaviour::Answer);
    client.publish(&topic, json!("well?")).await;
    client.expect(&topic, json!("ok")).await;
    println!(
        "closing/resetting backend: {} requests, backend_unavailable each, slowest {slowest:?}; \
         answered again after",
        2 * EACH
    );
}
