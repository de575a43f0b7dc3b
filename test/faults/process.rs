//! The processes a fault test runs and watches: a `rohrpost worker` whose config may carry keys
//! the messaging suite's [`WorkerConfig`] does not set (a short `sessions.ttl`, a small
//! `http.max_in_flight`), and what the kernel says about a process (alive, CPU time used).
//!
//! A fault test needs the worker's pid (to prove it did not crash and restart, to sample its CPU
//! time, to kill it), which the messaging suite's `Worker` keeps to itself.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::client::{http, Client, Welcome};
use crate::common::{free_port, BIN};
use crate::worker::{WorkerConfig, PREFIX};

/// How long a worker may take to answer its readiness probe.
const READY_WAIT: Duration = Duration::from_secs(20);
/// Lines of a worker's log shown when a test fails.
const LOG_TAIL: usize = 40;

/// One config key set on top of a [`WorkerConfig`]: `(section, key, value)`.
pub type Tweak = (&'static str, &'static str, toml::Value);

/// The config file of `config` with `tweaks` applied.
pub fn render(config: &WorkerConfig, tweaks: &[Tweak]) -> String {
    let mut file: toml::Table = config
        .to_toml()
        .parse()
        .expect("the test config is valid TOML");
    for (section, key, value) in tweaks {
        let table = file
            .entry(*section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table
            .as_table_mut()
            .expect("config sections are tables")
            .insert((*key).to_owned(), value.clone());
    }
    toml::to_string(&file).expect("the tweaked config renders as TOML")
}

/// The binary run in `dir` with only the configuration it is given (no `ROHRPOST_CONFIG` or
/// `ROHRPOST__*` from the test's environment), logging at info to `dir/<log>`.
pub fn rohrpost_command(dir: &std::path::Path, log: &str) -> Command {
    let log = File::create(dir.join(log)).expect("create the log file");
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_remove("ROHRPOST_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROHRPOST__") {
            command.env_remove(name);
        }
    }
    command
}

/// A `rohrpost worker` process, killed on drop (its log tail printed if the test failed).
pub struct FaultWorker {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Drop for FaultWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "--- last lines of the log of the worker on port {} ---\n{}",
                self.port,
                tail.join("\n")
            );
        }
    }
}

impl FaultWorker {
    /// Starts a worker with `config` and `tweaks` on a free port and waits until it answers.
    pub async fn start(config: &WorkerConfig, tweaks: &[Tweak]) -> FaultWorker {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("rohrpost.toml");
        std::fs::write(&path, render(config, tweaks)).expect("write the config file");
        let port = free_port();
        let mut command = rohrpost_command(dir.path(), "worker.log");
        command
            .args(["worker", "--port", &port.to_string(), "--config"])
            .arg(&path);
        let child = command.spawn().expect("spawn the rohrpost binary");
        let mut worker = FaultWorker { child, port, dir };
        worker.wait_ready().await;
        worker
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}{PREFIX}/info", self.port);
        let deadline = Instant::now() + READY_WAIT;
        while !answers(&url).await {
            assert!(self.is_running(), "the worker on port {} exited", self.port);
            assert!(
                Instant::now() < deadline,
                "the worker did not answer {url} within {READY_WAIT:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has not exited (a crash ends it: workers run unsupervised here).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The raw websocket endpoint.
    pub fn ws_url(&self) -> String {
        ws_url(self.port)
    }

    /// A new session on this worker.
    pub async fn session(&self) -> (Client, Welcome) {
        let mut client = Client::connect(&self.ws_url()).await;
        let welcome = client.hello().await;
        (client, welcome)
    }
}

/// The raw websocket endpoint of the worker on `port`.
pub fn ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}{PREFIX}/websocket")
}

/// Whether `GET url` answers 200 within a second.
pub async fn answers(url: &str) -> bool {
    let probe = actix_rt::time::timeout(Duration::from_secs(1), http().get(url).send());
    matches!(probe.await, Ok(Ok(res)) if res.status() == 200)
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat_fields(&stat)
            .first()
            .is_some_and(|state| *state != "Z")
    })
}

/// CPU time (user + system, all threads) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    let fields = stat_fields(&stat);
    // After the command name: state is field 3, utime field 14, stime field 15 (proc(5)).
    let ticks = |n: usize| -> u64 {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("field {n} of /proc/{pid}/stat: {stat}"))
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis((ticks(14) + ticks(15)) * 1000 / per_second)
}

/// The fields of a `/proc/<pid>/stat` line after the command name (which may hold spaces).
fn stat_fields(stat: &str) -> Vec<&str> {
    let after_name = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    after_name.split_whitespace().collect()
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a vanished pid is an ignored error.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}
