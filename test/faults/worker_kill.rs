//! A worker killed (SIGKILL) in the middle of a fan-out, under the real supervisor with its
//! default embedded broker.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::broker::unique;
use crate::client::{Client, Event, Welcome};
use crate::process::{alive, answers, signal, ws_url};
use crate::supervisor::{ready, worker, Supervisor};
use crate::worker::PREFIX;

/// Sessions on each of the two workers.
const CLIENTS_PER_WORKER: usize = 5;
/// Messages fanned out, numbered 1..=FAN_OUT.
const FAN_OUT: u64 = 200;
/// Pause between two publishes.
const PUBLISH_EVERY: Duration = Duration::from_millis(10);
/// The number after whose publication worker 0 is killed.
const KILL_AFTER: u64 = 60;
/// How long a killed worker's client may take to be back in its session.
const RESUME_WAIT: Duration = Duration::from_secs(10);

/// What one client saw.
struct Followed {
    /// Fan-out numbers in arrival order.
    seqs: Vec<u64>,
    /// For a client of the killed worker: the welcome of its resume, how long after its
    /// connection broke it was back, and how many numbers it had before.
    resumed: Option<(Welcome, Duration, usize)>,
}

/// What the clients see: the clients of the killed worker see their connection end, fetch
/// `/connect` again and resume there with their token: the same session, with the whitelist
/// the backend gave it (so nothing of the session is lost; the fan-out messages published
/// while they were away are, as for any disconnected pub/sub client). The clients of the other
/// worker notice nothing: they receive every number, 1 to 200, each once, in order.
#[actix_rt::test]
async fn worker_killed_mid_fan_out_its_clients_resume_and_others_miss_nothing() {
    let namespace = unique("fan");
    let topic = format!("{namespace}.news");
    let sup = Rc::new(Supervisor::start(2, &[format!("{namespace}.*")]).await);
    let health = sup.health().await.expect("/health answers");
    let (port0, pid0) = worker(&health, 0);
    let (port1, _) = worker(&health, 1);

    let mut clients = Vec::new();
    for i in 0..2 * CLIENTS_PER_WORKER {
        let port = if i < CLIENTS_PER_WORKER { port0 } else { port1 };
        let mut client = Client::connect(&ws_url(port)).await;
        let welcome = client.hello().await;
        clients.push((client, welcome));
    }
    settle(&sup, &mut clients, &topic).await;
    // The backend grants each client of worker 0 a pattern of its own.
    for (i, (client, welcome)) in clients.iter_mut().take(CLIENTS_PER_WORKER).enumerate() {
        grant(&sup, client, welcome, &format!("granted.{namespace}.{i}.*")).await;
    }

    let stop = Rc::new(Cell::new(false));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(client, welcome)| {
            let follow = follow(client, welcome, sup.clone(), topic.clone(), stop.clone());
            actix_rt::spawn(follow)
        })
        .collect();

    let mut killed_at = None;
    for seq in 1..=FAN_OUT {
        let published = sup
            .api(
                "/api/publish",
                &json!({"topic": topic, "data": {"seq": seq}}),
            )
            .await;
        assert!(published, "the server API took number {seq}");
        if seq == KILL_AFTER {
            signal(pid0, libc::SIGKILL);
            killed_at = Some(Instant::now());
        }
        actix_rt::time::sleep(PUBLISH_EVERY).await;
    }
    let killed_at = killed_at.expect("worker 0 was killed");
    // Everything due has arrived a moment after the last publish; resumes have their deadline.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let deadline = killed_at + RESUME_WAIT;
    while tasks.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    stop.set(true);
    let followed: Vec<Followed> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("client task did not panic"))
        .collect();
    assert!(!alive(pid0), "worker 0 is gone");

    let mut gaps = Vec::new();
    for (i, f) in followed.iter().enumerate() {
        if i < CLIENTS_PER_WORKER {
            let (again, gap, before) = f
                .resumed
                .as_ref()
                .unwrap_or_else(|| panic!("client {i} of the killed worker resumed"));
            assert!(again.resumed, "client {i}: resumed: {again:?}");
            let granted = format!("granted.{namespace}.{i}.*");
            assert!(
                again.whitelist.contains(&granted),
                "client {i}: whitelist kept: {:?}",
                again.whitelist
            );
            assert!(
                f.seqs.windows(2).all(|w| w[0] < w[1]),
                "client {i}: numbers in order, none twice: {:?}",
                f.seqs
            );
            assert!(*before > 0, "client {i} received before the kill");
            gaps.push(*gap);
        } else {
            assert_eq!(
                f.seqs,
                (1..=FAN_OUT).collect::<Vec<_>>(),
                "client {i} of the surviving worker got every number in order"
            );
            assert!(f.resumed.is_none(), "client {i} was never disconnected");
        }
    }
    let after = sup
        .wait_until("worker 0 back", |h| {
            ready(h) == 2 && h["workers"][0]["generation"] == json!(2)
        })
        .await;
    assert_ne!(worker(&after, 0).1, pid0, "worker 0 is a new process");
    gaps.sort();
    let counts: Vec<usize> = followed.iter().map(|f| f.seqs.len()).collect();
    println!(
        "worker killed after {KILL_AFTER} of {FAN_OUT} numbers: received per client {counts:?} \
         (first {CLIENTS_PER_WORKER} on the killed worker); resume after the break: min {:?} \
         max {:?}",
        gaps[0],
        gaps[gaps.len() - 1],
    );
}

