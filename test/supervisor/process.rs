//! The supervisor under test: one `rohrpost --config rohrpost.toml` process in a temporary
//! directory, with its workers.
//!
//! - [`Supervisor::start`] writes the configuration, starts the process (its log, and its
//!   workers' logs, go to `rohrpost.log` in the directory) and waits until the main port answers.
//! - [`Supervisor::health`] reads `/health` and remembers every worker pid it shows, so that
//!   dropping the handle kills the supervisor *and* its workers, also when a test fails half-way
//!   or the supervisor was killed and its workers were orphaned.
//!
//! Every wait is bounded.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::client::http;
use crate::common::{BIN, WAIT};
use crate::main_port::{handout, Handout, Health};
use crate::ports::PortBlock;

/// The shared Redis the supervisors of these tests use as their broker.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// The API key of every test supervisor.
pub const API_KEY: &str = "test-key-5ec2e7a1";
/// `sessions.secret` of every test supervisor (distinctive, so that a test can look for it).
pub const SECRET: &str = "test-secret-9d4f1b60";
/// `workers.drain_timeout` of every test supervisor.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a supervisor may take to get every worker ready, or a roll to finish.
pub const SETTLE: Duration = Duration::from_secs(30);
/// How often state is polled.
pub const POLL: Duration = Duration::from_millis(50);

/// Which broker the supervisor and its workers use.
#[allow(dead_code)] // `Redis` and `Embedded` are used by test/delivery.rs
pub enum Broker {
    /// The shared Redis, [`REDIS_URL`].
    SharedRedis,
    /// The Redis at this URL (a private `redis-server` the test may stop).
    Redis(String),
    /// The embedded broker, hosted by the supervisor on a socket in its temporary directory.
    Embedded,
}

/// What differs between the supervisors of the tests.
pub struct Options {
    pub workers: u16,
    pub max_restarts: u32,
    pub restart_window: &'static str,
    /// Run a copy of the binary placed in the temporary directory, which the test may replace.
    pub own_binary: bool,
    pub broker: Broker,
    /// TOML appended to the configuration (extra sections, e.g. `[limits]`).
    pub extra_config: String,
    /// TOML lines appended to its `[sessions]` section (e.g. `resume_grace = "2s"`).
    pub session_keys: String,
    /// `RUST_LOG` of the processes; `None`: `$ROHRPOST_TEST_LOG`, else `info`.
    pub log_filter: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 2,
            max_restarts: 5,
            restart_window: "60s",
            own_binary: false,
            broker: Broker::SharedRedis,
            extra_config: String::new(),
            session_keys: String::new(),
            log_filter: None,
        }
    }
}

/// A running supervisor; dropping it kills it and every worker it was seen to run.
pub struct Supervisor {
    child: Child,
    exit: Option<ExitStatus>,
    pub ports: PortBlock,
    /// Worker pids seen in `/health` or as children of the supervisor.
    pids: RefCell<BTreeSet<u32>>,
    dir: tempfile::TempDir,
}

impl Supervisor {
    /// Starts a supervisor of two workers and waits until both are ready.
    pub async fn start_ready() -> Supervisor {
        let supervisor = Supervisor::start(Options::default(), PortBlock::find(2)).await;
        supervisor
            .wait_for("every worker ready", |h| h.all_ready_in(1))
            .await;
        supervisor
    }

    /// Starts a supervisor of one worker with `options` (its `workers` ignored) and waits until
    /// the worker is ready; the worker's port.
    pub async fn start_one(options: Options) -> (Supervisor, u16) {
        let options = Options {
            workers: 1,
            ..options
        };
        let supervisor = Supervisor::start(options, PortBlock::find(1)).await;
        let port = supervisor
            .wait_for("the worker ready", |h| h.all_ready_in(1))
            .await
            .workers[0]
            .port;
        (supervisor, port)
    }

