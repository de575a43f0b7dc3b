//! One session per way a session can end — or seem to and not — on each broker, counted at the
//! event hook: a goodbye, a close without goodbye, a connection that vanishes, a kick, a
//! takeover, a staged restart, a worker killed with SIGKILL under two sessions of which one
//! comes back. Each session must get exactly one `session.opened` and, once it is over,
//! exactly one `session.closed` with the reason of its end — and the sessions that lived
//! through the restart, the takeover and the kill no `session.closed` until they said goodbye.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::books::EventBooks;
use crate::client::{resume_through_connect, Client, Event, Received, Welcome};
use crate::main_port::{handout, State};
use crate::process::{send_signal, SETTLE};
use crate::sink::Sink;
use crate::system::{api, count, BrokerUnderTest, System, GRACE};

/// Sessions that live through the staged restart.
const ROLLING: usize = 6;

/// A new session through `/connect`.
async fn open(main_port: u16) -> (Client, Welcome) {
    let worker = handout(main_port).await.expect("/connect");
    Client::new_session(&worker.ws_url()).await
}

/// Says goodbye and expects the server's close 1000.
async fn bye(mut client: Client) {
    client
        .send_json(&json!({"bye": 1}))
        .await
        .expect("goodbye sent");
    let closed = loop {
        match client.next_event(Duration::from_secs(5)).await {
            Some(Event::Message { .. }) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(closed, Some(Event::Closed(Some(1000)))),
        "{closed:?}"
    );
}

/// Waits until the hook has a `session.closed` of every session of `ended`; fails after
/// `within`, showing what it has.
async fn wait_closed(sink: &Sink, ended: &[(String, &str)], within: Duration) {
    let deadline = Instant::now() + within;
    while ended
        .iter()
        .any(|(id, _)| !EventBooks::of(&sink.events()).closed(id))
    {
        assert!(
            Instant::now() < deadline,
            "events so far: {:?}",
            sink.events()
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keeps `client` (session `welcome`) connected through whatever closes it, resuming through
/// `/connect` each time, until `done` is set; answers the client and every session id it got.
async fn follow(
    main_port: u16,
    mut client: Client,
    welcome: Welcome,
    done: Rc<Cell<bool>>,
) -> (Client, Vec<String>) {
    let mut ids = vec![welcome.session.clone()];
    loop {
        match client.next_event(Duration::from_millis(200)).await {
            Some(Event::Closed(_)) => {
                let (again, resumed) = resume_through_connect(main_port, &welcome.resume, SETTLE)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                ids.push(resumed.session);
                client = again;
            }
            Some(Event::Message { .. }) => {}
            None if done.get() => return (client, ids),
            None => {}
        }
    }
}

async fn every_session_opens_once_and_closes_once_for_its_reason(broker: BrokerUnderTest) {
    let sink = Sink::start(0);
    let system = System::start(broker, 1, &sink).await;
    let main = system.main_port();
    let sup = &system.sups[0];
    let mut expected_closed: Vec<(String, &str)> = Vec::new();

    // SIGKILL under two sessions of worker 0: one comes back elsewhere within the grace (no
    // event), the other does not (expired).
    let health = sup.health().await.expect("/health");
    let (port0, victim) = (
        health.workers[0].port,
        health.workers[0].pid.expect("worker 0"),
    );
    let ws0 = format!("ws://127.0.0.1:{port0}/rohrpost/websocket");
    let (mut g, wg) = Client::new_session(&ws0).await;
    let (h, wh) = Client::new_session(&ws0).await;
    send_signal(victim, "KILL");
    while let Some(Event::Message { .. }) = g.next_event(Duration::from_secs(5)).await {}
    let (g, wg2) = resume_through_connect(main, &wg.resume, SETTLE)
        .await
        .expect("resumed after the kill");
    assert!(wg2.resumed && wg2.session == wg.session, "{wg2:?}");
    drop(h);
    expected_closed.push((wh.session.clone(), "expired"));
    sup.wait_for("worker 0 back", |h| {
        h.workers[0].generation == 2 && h.workers[0].state == State::Ready
    })
    .await;

    // A goodbye ends the session at once.
    let (a, wa) = open(main).await;
    let entry = api(main, "GET", &format!("/api/sessions/{}", wa.session), None).await;
    assert_eq!(entry.status, 200, "{}", entry.body);
    assert_eq!(entry.body["connected"], true);
    assert_eq!(entry.body["whitelist"], json!(["anonym.*"]));
    assert!(entry.body["worker"]
        .as_str()
        .is_some_and(|w| w.starts_with("http://127.0.0.1:")));
    bye(a).await;
    expected_closed.push((wa.session.clone(), "closed"));

    // A close frame without goodbye, and a connection that just vanishes: the grace runs out.
    let (b, wb) = open(main).await;
    b.close().await;
    expected_closed.push((wb.session.clone(), "expired"));
    let (e, we) = open(main).await;
    drop(e);
    expected_closed.push((we.session.clone(), "expired"));

    // A kick: the connection closes with 4005 and the kick's reason, and may not resume.
    let (mut c, wc) = open(main).await;
    let path = format!("/api/sessions/{}", wc.session);
    let kicked = api(main, "DELETE", &path, Some(json!({"reason": "spam"}))).await;
    assert_eq!(kicked.status, 200, "{}", kicked.body);
    let close = loop {
        match c.next_envelope(Duration::from_secs(5)).await {
            Some(Received::Envelope(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(close, Some(Received::Closed(Some((4005, "spam".into())))));
    assert_eq!(api(main, "DELETE", &path, None).await.status, 404);
    assert_eq!(
        api(main, "POST", &path, Some(json!({"data": 1})))
            .await
            .status,
        404
    );
    let (after_kick, fresh) = resume_through_connect(main, &wc.resume, SETTLE)
        .await
        .expect("a hello after the kick");
    assert!(!fresh.resumed && fresh.session != wc.session, "{fresh:?}");
    expected_closed.push((wc.session.clone(), "kicked"));

    // A takeover moves the session to the new connection: no event.
    let (mut d1, wd) = open(main).await;
    let (d2, wd2) = resume_through_connect(main, &wd.resume, SETTLE)
        .await
        .expect("resumed");
    assert!(wd2.resumed && wd2.session == wd.session);
    let taken = loop {
        match d1.next_event(Duration::from_secs(5)).await {
            Some(Event::Message { .. }) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(taken, Some(Event::Closed(Some(4001)))),
        "{taken:?}"
    );

    // The server API: a message for a live session is taken, for an unknown one 404.
    let live = api(
        main,
        "POST",
        &format!("/api/sessions/{}", wd.session),
        Some(json!({"data": 1})),
    )
    .await;
    assert_eq!(live.status, 202, "{}", live.body);
    let unknown = api(
        main,
        "POST",
        "/api/sessions/no-such-session",
        Some(json!({"data": 1})),
    )
    .await;
    assert_eq!(unknown.status, 404);

    // A staged restart: every session moves, none ends (those above that live included).
    let mut rolling = vec![(after_kick, fresh), (d2, wd2), (g, wg2)];
    for _ in 0..ROLLING {
        rolling.push(open(main).await);
    }
    let done = Rc::new(Cell::new(false));
    let followers: Vec<_> = rolling
        .into_iter()
        .map(|(client, welcome)| follow(main, client, welcome, done.clone()))
        .collect();
    let roll = async {
        let started = api(main, "POST", "/api/restart", None).await;
        assert_eq!(started.status, 202);
        sup.wait_for("the roll done", |h| {
            h.counters.drains >= 2 && !h.rolling && h.ready() == h.workers.len()
        })
        .await;
        done.set(true);
    };
    let (followed, ()) =
        futures_util::future::join(futures_util::future::join_all(followers), roll).await;
    let mut survivors = Vec::new();
    for (client, ids) in followed {
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "one session throughout: {ids:?}"
        );
        survivors.push((client, ids[0].clone()));
    }

    // Everything that lives is listed and has no session.closed yet.
    wait_closed(&sink, &expected_closed, GRACE * 2 + Duration::from_secs(5)).await;
    let books = EventBooks::of(&sink.events());
    let mut wrong: Vec<String> = survivors
        .iter()
        .filter_map(|(_, id)| books.check_open(id))
        .collect();
    assert!(wrong.is_empty(), "while they live: {wrong:#?}");
    assert_eq!(count(main, "anonym.x").await, survivors.len() as u64);

    // Goodbyes all round: every session has its pair.
    for (client, id) in survivors {
        bye(client).await;
        expected_closed.push((id, "closed"));
    }
    wait_closed(&sink, &expected_closed, Duration::from_secs(10)).await;
    // Nothing more comes once the grace of every session has passed.
    actix_rt::time::sleep(GRACE + Duration::from_secs(1)).await;
    let events = sink.events();
    let books = EventBooks::of(&events);
    wrong.extend(
        expected_closed
            .iter()
            .filter_map(|(id, reason)| books.check_closed(id, reason)),
    );
    let made: Vec<&String> = expected_closed.iter().map(|(id, _)| id).collect();
    let strangers: Vec<&String> = books.sessions().filter(|id| !made.contains(id)).collect();
    println!(
        "{broker:?}: {} sessions, {} events in {} POSTs, {} repeated",
        made.len(),
        events.len(),
        sink.posts(),
        books.repeats
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(
        strangers.is_empty(),
        "events of sessions the test never made: {strangers:?}"
    );
    assert_eq!((books.repeats, books.unpositioned), (0, 0));
    assert_eq!(count(main, "anonym.x").await, 0, "nothing listed");
}

#[actix_rt::test]
async fn every_session_opens_once_and_closes_once_for_its_reason_embedded_broker() {
    every_session_opens_once_and_closes_once_for_its_reason(BrokerUnderTest::Embedded).await;
}

#[actix_rt::test]
async fn every_session_opens_once_and_closes_once_for_its_reason_redis() {
    every_session_opens_once_and_closes_once_for_its_reason(BrokerUnderTest::Redis).await;
}
