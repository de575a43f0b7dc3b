//! A `rohrpost worker` process for one test: its config file, its start and its end.
//!
//! [`WorkerConfig`] holds the few settings the tests vary and renders the whole TOML file.
//! [`Worker::start`] writes it to a fresh temporary directory, runs the real binary there (with
//! no `ROHRPOST_CONFIG` or `ROHRPOST__*` variables inherited, so only the file counts) and waits
//! until `GET /rohrpost/info` answers 200. The process is killed when the [`Worker`] is dropped;
//! if that happens because the test panicked, the end of the worker's log is printed with the
//! failure.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::broker::{unique, BrokerAddress, TestBroker};
use crate::client::{Client, Welcome};
use crate::common::{free_port, BIN};

/// How long a worker may take to answer its readiness probe.
const READY_WAIT: Duration = Duration::from_secs(20);
/// Attempts at starting a worker, in case another process takes the free port first.
const START_ATTEMPTS: usize = 3;
/// Lines of the worker's log shown when a test fails.
const LOG_TAIL: usize = 60;

/// The SockJS prefix every worker serves (the default of `sockjs.prefix`).
pub const PREFIX: &str = "/rohrpost";

/// One `[[http_topics]]` rule.
#[derive(Clone, Debug)]
pub struct HttpRule {
    pub pattern: String,
    pub url: String,
    pub timeout: String,
    pub headers: Vec<(String, String)>,
}

impl HttpRule {
    /// A rule sending `pattern` to `url` with a 1 s timeout and no extra headers.
    pub fn new(pattern: &str, url: &str) -> HttpRule {
        HttpRule {
            pattern: pattern.to_owned(),
            url: url.to_owned(),
            timeout: "1s".to_owned(),
            headers: Vec::new(),
        }
    }

    pub fn timeout(mut self, timeout: &str) -> HttpRule {
        self.timeout = timeout.to_owned();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> HttpRule {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The settings a test chooses; everything else is the example config of the spec.
///
/// The shared Redis serves every Redis test running at once, and a whitelist pattern such as
/// `anonym.*` would let a session receive what other tests publish. So each config has a random
/// `namespace` (with the embedded broker too, which each test has to itself, so that the tests
/// read the same for both), and its default whitelist is the spec's `anonym.*` and `ping.*`
/// inside it: `anonym.<namespace>.*`, `ping.<namespace>.*`. Tests name topics and patterns with
/// [`WorkerConfig::topic`] and [`WorkerConfig::pattern`]; two workers share a namespace by
/// sharing a config.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub namespace: String,
    pub broker: BrokerAddress,
    pub default_whitelist: Vec<String>,
    pub handshake_timeout: String,
    /// Empty: the workers agree on one through the broker.
    pub secret: String,
    pub max_message_bytes: usize,
    pub max_topic_len: usize,
    pub http_topics: Vec<HttpRule>,
    pub legacy_handshake: bool,
    pub messages_per_second: u32,
    pub burst: u32,
    /// `http.allowed_origins`; empty: any.
    pub allowed_origins: Vec<String>,
    pub header_timeout: String,
    /// `http.body_timeout`.
    pub body_timeout: String,
    /// `sessions.ttl`: how long a session's record outlives its last connection.
    pub session_ttl: String,
    /// The `[auth]` table, as JSON (empty: the defaults).
    pub auth: Value,
    /// The `[hooks]` table, as JSON (empty: the defaults).
    pub hooks: Value,
}

impl WorkerConfig {
    /// The default test config for workers of `broker`, in a namespace of its own.
    pub fn on(broker: &TestBroker) -> WorkerConfig {
        let namespace = format!("t{:012x}", rand::random::<u64>() >> 16);
        WorkerConfig {
            broker: broker.address(),
            default_whitelist: vec![
                format!("anonym.{namespace}.*"),
                format!("ping.{namespace}.*"),
            ],
            namespace,
            handshake_timeout: "10s".to_owned(),
            secret: "test-secret".to_owned(),
            max_message_bytes: 65536,
            max_topic_len: 256,
            http_topics: Vec::new(),
            legacy_handshake: false,
            messages_per_second: 100,
            burst: 200,
            allowed_origins: Vec::new(),
            header_timeout: "5s".to_owned(),
            body_timeout: "10s".to_owned(),
            session_ttl: "10m".to_owned(),
            auth: json!({}),
            hooks: json!({}),
        }
    }

    /// A fresh topic `<kind>.<namespace>.<random>`, which `pattern(kind)` matches.
    pub fn topic(&self, kind: &str) -> String {
        unique(&format!("{kind}.{}", self.namespace))
    }

    /// The pattern `<kind>.<namespace>.*`: the namespaced form of the spec's `<kind>.*`.
    pub fn pattern(&self, kind: &str) -> String {
        format!("{kind}.{}.*", self.namespace)
    }

    /// The config file.
    pub fn to_toml(&self) -> String {
        let rules: Vec<Value> = self
            .http_topics
            .iter()
            .map(|r| {
                let headers: serde_json::Map<String, Value> = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect();
                json!({
                    "pattern": r.pattern,
                    "url": r.url,
                    "timeout": r.timeout,
                    "headers": headers,
                })
            })
            .collect();
        let file = json!({
            "http": {
                "host": "127.0.0.1",
                "allowed_origins": self.allowed_origins,
                "header_timeout": self.header_timeout,
                "body_timeout": self.body_timeout,
            },
            "broker": self.broker.config_section(),
            "sessions": {
                "default_whitelist": self.default_whitelist,
                "handshake_timeout": self.handshake_timeout,
                "ttl": self.session_ttl,
                "secret": self.secret,
            },
            "limits": {
                "max_message_bytes": self.max_message_bytes,
                "max_topic_len": self.max_topic_len,
                "messages_per_second": self.messages_per_second,
                "burst": self.burst,
            },
            "http_topics": rules,
            "compat": { "legacy_handshake": self.legacy_handshake },
            "auth": self.auth,
            "hooks": self.hooks,
        });
        toml::to_string(&file).expect("the test config renders as TOML")
    }
}

/// A running worker, killed on drop.
pub struct Worker {
    child: Child,
    port: u16,
    dir: TempDir,
    config: WorkerConfig,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.print_log_tail();
        }
    }
}

