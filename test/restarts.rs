//! The supervisor under crashes, staged restarts, upgrades and signals, through the real binary:
//! real worker processes, real signals, the shared Redis on 127.0.0.1:6379 as the broker (so
//! the test can watch what clients publish), and Rohrpost clients on the raw websocket.

#[allow(unused_imports)]
mod common;
#[path = "supervisor/ports.rs"]
#[allow(dead_code)]
mod ports;

#[path = "messaging/broker.rs"]
#[allow(dead_code)]
mod broker;
#[path = "messaging/client.rs"]
#[allow(dead_code)]
mod client;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use broker::{unique, Redis, Subscription, REDIS_URL};
use client::{Client, Event, Welcome};

/// A supervisor process; on drop it and every worker it started are killed.
struct Supervisor {
    child: Child,
    main_port: u16,
    pids: Rc<RefCell<HashSet<u32>>>,
    dir: tempfile::TempDir,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.pids.borrow().iter() {
            signal(*pid, "KILL");
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// A main port with two free ports after it, below the ephemeral range (see `ports`).
fn free_block() -> u16 {
    ports::PortBlock::find(2).main
}

impl Supervisor {
    /// Starts `exe` (default: the test binary) as a supervisor of two workers.
    async fn start(namespace: &str, exe: Option<PathBuf>, dir: tempfile::TempDir) -> Supervisor {
        let main_port = free_block();
        let config = format!(
            r#"[http]
host = "127.0.0.1"
host_external = "127.0.0.1"
main_port = {main_port}
worker_base_port = {workers}
static_dir = ""
[workers]
count = 2
drain_timeout = "5s"
[sessions]
secret = "restart-test-secret"
default_whitelist = ["{namespace}.*"]
[broker]
kind = "redis"
redis_url = "{REDIS_URL}"
[api]
key = "test-key"
"#,
            workers = main_port + 1
        );
        std::fs::write(dir.path().join("rohrpost.toml"), config).unwrap();
        let exe = exe.unwrap_or_else(|| PathBuf::from(common::BIN));
        let child = Command::new(exe)
            .args(["--config", "rohrpost.toml"])
            .current_dir(dir.path())
            .env_remove("ROHRPOST_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let supervisor = Supervisor {
            child,
            main_port,
            pids: Rc::default(),
            dir,
        };
        supervisor
            .wait_until("both workers ready", |h| ready(h) == 2)
            .await;
        supervisor
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.main_port, path)
    }

    async fn health(&self) -> Option<Value> {
        let mut res = client::http().get(self.url("/health")).send().await.ok()?;
        let health: Value = res.json().await.ok()?;
        for w in health["workers"].as_array().into_iter().flatten() {
            if let Some(pid) = w["pid"].as_u64() {
                self.pids.borrow_mut().insert(pid as u32);
            }
        }
        Some(health)
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(h) = self.health().await {
                if done(&h) {
                    return h;
                }
            }
            assert!(
                Instant::now() < deadline,
                "supervisor: {what} not reached in 30 s"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The worker URL `/connect` hands out, as a raw-websocket URL, with the worker's port.
    async fn connect(&self) -> (String, u16) {
        let mut res = client::http()
            .get(self.url("/connect"))
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .expect("/connect answers");
        let answer: Value = res.json().await.expect("/connect JSON");
        let url = answer["url"].as_str().expect("url").to_string();
        let port = url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        (
            format!("{}/websocket", url.replacen("http://", "ws://", 1)),
            port,
        )
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn ready(health: &Value) -> usize {
    health["workers"]
        .as_array()
        .map_or(0, |ws| ws.iter().filter(|w| w["state"] == "ready").count())
}

fn worker_field(health: &Value, index: usize, field: &str) -> Value {
    health["workers"][index][field].clone()
}

/// Grants `pattern` and session data to a session through the server API.
async fn grant(supervisor: &Supervisor, session: &str, pattern: &str, data: Value) {
    let res = client::http()
        .post(supervisor.url(&format!("/api/sessions/{session}")))
        .insert_header(("Authorization", "Bearer test-key"))
        .send_json(&json!({"add": [pattern], "sessionData": data, "data": "granted"}))
        .await
        .expect("server API answers");
    assert_eq!(res.status(), 202);
}

#[actix_rt::test]
async fn killed_worker_comes_back_its_clients_resume_and_other_clients_see_nothing() {
    let namespace = unique("restart");
    let sup = Supervisor::start(&namespace, None, tempfile::tempdir().unwrap()).await;
    let health = sup.health().await.unwrap();
    let port0 = worker_field(&health, 0, "port").as_u64().unwrap() as u16;
    let pid0 = worker_field(&health, 0, "pid").as_u64().unwrap() as u32;

    // A client on worker 1 (straight to its port).
    let port1 = worker_field(&health, 1, "port").as_u64().unwrap();
    let mut bystander =
        Client::connect(&format!("ws://127.0.0.1:{port1}/rohrpost/websocket")).await;
    bystander.hello().await;
    let topic = format!("{namespace}.news");
    let mut redis = Redis::shared().await;
    broker::settle(&mut redis, &mut bystander, &topic).await;

    // And a client on worker 0, the one about to be killed.
    let mut victim = Client::connect(&format!("ws://127.0.0.1:{port0}/rohrpost/websocket")).await;
    let victim_welcome = victim.hello().await;

    signal(pid0, "KILL");
    // Its client sees the connection go, comes back through /connect and resumes its session.
    match victim.next_event(Duration::from_secs(5)).await {
        Some(Event::Closed(_)) => {}
        other => panic!("expected the killed worker's connection to end, got {other:?}"),
    }
    let after = sup
        .wait_until("worker 0 back", |h| {
            worker_field(h, 0, "generation") == 2 && worker_field(h, 0, "state") == "ready"
        })
        .await;
    assert_eq!(
        worker_field(&after, 0, "port").as_u64().unwrap() as u16,
        port0
    );
    assert_ne!(
        worker_field(&after, 0, "pid").as_u64().unwrap() as u32,
        pid0
    );
    assert_eq!(after["counters"]["crashes"], 1);
    // (/connect could still name the dead worker in the instant before the supervisor notices;
    // a real client retries, the test simply reconnects once the worker is back.)
    let (url, _) = sup.connect().await;
    let mut victim = Client::connect(&url).await;
    let again = victim.resume(&victim_welcome.resume).await;
    assert!(again.resumed, "the killed worker's client resumes");
    assert_eq!(again.session, victim_welcome.session);

    // The bystander noticed nothing: still connected, still receiving, nothing in between.
    redis.publish(&topic, &json!({"data": "still here"})).await;
    loop {
        let (t, data) = bystander.recv().await;
        if data == json!("still here") {
            assert_eq!(t, topic);
            break;
        }
        assert!(
            data.get("probe").is_some() || data.get("fence").is_some(),
            "{data}"
        );
    }
}

/// One client of the traffic test: its session, what it sent, and its reconnect gaps.
struct Traffic {
    client: u64,
    welcome: Welcome,
    sent: u32,
    gaps: Vec<Duration>,
    resumed_ok: bool,
}

#[actix_rt::test]
async fn staged_restart_under_traffic_loses_nothing() {
    const CLIENTS: usize = 200;
    const SEND_EVERY: Duration = Duration::from_millis(100);
    let namespace = unique("roll");
    let sup = Rc::new(Supervisor::start(&namespace, None, tempfile::tempdir().unwrap()).await);
    let traffic_topic = format!("{namespace}.traffic");
    let mut seen = Subscription::to(&traffic_topic).await;

    // Open the sessions through /connect and have the backend grant each one a pattern and data.
    let mut clients = Vec::new();
    let mut redis = Redis::shared().await;
    for i in 0..CLIENTS {
        let (url, _) = sup.connect().await;
        let mut c = Client::connect(&url).await;
        let welcome = c.hello().await;
        // Subscriptions are made just after the welcome: wait until the direct topic is live.
        broker::settle(&mut redis, &mut c, &welcome.direct_topic()).await;
        grant(
            &sup,
            &welcome.session,
            &format!("granted.{namespace}.{i}.*"),
            json!({"n": i}),
        )
        .await;
        c.expect_topic(&welcome.direct_topic()).await;
        clients.push((c, welcome));
    }
    let per_port: HashMap<u16, usize> = {
        let h = sup.health().await.unwrap();
        h["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["port"].as_u64().unwrap() as u16,
                    w["sessions"].as_u64().unwrap() as usize,
                )
            })
            .collect()
    };
    assert!(
        per_port.values().all(|&n| n > 0),
        "sessions on both workers: {per_port:?}"
    );

    // Every client sends a numbered message every 100 ms for 8 s, queueing while reconnecting.
    let stop_at = Instant::now() + Duration::from_secs(8);
    let results: Rc<RefCell<Vec<Traffic>>> = Rc::default();
    let mut tasks = Vec::new();
    for (i, (mut c, welcome)) in clients.into_iter().enumerate() {
        let sup = sup.clone();
        let topic = traffic_topic.clone();
        let granted = format!("granted.{namespace}.{i}.*");
        let results = results.clone();
        tasks.push(actix_rt::spawn(async move {
            let mut t = Traffic {
                client: i as u64,
                welcome: welcome.clone(),
                sent: 0,
                gaps: Vec::new(),
                resumed_ok: true,
            };
            let mut next_send = Instant::now();
            while Instant::now() < stop_at {
                if Instant::now() >= next_send {
                    t.sent += 1;
                    c.publish(&topic, json!({"client": i, "seq": t.sent})).await;
                    next_send += SEND_EVERY;
                }
                let wait = next_send.saturating_duration_since(Instant::now());
                if let Some(Event::Closed(reason)) = c.next_event(wait).await {
                    let closed_at = Instant::now();
                    let code = reason.map(|r| u16::from(r.code));
                    assert_eq!(code, Some(1012), "client {i} closed with {code:?}");
                    let (url, _) = sup.connect().await;
                    c = Client::connect(&url).await;
                    let again = c.resume(&t.welcome.resume).await;
                    t.gaps.push(closed_at.elapsed());
                    t.resumed_ok &= again.resumed
                        && again.session == t.welcome.session
                        && again.whitelist.contains(&granted);
                }
            }
            results.borrow_mut().push(t);
        }));
    }

    // Roll while traffic flows; /connect must never hand out a draining worker, and at least
    // one worker must be ready at every moment.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    signal(sup.pid(), "HUP");
    let roll_deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let h = sup.health().await.expect("/health answers during the roll");
        assert!(ready(&h) >= 1, "ready workers fell below count - 1: {h}");
        let (_, port) = sup.connect().await;
        let draining: Vec<u16> = h["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["state"] == "draining")
            .map(|w| w["port"].as_u64().unwrap() as u16)
            .collect();
        assert!(
            !draining.contains(&port),
            "/connect handed out draining worker {port}"
        );
        let rolled = (0..2).all(|i| worker_field(&h, i, "generation") == 2);
        if rolled && ready(&h) == 2 {
            break;
        }
        assert!(
            Instant::now() < roll_deadline,
            "staged restart did not finish: {h}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    for task in tasks {
        task.await.expect("client task");
    }

    // Every numbered message of every client arrived (at least once), none missing.
    let results = std::mem::take(&mut *results.borrow_mut());
    let expected: usize = results.iter().map(|t| t.sent as usize).sum();
    let mut got: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let collect_deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < expected && Instant::now() < collect_deadline {
        let Some(payload) = seen.next_json_within(Duration::from_secs(3)).await else {
            break;
        };
        assert_eq!(payload["fromClient"], true);
        let client = payload["data"]["client"].as_u64().unwrap();
        let seq = payload["data"]["seq"].as_u64().unwrap();
        // Data granted by the backend travels with every message, before and after the roll.
        assert_eq!(payload["sessionData"], json!({"n": client}));
        *got.entry((client, seq)).or_default() += 1;
    }
    let missing: Vec<(u64, u64)> = results
        .iter()
        .flat_map(|t| {
            let client = t.client;
            (1..=u64::from(t.sent)).map(move |seq| (client, seq))
        })
        .filter(|k| !got.contains_key(k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {expected} client messages missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let duplicates = got.values().filter(|&&n| n > 1).count();
    assert!(
        results.iter().all(|t| t.resumed_ok),
        "every session resumed with its whitelist"
    );

    let mut gaps: Vec<Duration> = results.iter().flat_map(|t| t.gaps.clone()).collect();
    gaps.sort();
    assert!(
        gaps.len() >= CLIENTS,
        "every client reconnected at least once: {}",
        gaps.len()
    );
    let median = gaps[gaps.len() / 2];
    let p99 = gaps[(gaps.len() * 99 / 100).min(gaps.len() - 1)];
    eprintln!(
        "staged restart: {CLIENTS} sessions, {expected} messages, {duplicates} duplicates, \
         {} reconnects, gap median {median:?} p99 {p99:?}",
        gaps.len()
    );
}

#[actix_rt::test]
async fn binary_upgrade_by_replacing_the_executable() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("rohrpost");
    std::fs::copy(common::BIN, &exe).unwrap();
    let namespace = unique("upgrade");
    let sup = Supervisor::start(&namespace, Some(exe.clone()), dir).await;
    let before = sup.health().await.unwrap();
    let old: Vec<u64> = (0..2)
        .map(|i| worker_field(&before, i, "pid").as_u64().unwrap())
        .collect();

    // A session that must survive the upgrade.
    let (url, _) = sup.connect().await;
    let mut c = Client::connect(&url).await;
    let welcome = c.hello().await;

    // Replace the file the supervisor runs (a new inode, as `mv` of a new build does).
    let staged = sup.dir.path().join("rohrpost.new");
    std::fs::copy(common::BIN, &staged).unwrap();
    std::fs::rename(&staged, &exe).unwrap();
    signal(sup.pid(), "HUP");
    let after = sup
        .wait_until("every worker restarted", |h| {
            (0..2).all(|i| worker_field(h, i, "generation") == 2) && ready(h) == 2
        })
        .await;
    for i in 0..2 {
        let pid = worker_field(&after, i, "pid").as_u64().unwrap();
        assert!(!old.contains(&pid), "worker {i} is a new process");
        let running = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(
            running, exe,
            "worker {i} runs the replaced file (not a deleted one)"
        );
    }
    // The session was told to reconnect and resumes.
    match c.next_event(Duration::from_secs(10)).await {
        Some(Event::Closed(Some(reason))) => assert_eq!(u16::from(reason.code), 1012),
        other => panic!("expected close 1012, got {other:?}"),
    }
    let (url, _) = sup.connect().await;
    let mut c = Client::connect(&url).await;
    let again = c.resume(&welcome.resume).await;
    assert!(again.resumed);
    assert_eq!(again.session, welcome.session);
}

#[actix_rt::test]
async fn supervisor_killed_leaves_no_worker_behind() {
    let sup = Supervisor::start(&unique("orphans"), None, tempfile::tempdir().unwrap()).await;
    let h = sup.health().await.unwrap();
    let pids: Vec<u32> = (0..2)
        .map(|i| worker_field(&h, i, "pid").as_u64().unwrap() as u32)
        .collect();
    signal(sup.pid(), "KILL");
    let deadline = Instant::now() + Duration::from_secs(7); // drain_timeout + 2 s
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "workers outlived their supervisor: {pids:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn sigterm_drains_and_exits_zero() {
    let mut sup = Supervisor::start(&unique("term"), None, tempfile::tempdir().unwrap()).await;
    let (url, _) = sup.connect().await;
    let mut c = Client::connect(&url).await;
    c.hello().await;
    signal(sup.pid(), "TERM");
    match c.next_event(Duration::from_secs(10)).await {
        Some(Event::Closed(Some(reason))) => assert_eq!(u16::from(reason.code), 1012),
        other => panic!("expected close 1012, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = sup.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "supervisor did not exit");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[actix_rt::test]
async fn api_restart_needs_the_key() {
    let sup = Supervisor::start(&unique("api"), None, tempfile::tempdir().unwrap()).await;
    for auth in [None, Some("Bearer wrong")] {
        let mut req = client::http().post(sup.url("/api/restart"));
        if let Some(auth) = auth {
            req = req.insert_header(("Authorization", auth));
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    let res = client::http()
        .post(sup.url("/api/restart"))
        .insert_header(("Authorization", "Bearer test-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    sup.wait_until("a roll", |h| {
        (0..2).all(|i| worker_field(h, i, "generation") == 2) && ready(h) == 2
    })
    .await;
}
