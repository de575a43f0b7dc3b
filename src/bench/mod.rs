//! `rohrpost bench`: a load generator that speaks the real protocol, in the spirit of
//! `redis-benchmark`.
//!
//! Sessions are opened the way browsers open them (`GET /connect` on the main port, the framed
//! SockJS websocket, the hello handshake; `--legacy` for the 0.x handshake). Scenarios:
//! - `idle`: hold N sessions; report the server's RSS (supervisor and workers) before and after.
//! - `fanout`: N sessions on one topic; publish M timestamped messages (server API, or Redis
//!   PUBLISH with `--redis`); deliveries/s, delivered ratio, latency percentiles.
//! - `inbound`: every session publishes K messages; a subscriber on Redis (`--redis`) or on the
//!   embedded broker (`--local-broker`) counts them.
//! - `http`: K round trips per session through an HTTP topic to a minimal backend the bench
//!   serves on `--backend` (the server's `[[http_topics]]` rule must point there).
//! - `soak`: `--duration` of mixed traffic (churn, resumes, fan-out, HTTP topics, a staged
//!   restart every `--restart-every`) while the server's RSS and open files are sampled; fails
//!   unless both end bounded and nothing was lost (see `soak.rs`).
//! - `recovery`: N sessions follow a numbered fan-out while a staged restart moves them all;
//!   how long each resume takes to catch up, and each burst (see `recovery.rs`).
//! - `presence`: N sessions come and go with the bench as the server's event hook (on
//!   `--backend`); session events/s through the hook, and the presence queries' time (see
//!   `presence.rs`).
//!
//! With `--target nchan` the same client measures nginx with the nchan module instead: idle,
//! fanout and inbound, with raw websockets on nchan's locations (see `nchan.rs`).
//!
//! Every run is bounded by `--timeout` and by its counts. The bench raises its own open-file
//! limit to fit the sessions, and with `--src-ips 127.0.0.2-127.0.0.30` binds client sockets
//! round-robin to those loopback addresses, so that more than one address's ~28k ephemeral
//! ports' worth of sessions can be opened. Every report names the server's CPU use (supervisor
//! and workers, from `/proc`) over the measured phase and its resident memory at the end.

mod addresses;
mod client;
mod inbound;
mod nchan;
mod presence;
mod processes;
mod publisher;
mod recovery;
mod scenarios;
mod soak;
mod system;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use scenarios::run;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("server: {0}")]
    Server(String),
    #[error("{0}")]
    Usage(String),
}

/// Which scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Idle,
    Fanout,
    Inbound,
    Http,
    Soak,
    Recovery,
    Presence,
}

/// The gateway under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Rohrpost: sessions through `/connect`, the framed SockJS websocket and the hello.
    Rohrpost,
    /// nginx with the nchan module, for a side-by-side figure (see `nchan.rs`).
    Nchan,
}

impl Target {
    /// The name `--target` takes, and the reports carry.
    pub fn name(self) -> &'static str {
        match self {
            Target::Rohrpost => "rohrpost",
            Target::Nchan => "nchan",
        }
    }
}

/// The options of `rohrpost bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The scenario.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The main port's base URL (with `--target nchan`: nginx's, e.g. `http://127.0.0.1:4600`).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// The gateway under test. `nchan`: sessions are raw websockets on nchan's subscriber
    /// location `{url}/sub/{topic}` (no `/connect`, no hello), fan-out publishes are
    /// `POST {url}/pub/{topic}`, inbound sessions publish on `{url}/pubsub/{topic}`
    /// (test/bench/nchan/nginx.conf has those locations); idle, fanout and inbound only.
    #[arg(long, value_enum, default_value_t = Target::Rohrpost)]
    pub target: Target,
    /// The server's first process (nginx's master): it and its descendants are the processes
    /// measured. Needed with `--target nchan`; Rohrpost's come from its `/health` otherwise.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Sessions to open.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub sessions: usize,
    /// Messages to publish (fanout).
    #[arg(short = 'm', long, default_value_t = 100)]
    pub messages: usize,
    /// Messages per session (inbound, http).
    #[arg(short = 'k', long, default_value_t = 10)]
    pub per_session: usize,
    /// Publish rate in messages per second (fanout; default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The topic (must be on the sessions' default whitelist).
    #[arg(long, default_value = "anonym.bench")]
    pub topic: String,
    /// Server API key, for publishing through `/api/publish` (fanout without `--redis`).
    #[arg(long, env = "ROHRPOST__API__KEY")]
    pub api_key: Option<String>,
    /// Redis URL: publish (fanout) and count (inbound) through Redis.
    #[arg(long)]
    pub redis: Option<String>,
    /// The embedded broker's socket (`broker.socket`): count inbound arrivals there.
    #[arg(long)]
    pub local_broker: Option<std::path::PathBuf>,
    /// PEM certificate(s) to trust for an `https://` server (its development certificate).
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    /// Loopback source addresses for client sockets, used round-robin: a range
    /// `127.0.0.2-127.0.0.30` and/or a comma-separated list.
    #[arg(long)]
    pub src_ips: Option<String>,
    /// Address the minimal HTTP backend (http) or the event hook (presence) listens on.
    #[arg(long, default_value = "127.0.0.1:3199")]
    pub backend: String,
    /// How long `idle` holds the sessions.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Sessions opened at once.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Upper bound of the whole run.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Padding added to every fan-out message, in bytes (bigger messages fill a stalled
    /// client's socket buffers sooner).
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// Extra sessions that stop reading after the handshake (fanout): slow consumers, which the
    /// server must cut off (close 1013) without slowing the others.
    #[arg(long, default_value_t = 0)]
    pub stalled: usize,
    /// Split the sessions over this many bench processes (idle): one process holds no more
    /// sockets than its open-file limit, which only a privileged user can raise.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Internal: run as one of `--processes`' children.
    #[arg(long, hide = true)]
    pub child: bool,
    /// Use the Rohrpost 0.x handshake (needs `compat.legacy_handshake` on the server).
    #[arg(long)]
    pub legacy: bool,
    /// How long the soak runs (soak).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// A staged restart (`POST /api/restart`) this often (soak).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub restart_every: Duration,
    /// Server RSS and open files are sampled this often (soak).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// Sessions that leave or reconnect per second (soak; default: 1 % of `-n`, at least 1).
    #[arg(long)]
    pub churn: Option<usize>,
    /// HTTP-topic round trips started per second (soak).
    #[arg(long, default_value_t = 20.0)]
    pub http_rate: f64,
    /// The HTTP topic (soak; the server's `[[http_topics]]` rule must point at `--backend`).
    #[arg(long, default_value = "anonym.http")]
    pub http_topic: String,
}

/// Microseconds since the Unix epoch (sender and receivers share the machine's clock).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
