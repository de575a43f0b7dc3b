//! The supervisor, driven as operators and clients drive it: the real binary with real worker
//! processes, real signals (`kill`), the shared Redis on 127.0.0.1:6379 as broker and backend,
//! and Rohrpost clients on the raw websocket that reconnect through `/connect` as browsers do.
//!
//! Each test runs its own supervisor in a temporary directory on a block of ports of its own
//! ([`ports`]); dropping it kills the supervisor and every worker it ran ([`process`]). Tests
//! read the main port through [`main_port`], talk to workers as a [`client`], act as the backend
//! through [`backend`], and [`watch`] rolls and processes. The traffic tests use a [`fleet`] of
//! clients that number their messages, and check with [`checks`] that the backend got every one
//! of them; the crash test's bystander reads [`news`].
//!
//! `ROHRPOST_TEST_LOG=debug` raises the log level of the processes under test; a failed test
//! prints the end of their log and keeps the whole of it as `$TMPDIR/rohrpost-<test>-<pid>.log`.

#[path = "common/mod.rs"]
#[allow(unused_imports)]
mod common;

#[path = "supervisor/backend.rs"]
mod backend;
#[path = "supervisor/checks.rs"]
mod checks;
#[path = "supervisor/client.rs"]
mod client;
#[path = "supervisor/fleet.rs"]
mod fleet;
#[path = "supervisor/forced_closes.rs"]
mod forced_closes;
#[path = "supervisor/main_port.rs"]
mod main_port;
#[path = "supervisor/news.rs"]
mod news;
#[path = "supervisor/ports.rs"]
mod ports;
#[path = "supervisor/process.rs"]
mod process;
#[path = "supervisor/secrets.rs"]
mod secrets;
#[path = "supervisor/session_caps.rs"]
mod session_caps;
#[path = "supervisor/watch.rs"]
mod watch;

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use backend::{unique, Subscriber};
use checks::{assert_grants_deliver, assert_resumed_with_grants, Delivery, GapStats};
use client::{resume_through_connect, Client, Event, SERVICE_RESTART};
use common::{BIN, WAIT};
use fleet::Fleet;
use main_port::{api_restart, cors, get, worker_ws_url, State};
use news::{Bystander, News};
use ports::PortBlock;
use process::{send_signal, Options, Supervisor, API_KEY, DRAIN_TIMEOUT, SETTLE};
use watch::{running_inode, wait_gone, watch_roll};

/// How long a worker may take to be gone once it has no supervisor or is told to stop.
const GONE_WAIT: Duration = Duration::from_secs(DRAIN_TIMEOUT.as_secs() + 2);

#[actix_rt::test]
async fn connect_hands_out_ready_workers_least_loaded_first() {
    let sup = Supervisor::start_ready().await;
    let health = sup.health().await.expect("/health");
    let (w0, w1) = (health.workers[0].clone(), health.workers[1].clone());

    // Three sessions straight on worker 0, counted once its next status report is in.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::new_session(&worker_ws_url(w0.port)).await);
    }
    sup.wait_for("worker 0 reports 3 sessions", |h| {
        h.workers[0].sessions == 3
    })
    .await;

    // Worker 1 is the less loaded one until it has been handed out three times.
    for handed_out in 0..3 {
        let (status, headers, body) = get(&sup.url("/connect"), Some("application/json")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(cors(&headers), Some("*"));
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON handout");
        assert_eq!(
            answer["url"],
            format!("http://127.0.0.1:{}/rohrpost", w1.port)
        );
        assert_eq!(answer["worker"], 1);
        let sessions = answer["sessions"].as_u64().expect("sessions");
        assert!(sessions <= handed_out, "{answer}");
    }

    // Those handouts never connected: once worker 1 reports 0 again, it is still the one.
    sup.wait_for("worker 1 reports 0 sessions, worker 0 still 3", |h| {
        h.workers[1].sessions == 0 && h.workers[0].sessions == 3
    })
    .await;
    let (status, headers, body) = get(&sup.url("/connect"), None).await;
    assert_eq!(status, 200);
    assert_eq!(cors(&headers), Some("*"));
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    assert!(
        content_type.is_some_and(|t| t.starts_with("text/plain")),
        "{content_type:?}"
    );
    assert_eq!(body, format!("http://127.0.0.1:{}/rohrpost", w1.port));
}

#[actix_rt::test]
async fn sessions_that_end_no_longer_count_as_load() {
    let sup = Supervisor::start_ready().await;
    let port = sup.health().await.expect("/health").workers[0].port;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::new_session(&worker_ws_url(port)).await.0);
    }
    sup.wait_for("worker 0 reports 3 sessions", |h| {
        h.workers[0].sessions == 3
    })
    .await;

    // Two leave with a closing handshake, one just drops its connection.
    let dropped = clients.pop().expect("three clients");
    for client in clients {
        client.close().await;
    }
    drop(dropped);
    // Status reports come every second.
    sup.wait_for_within(WAIT, "worker 0 reports 0 sessions", |h| {
        h.workers[0].sessions == 0
    })
    .await;
}

