//! Presence with a crowd: 1,000 sessions over the workers of one supervisor (embedded broker)
//! or of two supervisors sharing Redis, counted through the server API while they come, get a
//! grant and go; and the event hook, refusing its first POSTs, gets every session's pair of
//! events exactly once — from one supervisor, with two of them following the same log.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::books::EventBooks;
use crate::client::{Client, Event, Welcome};
use crate::main_port::handout;
use crate::sink::Sink;
use crate::system::{api, count, BrokerUnderTest, System};

const SESSIONS: usize = 1000;
/// Sessions granted an extra pattern.
const GRANTED: usize = 100;
/// POSTs the hook refuses before it takes any.
const REFUSED: usize = 3;

/// Polls `count` on `main_port` until it is `want`; fails after 10 s with the last count.
async fn wait_count(main_port: u16, topic: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = count(main_port, topic).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: counted {got}, want {want}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn bye(client: &mut Client) {
    client
        .send_json(&json!({"bye": 1}))
        .await
        .expect("goodbye sent");
}

async fn presence_counts_a_crowd_and_every_event_arrives_once(
    broker: BrokerUnderTest,
    machines: usize,
) {
    let sink = Sink::start(REFUSED);
    let system = System::start(broker, machines, &sink).await;
    let mains: Vec<u16> = system.sups.iter().map(|s| s.ports.main).collect();
    let mut crowd: Vec<(Client, Welcome)> = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let worker = handout(mains[i % mains.len()]).await.expect("/connect");
        crowd.push(Client::new_session(&worker.ws_url()).await);
    }
    for &main in &mains {
        wait_count(main, "anonym.x", SESSIONS as u64).await;
        assert_eq!(count(main, "nobody.here").await, 0);
    }
    let started = Instant::now();
    let listed = api(mains[0], "GET", "/api/sessions?topic=anonym.x", None).await;
    let list_time = started.elapsed();
    let sessions = listed.body["sessions"].as_array().expect("sessions");
    let ids: BTreeSet<&str> = sessions
        .iter()
        .filter_map(|s| s["sessionId"].as_str())
        .collect();
    let workers: BTreeSet<&str> = sessions
        .iter()
        .filter_map(|s| s["worker"].as_str())
        .collect();
    assert_eq!(ids.len(), SESSIONS);
    assert!(sessions.iter().all(|s| s["connected"] == true));
    assert_eq!(
        workers.len(),
        2 * machines,
        "sessions on every worker: {workers:?}"
    );

    // A grant and data are seen by presence once the session has them.
    for (_, welcome) in crowd.iter().take(GRANTED) {
        let grant = json!({"add": ["room.7"], "sessionData": {"name": welcome.session}});
        let path = format!("/api/sessions/{}", welcome.session);
        assert_eq!(api(mains[0], "POST", &path, Some(grant)).await.status, 202);
    }
    wait_count(
        *mains.last().expect("a main port"),
        "room.7",
        GRANTED as u64,
    )
    .await;
    let first = &crowd[0].1.session;
    let one = api(mains[0], "GET", &format!("/api/sessions/{first}"), None).await;
    assert_eq!(one.body["sessionData"], json!({"name": first}));

    // Half go, then the rest.
    for (client, _) in crowd.iter_mut().skip(SESSIONS / 2) {
        bye(client).await;
    }
    wait_count(mains[0], "anonym.x", (SESSIONS / 2) as u64).await;
    for (client, _) in crowd.iter_mut().take(SESSIONS / 2) {
        bye(client).await;
    }
    wait_count(mains[0], "anonym.x", 0).await;
    for (client, _) in crowd.iter_mut() {
        while let Some(Event::Message { .. }) = client.next_event(Duration::from_secs(5)).await {}
    }

    // Every session's pair reached the hook, once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while EventBooks::of(&sink.events()).sessions().count() < SESSIONS
        || crowd
            .iter()
            .any(|(_, w)| !EventBooks::of(&sink.events()).closed(&w.session))
    {
        assert!(
            Instant::now() < deadline,
            "{} events so far",
            sink.events().len()
        );
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    // Long enough for a second deliverer's copies to show, were there one.
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let events: Vec<Value> = sink.events();
    let books = EventBooks::of(&events);
    let wrong: Vec<String> = crowd
        .iter()
        .filter_map(|(_, w)| books.check_closed(&w.session, "closed"))
        .collect();
    println!(
        "{broker:?} x{machines}: {SESSIONS} sessions listed in {list_time:?}; {} events in {} POSTs ({REFUSED} refused), {} repeated",
        events.len(),
        sink.posts(),
        books.repeats
    );
    assert!(
        wrong.is_empty(),
        "{} sessions wrong, e.g. {:?}",
        wrong.len(),
        wrong.first()
    );
    assert_eq!(books.sessions().count(), SESSIONS);
    assert_eq!((books.repeats, books.unpositioned), (0, 0));
    assert_eq!(events.len(), 2 * SESSIONS);
}

#[actix_rt::test]
async fn presence_counts_a_crowd_and_every_event_arrives_once_embedded_broker() {
    presence_counts_a_crowd_and_every_event_arrives_once(BrokerUnderTest::Embedded, 1).await;
}

#[actix_rt::test]
async fn presence_counts_a_crowd_over_two_machines_and_every_event_arrives_once_redis() {
    presence_counts_a_crowd_and_every_event_arrives_once(BrokerUnderTest::Redis, 2).await;
}
