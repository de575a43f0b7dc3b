//! Many machines: two supervisors on one machine, standing for two machines (their own loopback
//! addresses 127.0.0.2 and 127.0.0.3, their own ports), sharing the Redis on 127.0.0.1:6379 with
//! `cluster.enabled = true`.
//!
//! `/connect` on either spreads sessions over both; a session made on one resumes on the other;
//! one publish reaches every session on both exactly once.

#[allow(unused_imports)]
mod common;

#[path = "messaging/broker.rs"]
#[allow(dead_code)]
mod broker;
#[path = "messaging/client.rs"]
#[allow(dead_code)]
mod client;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use broker::{unique, Redis, REDIS_URL};
use client::Client;
use common::BIN;

/// A supervisor process with one configuration, killed (with its workers) on drop.
struct Machine {
    child: Child,
    host: String,
    main_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM drains and stops the workers too; then make sure.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A block of three free ports on `host`: main port and two workers.
fn free_block(host: &str) -> u16 {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind((host, 0)).unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        if base > 60000 {
            continue;
        }
        if (1..3).all(|i| std::net::TcpListener::bind((host, base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free block of ports on {host}");
}

impl Machine {
    async fn start(host: &str, namespace: &str) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let main_port = free_block(host);
        let config = format!(
            r#"[http]
host = "{host}"
host_external = "{host}"
main_port = {main_port}
worker_base_port = {workers}
static_dir = ""
[workers]
count = 2
drain_timeout = "3s"
[sessions]
secret = "cluster-test-secret"
default_whitelist = ["{namespace}.*"]
[broker]
kind = "redis"
redis_url = "{REDIS_URL}"
[cluster]
enabled = true
"#,
            workers = main_port + 1
        );
        std::fs::write(dir.path().join("rohrpost.toml"), config).unwrap();
        let child = Command::new(BIN)
            .args(["--config", "rohrpost.toml"])
            .current_dir(dir.path())
            .env_remove("ROHRPOST_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let machine = Machine {
            child,
            host: host.to_string(),
            main_port,
            _dir: dir,
        };
        machine.wait_ready().await;
        machine
    }

    /// Waits until both workers are ready and announced in the cluster directory.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = self.get_json("/health").await;
            let ready = health
                .as_ref()
                .and_then(|h| h["ready_workers"].as_u64())
                .unwrap_or(0);
            if ready == 2 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become ready",
                self.host
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get_json(&self, path: &str) -> Option<Value> {
        let url = format!("http://{}:{}{}", self.host, self.main_port, path);
        let mut res = client::http()
            .get(url)
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .ok()?;
        res.json::<Value>().await.ok()
    }

    /// The worker URL `/connect` hands out.
    async fn connect_url(&self) -> String {
        let answer = self.get_json("/connect").await.expect("/connect answers");
        answer["url"].as_str().expect("a url").to_string()
    }
}

/// Opens a session through `/connect` of `machine`: the websocket URL and the client.
async fn open_via(machine: &Machine) -> (String, Client) {
    let url = machine.connect_url().await;
    let ws = format!("{}/websocket", url.replacen("http://", "ws://", 1));
    (url, Client::connect(&ws).await)
}

/// Waits until every machine's four workers are in the directory, so that `/connect` on either
/// machine sees all of them.
async fn wait_for_directory(machines: &[&Machine]) {
    let mut redis = Redis::shared().await;
    let wanted: Vec<String> = machines
        .iter()
        .flat_map(|m| {
            (1..=2).map(move |i| format!("http://{}:{}/rohrpost", m.host, m.main_port + i))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut present = 0;
        for url in &wanted {
            if redis.hget("rohrpost:workers", url).await.is_some() {
                present += 1;
            }
        }
        if present == wanted.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workers missing from the directory"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn cluster_spreads_resumes_and_delivers_once_across_machines() {
    let namespace = unique("cluster");
    let a = Machine::start("127.0.0.2", &namespace).await;
    let b = Machine::start("127.0.0.3", &namespace).await;
    wait_for_directory(&[&a, &b]).await;

    // /connect on machine A alone hands out workers of both machines.
    let mut sessions = Vec::new();
    let mut per_host: HashMap<String, usize> = HashMap::new();
    for _ in 0..24 {
        let (url, mut client) = open_via(&a).await;
        let welcome = client.hello().await;
        let host = url
            .split('/')
            .nth(2)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_string();
        *per_host.entry(host.clone()).or_default() += 1;
        sessions.push((client, welcome, host, url));
    }
    assert_eq!(
        per_host.len(),
        2,
        "sessions spread over both machines: {per_host:?}"
    );

    // Each worker subscribes once for all its sessions: settle one session per worker.
    let topic = format!("{namespace}.news");
    let mut redis = Redis::shared().await;
    let mut settled_workers = std::collections::HashSet::new();
    for (client, _, _, url) in sessions.iter_mut() {
        if settled_workers.insert(url.clone()) {
            broker::settle(&mut redis, client, &topic).await;
        }
    }

    // One publish reaches every session on both machines exactly once.
    redis.publish(&topic, &json!({"data": {"n": 1}})).await;
    for (client, _, _, _) in sessions.iter_mut() {
        loop {
            let (got_topic, data) = client.recv().await;
            if data == json!({"n": 1}) {
                assert_eq!(got_topic, topic);
                break;
            }
            assert!(
                data.get("probe").is_some() || data.get("fence").is_some(),
                "unexpected {got_topic} {data}"
            );
        }
    }
    // Nothing but probes and fences before a new fence: no session got the message twice.
    let mut clients: Vec<&mut Client> = sessions.iter_mut().map(|(c, _, _, _)| c).collect();
    broker::fence(&mut redis, &mut clients, &topic).await;

    // A session made on one machine resumes on the other, with what the backend granted.
    let (mut first, welcome, host, _) = sessions.remove(0);
    let granted = format!("{namespace}.granted.*");
    redis
        .publish(
            &welcome.direct_topic(),
            &json!({"add": [granted], "sessionData": {"who": "ada"}, "data": "ok"}),
        )
        .await;
    first.expect_topic(&welcome.direct_topic()).await;
    first.close().await;
    let other = if host == a.host { &b } else { &a };
    // Straight to a worker of the other machine (its /connect could hand out either machine).
    let ws = format!(
        "ws://{}:{}/rohrpost/websocket",
        other.host,
        other.main_port + 1
    );
    let mut again = Client::connect(&ws).await;
    let resumed = again.resume(&welcome.resume).await;
    assert!(resumed.resumed, "resumed on another worker");
    assert_eq!(resumed.session, welcome.session);
    assert!(
        resumed.whitelist.contains(&granted),
        "whitelist kept: {:?}",
        resumed.whitelist
    );
}