#[actix_rt::test]
#[ignore = "timing-sensitive: passes alone, failed once when run beside the other suites on 2 cores; \
            run with `cargo test --test supervisor -- --ignored`"]
async fn drained_worker_exits_once_its_sessions_are_gone() {
    let sup = Supervisor::start_ready().await;
    let health = sup.health().await.expect("/health");
    let mut clients = Vec::new();
    for worker in &health.workers {
        clients.push(Client::new_session(&worker_ws_url(worker.port)).await.0);
    }

    sup.signal("HUP");
    let signalled_at = Instant::now();
    // Each client answers the 1012 at once, which ends its session on the draining worker.
    for client in &mut clients {
        assert_eq!(
            client.next_event(GONE_WAIT * 2).await,
            Some(Event::Closed(Some(SERVICE_RESTART)))
        );
    }
    sup.wait_for("both workers restarted", |h| h.all_ready_in(2))
        .await;
    let took = signalled_at.elapsed();
    assert!(
        took < DRAIN_TIMEOUT,
        "the roll took {took:?} though every session left at once: a draining worker should \
         exit when its sessions are gone, not wait for workers.drain_timeout ({DRAIN_TIMEOUT:?})"
    );
}

#[actix_rt::test]
async fn killed_worker_comes_back_on_its_port_and_other_workers_clients_see_nothing() {
    let sup = Supervisor::start_ready().await;
    let before = sup.health().await.expect("/health");
    let (w0, w1) = (before.workers[0].clone(), before.workers[1].clone());
    let (mut victim, welcome) = Client::new_session(&worker_ws_url(w0.port)).await;
    let (bystander, _) = Client::new_session(&worker_ws_url(w1.port)).await;

    // The backend publishes numbered news all along; the bystander on worker 1 reads it.
    let topic = format!("anonym.{}.news", unique("crash"));
    let news = News::start(&topic).await;
    let bystander = Bystander::start(bystander, &topic);
    bystander.wait_until_receiving().await;

    send_signal(w0.pid.expect("worker 0 pid"), "KILL");
    let killed_at = Instant::now();
    // The victim reads the news too, until its connection ends.
    loop {
        match victim.next_event(WAIT).await {
            Some(Event::Closed(_)) => break,
            Some(Event::Message { .. }) => {}
            None => panic!("the killed worker's client: connection still open after {WAIT:?}"),
        }
        assert!(
            killed_at.elapsed() < WAIT,
            "the killed worker's client: still open"
        );
    }
    let (_client, again) = resume_through_connect(sup.ports.main, &welcome.resume, SETTLE)
        .await
        .unwrap_or_else(|e| panic!("the killed worker's client: {e}"));
    assert!(again.resumed, "{again:?}");
    assert_eq!(again.session, welcome.session);

    let after = sup
        .wait_for("worker 0 back", |h| {
            h.workers[0].generation == 2 && h.workers[0].state == State::Ready
        })
        .await;
    assert_eq!(after.workers[0].port, w0.port, "same port");
    assert_ne!(after.workers[0].pid, w0.pid, "a new process");
    assert_eq!(after.counters.crashes, 1);
    assert_eq!(after.counters.restarts, 1);
    assert_eq!(after.workers[1].pid, w1.pid, "worker 1 untouched");
    assert_eq!(after.workers[1].generation, 1, "worker 1 untouched");

    // Some more news with worker 0 back, then: the bystander got every item, in order.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let last = news.stop().await;
    let seen = bystander.stop_after(last).await;
    assert!(!seen.closed, "the bystander's websocket closed");
    let first = seen.seqs[0];
    let expected: Vec<u64> = (first..=last).collect();
    assert_eq!(seen.seqs, expected, "news the bystander received");
}

