//! The event hook's failover: two supervisors share Redis; the one that POSTs the events is
//! killed (SIGKILL) and sessions end while no supervisor delivers. The other one takes the
//! lease over, reads the log from where the first one stopped, and the hook gets every
//! session's pair, nothing lost.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::books::EventBooks;
use crate::client::{Client, Event, Welcome};
use crate::main_port::handout;
use crate::process::send_signal;
use crate::sink::Sink;
use crate::system::{BrokerUnderTest, System};

const SESSIONS: usize = 20;

/// Waits until `done(books)` holds; fails after `within` with what the hook has.
async fn wait_books(sink: &Sink, within: Duration, done: impl Fn(&EventBooks) -> bool) {
    let deadline = Instant::now() + within;
    while !done(&EventBooks::of(&sink.events())) {
        assert!(
            Instant::now() < deadline,
            "events so far: {:?}",
            sink.events()
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn the_next_supervisor_delivers_what_came_while_the_last_one_died_redis() {
    let sink = Sink::start(0);
    let system = System::start(BrokerUnderTest::Redis, 2, &sink).await;
    // The deliverer holds the lease under its pid.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let holder = system.redis_get("rohrpost:events:deliverer").await;
        let pid = holder.and_then(|h| h.split(':').next()?.parse::<u32>().ok());
        if let Some(index) = system.sups.iter().position(|s| Some(s.pid()) == pid) {
            break index;
        }
        assert!(
            Instant::now() < deadline,
            "no supervisor holds the deliverer's lease"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    };
    let survivor = &system.sups[1 - leader];
    let mut sessions: Vec<(Client, Welcome)> = Vec::new();
    for _ in 0..SESSIONS {
        let worker = handout(survivor.ports.main).await.expect("/connect");
        sessions.push(Client::new_session(&worker.ws_url()).await);
    }
    let ids: Vec<String> = sessions.iter().map(|(_, w)| w.session.clone()).collect();
    wait_books(&sink, Duration::from_secs(10), |b| {
        ids.iter().all(|id| b.check_open(id).is_none())
    })
    .await;

    send_signal(system.sups[leader].pid(), "KILL");
    for (client, _) in &mut sessions {
        client
            .send_json(&json!({"bye": 1}))
            .await
            .expect("goodbye sent");
    }
    for (client, _) in &mut sessions {
        while let Some(Event::Message { .. }) = client.next_event(Duration::from_secs(5)).await {}
    }
    wait_books(&sink, Duration::from_secs(20), |b| {
        ids.iter().all(|id| b.closed(id))
    })
    .await;
    let books = EventBooks::of(&sink.events());
    let wrong: Vec<String> = (ids.iter())
        .filter_map(|id| books.check_closed(id, "closed"))
        .collect();
    println!(
        "failover: {SESSIONS} sessions ended while the deliverer was gone; {} events, {} repeated",
        sink.events().len(),
        books.repeats
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(books.unpositioned, 0);
}