impl Worker {
    /// A worker of `broker` with the default test config.
    pub async fn start_on(broker: &TestBroker) -> Worker {
        Worker::start(&WorkerConfig::on(broker)).await
    }

    /// Writes `config`, starts the worker and waits until it answers.
    pub async fn start(config: &WorkerConfig) -> Worker {
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("create a temporary directory");
            let config_path = dir.path().join("rohrpost.toml");
            std::fs::write(&config_path, config.to_toml()).expect("write the config file");
            let port = free_port();
            let child = spawn(&dir, &config_path, port);
            let mut worker = Worker {
                child,
                port,
                dir,
                config: config.clone(),
            };
            if worker.wait_ready().await {
                return worker;
            }
            worker.print_log_tail();
        }
        panic!("rohrpost worker did not become ready in {START_ATTEMPTS} attempts");
    }

    /// Polls `/rohrpost/info` until it answers 200 (true) or the process exits (false).
    async fn wait_ready(&mut self) -> bool {
        let http = crate::client::http();
        let url = format!("http://127.0.0.1:{}{PREFIX}/info", self.port);
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if let Ok(Some(_status)) = self.child.try_wait() {
                return false;
            }
            let probe = actix_rt::time::timeout(Duration::from_secs(1), http.get(&url).send());
            if let Ok(Ok(res)) = probe.await {
                if res.status() == 200 {
                    return true;
                }
            }
            assert!(
                Instant::now() < deadline,
                "rohrpost worker did not answer GET {url} within {READY_WAIT:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The config the worker runs with.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// A fresh topic in the worker's namespace (see [`WorkerConfig::topic`]).
    pub fn topic(&self, kind: &str) -> String {
        self.config.topic(kind)
    }

    /// A pattern in the worker's namespace (see [`WorkerConfig::pattern`]).
    pub fn pattern(&self, kind: &str) -> String {
        self.config.pattern(kind)
    }

    /// The port the worker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The raw websocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}{PREFIX}/websocket", self.port)
    }

    /// A websocket connection that has not said hello yet.
    pub async fn connect(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }

    /// A new session: connected, hello sent, welcome received.
    pub async fn session(&self) -> (Client, Welcome) {
        let mut client = self.connect().await;
        let welcome = client.hello().await;
        (client, welcome)
    }

    /// `count` new sessions, opened `batch` at a time.
    pub async fn sessions(&self, count: usize, batch: usize) -> Vec<Client> {
        let mut clients = Vec::with_capacity(count);
        let started = Instant::now();
        while clients.len() < count {
            let opening = batch.min(count - clients.len());
            let opened = futures_util::future::join_all((0..opening).map(|_| async {
                let (client, _) = self.session().await;
                client
            }))
            .await;
            clients.extend(opened);
        }
        println!("{count} sessions opened in {:?}", started.elapsed());
        clients
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("worker.log")
    }

    fn print_log_tail(&self) {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
        eprintln!(
            "--- last {} lines of the log of the worker on port {} ---\n{}",
            tail.len(),
            self.port,
            tail.join("\n")
        );
    }
}

/// Runs `rohrpost worker` in `dir`, logging to `dir/worker.log`.
fn spawn(dir: &TempDir, config: &std::path::Path, port: u16) -> Child {
    let log = File::create(dir.path().join("worker.log")).expect("create the worker log");
    let mut command = Command::new(BIN);
    command
        .args(["worker", "--port", &port.to_string(), "--config"])
        .arg(config)
        .current_dir(dir.path())
        .env_remove("ROHRPOST_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROHRPOST__") {
            command.env_remove(name);
        }
    }
    command.spawn().expect("spawn the rohrpost binary")
}