/// Publishes probes through the server API until every client received one on `topic`, then
/// a fence that every client reads up to: from then on, every session receives `topic`.
async fn settle(sup: &Supervisor, clients: &mut [(Client, Welcome)], topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut settled = vec![false; clients.len()];
    while settled.contains(&false) {
        assert!(Instant::now() < deadline, "sessions receive {topic}");
        assert!(
            sup.api(
                "/api/publish",
                &json!({"topic": topic, "data": {"probe": 1}})
            )
            .await
        );
        let reads = clients
            .iter_mut()
            .zip(settled.iter_mut())
            .map(|((c, _), s)| async move {
                while let Some(event) = c.next_event(Duration::from_millis(100)).await {
                    match event {
                        Event::Text(_) => *s = true,
                        Event::Closed(reason) => panic!("closed while settling: {reason:?}"),
                    }
                }
            });
        join_all(reads).await;
    }
    let marker: u64 = rand::random();
    assert!(
        sup.api(
            "/api/publish",
            &json!({"topic": topic, "data": {"fence": marker}})
        )
        .await
    );
    join_all(clients.iter_mut().map(|(c, _)| async move {
        loop {
            let (_, data) = c.recv().await;
            if data["fence"] == marker {
                return;
            }
        }
    }))
    .await;
}

/// Grants `pattern` to a session through the server API and waits for the notice.
async fn grant(sup: &Supervisor, client: &mut Client, welcome: &Welcome, pattern: &str) {
    let path = format!("/api/sessions/{}", welcome.session);
    let direct = welcome.direct_topic();
    for _ in 0..50 {
        assert!(
            sup.api(&path, &json!({"add": [pattern], "data": "granted"}))
                .await
        );
        if let Some(Event::Text(text)) = client.next_event(Duration::from_millis(200)).await {
            let value: Value = serde_json::from_str(&text).unwrap_or_default();
            if value["topic"] == direct.as_str() && value["data"] == "granted" {
                return;
            }
        }
    }
    panic!("session {} did not get its grant", welcome.session);
}

/// Reads fan-out numbers on `topic` until the last one or `stop`; when the connection breaks,
/// fetches `/connect` again and resumes there.
async fn follow(
    mut client: Client,
    welcome: Welcome,
    sup: Rc<Supervisor>,
    topic: String,
    stop: Rc<Cell<bool>>,
) -> Followed {
    let mut followed = Followed {
        seqs: Vec::new(),
        resumed: None,
    };
    while !stop.get() && followed.seqs.last() != Some(&FAN_OUT) {
        match client.next_event(Duration::from_millis(50)).await {
            None => {}
            Some(Event::Text(text)) => {
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                if value["topic"] == topic.as_str() {
                    if let Some(seq) = value["data"]["seq"].as_u64() {
                        followed.seqs.push(seq);
                    }
                }
            }
            Some(Event::Closed(reason)) => {
                assert!(followed.resumed.is_none(), "closed again: {reason:?}");
                let broke = Instant::now();
                client = reconnect(&sup).await;
                let again = client.resume(&welcome.resume).await;
                assert_eq!(again.session, welcome.session, "the same session");
                followed.resumed = Some((again, broke.elapsed(), followed.seqs.len()));
            }
        }
    }
    followed
}

/// A connection to the worker `/connect` hands out, once that worker answers.
async fn reconnect(sup: &Supervisor) -> Client {
    let deadline = Instant::now() + RESUME_WAIT;
    loop {
        if let Some(port) = sup.connect().await {
            if answers(&format!("http://127.0.0.1:{port}{PREFIX}/info")).await {
                return Client::connect(&ws_url(port)).await;
            }
        }
        assert!(Instant::now() < deadline, "no worker to reconnect to");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}