#[actix_rt::test]
async fn staged_restart_under_traffic_loses_nothing() {
    const SESSIONS: usize = 200;
    let sup = Supervisor::start_ready().await;
    let namespace = unique("roll");
    let fleet = Fleet::open(sup.ports.main, &namespace, SESSIONS).await;
    let mut per_worker: HashMap<Option<usize>, usize> = HashMap::new();
    for member in &fleet.members {
        *per_worker.entry(member.worker).or_default() += 1;
    }
    assert!(
        [Some(0), Some(1)]
            .iter()
            .all(|w| per_worker.get(w).is_some_and(|&n| n >= SESSIONS / 4)),
        "sessions spread over both workers: {per_worker:?}"
    );
    let sessions = fleet.sessions();
    let mut subscriber = Subscriber::to(&fleet.traffic_topic()).await;
    let traffic = fleet.start_traffic();

    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let rolled_at = Instant::now();
    sup.signal("HUP");
    let polls = watch_roll(&sup).await;
    let roll_time = rolled_at.elapsed();
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let mut outcomes = traffic.stop().await;

    assert_resumed_with_grants(&outcomes, &namespace);
    assert_grants_deliver(&mut outcomes, &namespace).await;
    let delivery = Delivery::collect(&mut subscriber, &outcomes, &sessions).await;
    let expected = delivery.assert_complete(&outcomes);
    let (duplicated, extra) = delivery.duplicates();
    let gaps = GapStats::of(&outcomes);
    eprintln!(
        "staged restart under traffic: {SESSIONS} sessions ({per_worker:?}), roll {roll_time:?} \
         ({polls} polls of /connect and /health), {expected} numbered messages, \
         {duplicated} duplicated ({extra} extra copies), {} overtaken by a later one; \
         {} reconnects, gap median {:?}, p99 {:?}, max {:?}",
        delivery.reordered, gaps.reconnects, gaps.median, gaps.p99, gaps.max
    );
    // A client never re-sends what its websocket took, so a copy could only come from the server:
    // delivery to the backend is exactly once.
    assert_eq!(duplicated, 0, "messages the backend got more than once");
}

#[actix_rt::test]
async fn binary_upgrade_by_replacing_the_executable() {
    let options = Options {
        own_binary: true,
        ..Options::default()
    };
    let sup = Supervisor::start(options, PortBlock::find(2)).await;
    let before = sup
        .wait_for("every worker ready", |h| h.all_ready_in(1))
        .await;
    // The "new build", staged next to the running binary.
    let exe = sup.dir().join("rohrpost");
    let staged = sup.dir().join("rohrpost.new");
    std::fs::copy(BIN, &staged).expect("stage the new binary");

    let namespace = unique("upgrade");
    let fleet = Fleet::open(sup.ports.main, &namespace, 20).await;
    let sessions = fleet.sessions();
    let mut subscriber = Subscriber::to(&fleet.traffic_topic()).await;
    let traffic = fleet.start_traffic();

    // Install it as `mv` would: the new file renamed over the old one.
    std::fs::rename(&staged, &exe).expect("rename it over the running one");
    let new_inode = std::fs::metadata(&exe).expect("the new binary").ino();
    for pid in before.pids() {
        assert_ne!(
            running_inode(pid),
            new_inode,
            "worker {pid} runs the old file"
        );
    }

    sup.signal("HUP");
    let after = sup
        .wait_for("every worker restarted", |h| h.all_ready_in(2))
        .await;
    for worker in &after.workers {
        let pid = worker.pid.expect("a running worker has a pid");
        assert!(
            !before.pids().contains(&pid),
            "worker {} is a new process",
            worker.index
        );
        assert_eq!(
            running_inode(pid),
            new_inode,
            "worker {} runs the new file",
            worker.index
        );
    }
    assert_ne!(
        running_inode(sup.pid()),
        new_inode,
        "the supervisor itself stays"
    );

    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let mut outcomes = traffic.stop().await;
    assert_resumed_with_grants(&outcomes, &namespace);
    assert_grants_deliver(&mut outcomes, &namespace).await;
    let delivery = Delivery::collect(&mut subscriber, &outcomes, &sessions).await;
    delivery.assert_complete(&outcomes);
    sup.wait_for("all 20 sessions on the new workers", |h| {
        h.workers.iter().map(|w| w.sessions).sum::<usize>() == outcomes.len()
    })
    .await;
}

#[actix_rt::test]
async fn supervisor_killed_leaves_no_worker_behind() {
    let mut sup = Supervisor::start_ready().await;
    let workers = sup.health().await.expect("/health").pids();
    let handout = sup.handout().await.expect("/connect");
    let (mut client, _) = Client::new_session(&handout.ws_url()).await;

    sup.signal("KILL");
    let killed_at = Instant::now();
    sup.wait_exit(WAIT).await;
    assert_eq!(
        client.next_event(GONE_WAIT).await,
        Some(Event::Closed(Some(SERVICE_RESTART))),
        "the orphaned worker drains its sessions"
    );
    wait_gone(&sup, &workers, killed_at + GONE_WAIT).await;
}