    /// Starts a supervisor on `ports` and waits until its main port answers `/health`.
    pub async fn start(options: Options, ports: PortBlock) -> Supervisor {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = config(&options, ports, dir.path());
        std::fs::write(dir.path().join("rohrpost.toml"), file).expect("write the configuration");
        let exe = if options.own_binary {
            let exe = dir.path().join("rohrpost");
            std::fs::copy(BIN, &exe).expect("copy the binary");
            exe
        } else {
            PathBuf::from(BIN)
        };
        let log = File::create(dir.path().join("rohrpost.log")).expect("create the log file");
        let child = Command::new(&exe)
            .args(["--config", "rohrpost.toml"])
            .current_dir(dir.path())
            .env_remove("ROHRPOST_CONFIG")
            .env(
                "RUST_LOG",
                options.log_filter.map_or_else(log_filter, str::to_owned),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .expect("spawn the supervisor");
        let mut supervisor = Supervisor {
            child,
            exit: None,
            ports,
            pids: RefCell::default(),
            dir,
        };
        let deadline = Instant::now() + SETTLE;
        while supervisor.health().await.is_none() {
            if supervisor.exited().is_some() {
                break;
            }
            supervisor.assert_before(deadline, "the main port answers /health");
            actix_rt::time::sleep(POLL).await;
        }
        supervisor
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory the supervisor runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends `signal` (e.g. `"HUP"`) to the supervisor.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// `http://127.0.0.1:<main port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.main)
    }

    /// `GET /connect` as JSON.
    pub async fn handout(&self) -> Result<Handout, String> {
        handout(self.ports.main).await
    }

    /// `GET /health` (200 or 503), or `None` when the main port does not answer.
    pub async fn health(&self) -> Option<Health> {
        let sent = http().get(self.url("/health")).send();
        let mut res = actix_rt::time::timeout(WAIT, sent).await.ok()?.ok()?;
        let health: Health = actix_rt::time::timeout(WAIT, res.json()).await.ok()?.ok()?;
        self.pids.borrow_mut().extend(health.pids());
        Some(health)
    }

    /// Polls `/health` until `done` holds, and returns that health; fails after [`SETTLE`].
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Health) -> bool) -> Health {
        self.wait_for_within(SETTLE, what, done).await
    }

    /// Polls `/health` until `done` holds, and returns that health; fails after `within`.
    pub async fn wait_for_within(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&Health) -> bool,
    ) -> Health {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            if let Some(health) = self.health().await {
                if done(&health) {
                    return health;
                }
                last = Some(health);
            }
            self.assert_before(deadline, &format!("{what} (last /health: {last:?})"));
            actix_rt::time::sleep(POLL).await;
        }
    }

    /// The exit status, if the supervisor has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("poll the supervisor");
        }
        self.exit
    }

    /// Waits until the supervisor exits; fails after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            self.assert_before(deadline, "the supervisor exits");
            actix_rt::time::sleep(POLL).await;
        }
    }

    /// What the supervisor and its workers logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rohrpost.log")).unwrap_or_default()
    }

    /// Fails the test, with the end of the log, once `deadline` has passed.
    fn assert_before(&self, deadline: Instant, what: &str) {
        if Instant::now() >= deadline {
            panic!("not reached in time: {what}");
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- last lines of rohrpost.log ---\n{tail}")
    }

    /// Copies the log out of the temporary directory (which is about to go) for a failed test.
    fn keep_log(&self) {
        let test = std::thread::current().name().unwrap_or("test").to_owned();
        let kept = std::env::temp_dir().join(format!("rohrpost-{test}-{}.log", self.pid()));
        if std::fs::copy(self.dir.path().join("rohrpost.log"), &kept).is_ok() {
            eprintln!("--- whole log kept in {} ---", kept.display());
        }
    }

    /// Whether `pid` is a live worker of this supervisor (by its command line, so that a reused
    /// pid is never taken for one).
    pub fn is_our_worker(&self, pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let port_arg = args
            .windows(2)
            .find(|pair| pair[0] == b"--port")
            .and_then(|pair| std::str::from_utf8(pair[1]).ok()?.parse::<u16>().ok());
        !zombie
            && args.contains(&&b"worker"[..])
            && port_arg.is_some_and(|port| self.ports.all().any(|p| p == port))
    }

    /// Children of the supervisor process right now.
    fn children(&self) -> Vec<u32> {
        let parent = self.pid();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| {
                        let rest = stat.rsplit_once(')')?.1;
                        rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                    })
                    == Some(parent)
            })
            .collect()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
            self.keep_log();
        }
        if self.exit.is_none() {
            self.pids.borrow_mut().extend(self.children());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for &pid in self.pids.borrow().iter() {
            if self.is_our_worker(pid) {
                send_signal(pid, "KILL");
            }
        }
    }
}

/// The supervisor's and workers' log filter: `info`, or `$ROHRPOST_TEST_LOG` (e.g. `debug`) when
/// a failure needs a closer look.
fn log_filter() -> String {
    std::env::var("ROHRPOST_TEST_LOG").unwrap_or_else(|_| "info".into())
}

/// `kill -<signal> <pid>`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
    assert!(status.is_ok(), "run kill -{signal} {pid}");
}

/// The `[broker]` section's keys for `broker`, for a supervisor running in `dir`.
fn broker_keys(broker: &Broker, dir: &Path) -> String {
    let quoted = |text: &str| toml::Value::from(text).to_string();
    match broker {
        Broker::SharedRedis => format!("kind = \"redis\"\nredis_url = {}", quoted(REDIS_URL)),
        Broker::Redis(url) => format!("kind = \"redis\"\nredis_url = {}", quoted(url)),
        Broker::Embedded => {
            let socket = dir.join("broker.sock");
            format!(
                "kind = \"local\"\nsocket = {}",
                quoted(&socket.to_string_lossy())
            )
        }
    }
}

/// The configuration file of a test supervisor running in `dir`.
fn config(options: &Options, ports: PortBlock, dir: &Path) -> String {
    format!(
        r#"[http]
host = "127.0.0.1"
host_external = "127.0.0.1"
main_port = {main}
worker_base_port = {base}
static_dir = ""

[workers]
count = {count}
drain_timeout = "{drain}s"
max_restarts = {max_restarts}
restart_window = "{window}"

[sessions]
secret = "{SECRET}"
default_whitelist = ["anonym.*"]
{session_keys}

[broker]
{broker}

[api]
key = "{API_KEY}"

{extra}
"#,
        main = ports.main,
        base = ports.worker(0),
        count = options.workers,
        drain = DRAIN_TIMEOUT.as_secs(),
        max_restarts = options.max_restarts,
        window = options.restart_window,
        broker = broker_keys(&options.broker, dir),
        extra = options.extra_config,
        session_keys = options.session_keys,
    )
}
