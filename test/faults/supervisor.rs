//! The real supervisor for a fault test: `rohrpost` with its workers on free loopback ports, its
//! default embedded broker (on a socket in the test's temporary directory) and the server API.
//! On drop the supervisor and every worker it was seen with are killed.

use std::cell::RefCell;
use std::collections::HashSet;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::client::http;
use crate::process::{alive, rohrpost_command, signal};

/// The server API's key in these tests.
const API_KEY: &str = "faults-api-key";
/// How long the supervisor may take to reach a state.
const STATE_WAIT: Duration = Duration::from_secs(30);
/// Lines of the supervisor's log shown when a test fails.
const LOG_TAIL: usize = 40;

/// A running supervisor.
pub struct Supervisor {
    child: Child,
    main_port: u16,
    dir: TempDir,
    pids: RefCell<HashSet<u32>>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &pid in self.pids.borrow().iter() {
            if alive(pid) {
                signal(pid, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("supervisor.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "--- last lines of the supervisor's log ---\n{}",
                tail.join("\n")
            );
        }
    }
}

/// A free port with `count` free ports after it, below the ephemeral range (see `ports`).
fn free_block(count: u16) -> u16 {
    crate::ports::PortBlock::find(count).main
}

impl Supervisor {
    /// Starts a supervisor of `workers` workers whose sessions may use `whitelist`, and waits
    /// until every worker is ready.
    pub async fn start(workers: u16, whitelist: &[String]) -> Supervisor {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let main_port = free_block(workers);
        let config = json!({
            "http": {
                "host": "127.0.0.1",
                "host_external": "127.0.0.1",
                "main_port": main_port,
                "worker_base_port": main_port + 1,
                "static_dir": "",
            },
            "workers": {"count": workers, "drain_timeout": "2s"},
            "sessions": {"secret": "faults-secret", "default_whitelist": whitelist},
            "broker": {"kind": "local", "socket": dir.path().join("broker.sock")},
            "api": {"key": API_KEY},
        });
        let config = toml::to_string(&config).expect("the supervisor config renders as TOML");
        std::fs::write(dir.path().join("rohrpost.toml"), config).expect("write the config");
        let mut command = rohrpost_command(dir.path(), "supervisor.log");
        command.args(["--config", "rohrpost.toml"]);
        let supervisor = Supervisor {
            child: command.spawn().expect("spawn the supervisor"),
            main_port,
            dir,
            pids: RefCell::default(),
        };
        let count = usize::from(workers);
        supervisor
            .wait_until("every worker ready", |h| ready(h) == count)
            .await;
        supervisor
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.main_port, path)
    }

    /// `/health`, remembering every worker pid it names (to kill on drop).
    pub async fn health(&self) -> Option<Value> {
        let request = http().get(self.url("/health")).send();
        let mut res = actix_rt::time::timeout(Duration::from_secs(2), request)
            .await
            .ok()?
            .ok()?;
        let health: Value = res.json().await.ok()?;
        for worker in health["workers"].as_array().into_iter().flatten() {
            if let Some(pid) = worker["pid"].as_u64() {
                self.pids.borrow_mut().insert(pid as u32);
            }
        }
        Some(health)
    }

    /// Polls `/health` until `done`; panics after [`STATE_WAIT`].
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + STATE_WAIT;
        loop {
            if let Some(health) = self.health().await {
                if done(&health) {
                    return health;
                }
            }
            assert!(
                Instant::now() < deadline,
                "supervisor: {what} not within {STATE_WAIT:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The port of the worker `/connect` hands out, if it answers.
    pub async fn connect(&self) -> Option<u16> {
        let request = http()
            .get(self.url("/connect"))
            .insert_header(("Accept", "application/json"))
            .send();
        let mut res = actix_rt::time::timeout(Duration::from_secs(2), request)
            .await
            .ok()?
            .ok()?;
        let answer: Value = res.json().await.ok()?;
        let url = answer["url"].as_str()?;
        let authority = url.split("://").nth(1)?.split('/').next()?;
        authority.rsplit(':').next()?.parse().ok()
    }

    /// `POST <path>` on the server API with `body`; whether it was accepted.
    pub async fn api(&self, path: &str, body: &Value) -> bool {
        let request = http()
            .post(self.url(path))
            .insert_header(("Authorization", format!("Bearer {API_KEY}")))
            .send_json(body);
        matches!(
            actix_rt::time::timeout(Duration::from_secs(2), request).await,
            Ok(Ok(res)) if res.status().is_success()
        )
    }
}

/// Workers in state `ready`.
pub fn ready(health: &Value) -> usize {
    health["workers"]
        .as_array()
        .map_or(0, |ws| ws.iter().filter(|w| w["state"] == "ready").count())
}

/// `(port, pid)` of worker `index`.
pub fn worker(health: &Value, index: usize) -> (u16, u32) {
    let w = &health["workers"][index];
    let port = w["port"].as_u64().expect("worker port") as u16;
    let pid = w["pid"].as_u64().expect("worker pid") as u32;
    (port, pid)
}