#[actix_rt::test]
async fn sigterm_drains_and_exits_zero() {
    let mut sup = Supervisor::start_ready().await;
    let workers = sup.health().await.expect("/health").pids();
    let handout = sup.handout().await.expect("/connect");
    let (mut client, _) = Client::new_session(&handout.ws_url()).await;

    sup.signal("TERM");
    let signalled_at = Instant::now();
    assert_eq!(
        client.next_event(GONE_WAIT).await,
        Some(Event::Closed(Some(SERVICE_RESTART))),
        "sessions are drained"
    );
    let status = sup.wait_exit(GONE_WAIT + WAIT).await;
    assert_eq!(status.code(), Some(0), "{status}");
    wait_gone(&sup, &workers, signalled_at + GONE_WAIT).await;
}

#[actix_rt::test]
async fn api_restart_needs_the_key() {
    let sup = Supervisor::start_ready().await;
    for authorization in [None, Some("Bearer wrong-key"), Some(API_KEY)] {
        assert_eq!(
            api_restart(&sup, authorization).await,
            401,
            "{authorization:?}"
        );
    }
    let health = sup.health().await.expect("/health");
    assert_eq!(health.counters.rolls, 0, "refused calls start nothing");
    assert!(health.all_ready_in(1));

    assert_eq!(
        api_restart(&sup, Some(&format!("Bearer {API_KEY}"))).await,
        202
    );
    let after = sup.wait_for("a roll", |h| h.all_ready_in(2)).await;
    assert_eq!(after.counters.rolls, 1);
    assert_eq!(after.counters.drains, 2, "one drain per worker");
}

#[actix_rt::test]
async fn crashing_worker_is_given_up_after_max_restarts() {
    let ports = PortBlock::find(2);
    // Worker 1 cannot bind its port: it exits at once, every time.
    let _taken = TcpListener::bind(("127.0.0.1", ports.worker(1))).expect("hold worker 1's port");
    let options = Options {
        max_restarts: 2,
        restart_window: "30s",
        ..Options::default()
    };
    let mut sup = Supervisor::start(options, ports).await;
    let health = sup
        .wait_for("worker 1 given up, worker 0 ready", |h| {
            h.workers[1].state == State::Failed && h.workers[0].state == State::Ready
        })
        .await;
    assert_eq!(health.counters.crashes, 3, "max_restarts + 1 failures");
    assert_eq!(health.counters.restarts, 2);
    assert_eq!(health.workers[1].generation, 3, "started three times");
    assert!(
        sup.log().contains("WORKER GIVEN UP index=1"),
        "{}",
        sup.log()
    );

    for _ in 0..5 {
        let handout = sup.handout().await.expect("/connect");
        assert_eq!(
            handout.worker,
            Some(0),
            "only the ready worker is handed out"
        );
    }
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let later = sup.health().await.expect("/health");
    assert_eq!(later.workers[1].state, State::Failed, "given up for good");
    assert_eq!(later.workers[1].generation, 3, "not started again");
    assert!(sup.exited().is_none(), "one worker still runs: no exit");
}

#[actix_rt::test]
async fn supervisor_exits_non_zero_when_no_worker_can_run() {
    let ports = PortBlock::find(1);
    let _taken = TcpListener::bind(("127.0.0.1", ports.worker(0))).expect("hold the worker port");
    let options = Options {
        workers: 1,
        max_restarts: 1,
        restart_window: "30s",
        ..Options::default()
    };
    let mut sup = Supervisor::start(options, ports).await;
    let status = sup.wait_exit(SETTLE).await;
    assert_ne!(status.code(), Some(0), "{status}");
    let log = sup.log();
    assert!(log.contains("WORKER GIVEN UP index=0"), "{log}");
    assert!(log.contains("no worker can run"), "{log}");
}

#[actix_rt::test]
async fn connect_answers_503_until_a_worker_is_ready() {
    let ports = PortBlock::find(1);
    let taken = TcpListener::bind(("127.0.0.1", ports.worker(0))).expect("hold the worker port");
    let options = Options {
        workers: 1,
        max_restarts: 100,
        ..Options::default()
    };
    let sup = Supervisor::start(options, ports).await;
    let (status, headers, _) = get(&sup.url("/connect"), Some("application/json")).await;
    assert_eq!(status, 503);
    assert_eq!(cors(&headers), Some("*"));
    let (status, _, body) = get(&sup.url("/health"), None).await;
    assert_eq!(status, 503, "{body}");

    // The port frees up: the worker, restarted with backoff, comes up there.
    drop(taken);
    sup.wait_for("worker 0 ready", |h| h.workers[0].state == State::Ready)
        .await;
    let handout = sup.handout().await.expect("/connect");
    assert_eq!(handout.worker, Some(0));
    assert_eq!(handout.sessions, 0);
    assert_eq!(
        handout.url,
        format!("http://127.0.0.1:{}/rohrpost", ports.worker(0))
    );
}
