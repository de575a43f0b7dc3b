//! Typed configuration: loading, layering and validation.
//!
//! Configuration comes in three layers, later wins:
//!
//! 1. built-in defaults (the `Default` impls of the `Raw*` structs below),
//! 2. one TOML file: `--config FILE`, else `$ROHRPOST_CONFIG`, else `config/rohrpost.toml`,
//!    else `/etc/rohrpost/rohrpost.toml` (the last two only when they exist),
//! 3. environment variables `ROHRPOST__SECTION__KEY` (e.g. `ROHRPOST__HTTP__MAIN_PORT=4000`).
//!
//! The layers are merged into [`RawConfig`], which mirrors the file format (durations are strings,
//! ports are plain integers) so that every problem can be reported, not just the first one serde
//! trips over. [`RawConfig::validate`] then turns it into a [`Config`], the only form the rest of
//! the program sees: a `Config` always holds valid values.

mod auth;
mod error;
mod raw;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::topics::Pattern;

pub use auth::{AuthConfig, ConnectOnError, HooksConfig, RawAuth, RawHooks};
pub use error::{ConfigError, ConfigErrors};
pub use raw::*;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "ROHRPOST_CONFIG";
/// Config file used when neither `--config` nor `$ROHRPOST_CONFIG` names one.
pub const LOCAL_CONFIG: &str = "config/rohrpost.toml";
/// System-wide config file, the last fallback.
pub const SYSTEM_CONFIG: &str = "/etc/rohrpost/rohrpost.toml";

/// The validated configuration of one Rohrpost process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file layer came from, if any (for `check-config` and log lines).
    pub source: Option<PathBuf>,
    pub http: HttpConfig,
    pub workers: WorkersConfig,
    pub tls: TlsConfig,
    pub sockjs: SockjsConfig,
    pub limits: LimitsConfig,
    pub broker: BrokerConfig,
    pub sessions: SessionsConfig,
    pub http_topics: Vec<HttpTopicRule>,
    pub compat: CompatConfig,
    pub api: ApiConfig,
    pub cluster: ClusterConfig,
    pub history: HistoryConfig,
    pub auth: AuthConfig,
    pub hooks: HooksConfig,
}

/// `[history]`: the publication log every logged publish goes through, from which resumed
/// sessions recover what they missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    pub enabled: bool,
    /// Entries kept (the newest).
    pub size: usize,
    /// How long an entry is kept.
    pub ttl: Duration,
}

/// `[cluster]`: several machines sharing one Redis.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Workers announce themselves in Redis and `/connect` picks from the whole cluster.
    pub enabled: bool,
}

/// `[api]`: the server API on the main port.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Bearer token; `None` disables the API.
    pub key: Option<String>,
}

/// `[http]`: addresses and ports.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub host: String,
    pub host_external: String,
    pub main_port: u16,
    pub worker_base_port: u16,
    pub connect_path: String,
    /// `None` when static files are disabled (`static_dir = ""`).
    pub static_dir: Option<PathBuf>,
    /// HTTP backend requests one worker has open at once.
    pub max_in_flight: usize,
    /// Origins (`scheme://host[:port]`) whose pages may open sessions; empty: any.
    pub allowed_origins: Vec<String>,
    /// How long a client may take to send a request's headers (slowloris).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, once its headers are in: a body
    /// dribbled slowly holds a connection no longer.
    pub body_timeout: Duration,
}

/// `[workers]`: how many worker processes and threads per worker.
#[derive(Debug, Clone)]
pub struct WorkersConfig {
    pub count: u16,
    pub threads: usize,
    /// Failures of one worker port within `restart_window` before the supervisor gives up on it.
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// How long a draining worker waits for its sessions to leave before it exits anyway.
    pub drain_timeout: Duration,
    /// Staged restart of all workers every so often; `None` when off (`"0s"`).
    pub recycle_interval: Option<Duration>,
}

/// `[tls]`: rustls on every port when enabled.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub enabled: bool,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[sockjs]`: the SockJS endpoint served by each worker.
#[derive(Debug, Clone)]
pub struct SockjsConfig {
    pub prefix: String,
    pub heartbeat: Duration,
    pub disconnect_delay: Duration,
    pub response_limit: usize,
    pub client_url: String,
    pub websocket: bool,
    pub cookie_needed: bool,
}

/// `[limits]`: bounds on what one client may make the server hold.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Largest request body (`xhr_send`, `jsonp_send`) or websocket frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Messages a session may hold for a client that is not currently receiving.
    pub outbound_queue: usize,
    /// Longest topic or pattern, in bytes.
    pub max_topic_len: usize,
    /// Largest client message (one SockJS message), in bytes.
    pub max_message_bytes: usize,
    /// Client messages one session may send per second, on average (token bucket rate).
    pub messages_per_second: u32,
    /// Client messages one session may send at once (token bucket size).
    pub burst: u32,
    /// Sessions one worker holds at once; beyond, new sessions are refused (close 1013) and
    /// `/connect` answers 503 when every worker is this full.
    pub max_sessions_per_worker: usize,
    /// Sessions one client address may hold on one worker at once; beyond, refused (close 1013).
    pub max_sessions_per_ip: usize,
}

/// Which broker carries messages between workers, machines and backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// The embedded broker hosted by the supervisor, reached over a Unix socket (one machine).
    Local,
    /// Redis pub/sub and keys (`broker.redis_url`).
    Redis,
}

/// `[broker]`.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    pub redis_url: String,
    /// Unix socket of the embedded broker.
    pub socket: PathBuf,
}

/// `[sessions]`: Rohrpost sessions (whitelists, data, resume tokens).
#[derive(Debug, Clone)]
pub struct SessionsConfig {
    /// HMAC key of resume tokens; `None`: generated once and shared through the broker.
    pub secret: Option<String>,
    pub ttl: Duration,
    pub handshake_timeout: Duration,
    /// How long a session whose connection went away may be resumed before it ends for good
    /// (`session.closed`, reason `expired`).
    pub resume_grace: Duration,
    pub default_whitelist: Vec<Pattern>,
}

/// One `[[http_topics]]` rule: client messages on matching topics go to an HTTP endpoint.
#[derive(Debug, Clone)]
pub struct HttpTopicRule {
    pub pattern: Pattern,
    pub url: String,
    pub timeout: Duration,
    pub headers: Vec<(String, String)>,
}

/// `[compat]`: compatibility with Rohrpost 0.x clients.
#[derive(Debug, Clone)]
pub struct CompatConfig {
    pub legacy_handshake: bool,
}
impl Config {
    /// Loads the layers described in the module docs and validates the result.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigErrors> {
        let file = choose_file(explicit)?;
        let mut builder = config::Config::builder();
        if let Some(path) = &file {
            builder = builder.add_source(
                config::File::from(path.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix("ROHRPOST")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("sessions.default_whitelist")
                .with_list_parse_key("auth.rs256_public_keys")
                .with_list_parse_key("auth.es256_public_keys")
                .try_parsing(true),
        );
        let merged = builder
            .build()
            .map_err(|e| ConfigErrors::one(ConfigError::Load(e.to_string())))?;
        let raw: RawConfig = merged
            .try_deserialize()
            .map_err(|e| ConfigErrors::one(ConfigError::Load(e.to_string())))?;
        raw.validate(file)
    }

    /// The configuration in file form, as `check-config` prints it.
    pub fn to_raw(&self) -> RawConfig {
        RawConfig {
            http: RawHttp {
                host: self.http.host.clone(),
                host_external: self.http.host_external.clone(),
                main_port: self.http.main_port.into(),
                worker_base_port: self.http.worker_base_port.into(),
                connect_path: self.http.connect_path.clone(),
                max_in_flight: self.http.max_in_flight as i64,
                allowed_origins: self.http.allowed_origins.clone(),
                header_timeout: format_duration(self.http.header_timeout),
                body_timeout: format_duration(self.http.body_timeout),
                static_dir: self
                    .http
                    .static_dir
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            },
            workers: RawWorkers {
                count: Some(self.workers.count.into()),
                threads: self.workers.threads as i64,
                max_restarts: self.workers.max_restarts.into(),
                restart_window: format_duration(self.workers.restart_window),
                drain_timeout: format_duration(self.workers.drain_timeout),
                recycle_interval: self
                    .workers
                    .recycle_interval
                    .map_or_else(|| "0s".to_string(), format_duration),
            },
            tls: RawTls {
                enabled: self.tls.enabled,
                cert: self.tls.cert.display().to_string(),
                key: self.tls.key.display().to_string(),
            },
            sockjs: RawSockjs {
                prefix: self.sockjs.prefix.clone(),
                heartbeat: format_duration(self.sockjs.heartbeat),
                disconnect_delay: format_duration(self.sockjs.disconnect_delay),
                response_limit: self.sockjs.response_limit as i64,
                client_url: self.sockjs.client_url.clone(),
                websocket: self.sockjs.websocket,
                cookie_needed: self.sockjs.cookie_needed,
            },
            limits: RawLimits {
                max_frame_bytes: self.limits.max_frame_bytes as i64,
                outbound_queue: self.limits.outbound_queue as i64,
                max_topic_len: self.limits.max_topic_len as i64,
                max_message_bytes: self.limits.max_message_bytes as i64,
                messages_per_second: self.limits.messages_per_second.into(),
                burst: self.limits.burst.into(),
                max_sessions_per_worker: self.limits.max_sessions_per_worker as i64,
                max_sessions_per_ip: self.limits.max_sessions_per_ip as i64,
            },
            broker: RawBroker {
                kind: self.broker.kind,
                redis_url: self.broker.redis_url.clone(),
                socket: self.broker.socket.display().to_string(),
            },
            sessions: RawSessions {
                secret: self
                    .sessions
                    .secret
                    .as_ref()
                    .map(|_| "(set)".to_string())
                    .unwrap_or_default(),
                ttl: format_duration(self.sessions.ttl),
                handshake_timeout: format_duration(self.sessions.handshake_timeout),
                resume_grace: format_duration(self.sessions.resume_grace),
                default_whitelist: self
                    .sessions
                    .default_whitelist
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
            },
            http_topics: self
                .http_topics
                .iter()
                .map(|r| RawHttpTopic {
                    pattern: r.pattern.to_string(),
                    url: r.url.clone(),
                    timeout: format_duration(r.timeout),
                    headers: r.headers.iter().cloned().collect(),
                })
                .collect(),
            compat: RawCompat {
                legacy_handshake: self.compat.legacy_handshake,
            },
            cluster: RawCluster {
                enabled: self.cluster.enabled,
            },
            history: RawHistory {
                enabled: self.history.enabled,
                size: self.history.size as i64,
                ttl: format_duration(self.history.ttl),
            },
            auth: self.auth.to_raw(),
            hooks: self.hooks.to_raw(),
            api: RawApi {
                // Never print a secret.
                key: self
                    .api
                    .key
                    .as_ref()
                    .map(|_| "(set)".to_string())
                    .unwrap_or_default(),
            },
        }
    }

    /// Renders the effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_raw()).unwrap_or_else(|e| format!("# unprintable: {e}"))
    }

    /// The certificate and key files when TLS is enabled.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        self.tls.enabled.then(|| crate::tls::TlsFiles {
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
        })
    }

    /// The SockJS URL browsers use for the worker on `port`.
    pub fn worker_url(&self, port: u16) -> String {
        format!(
            "{}://{}:{}{}",
            self.http_scheme(),
            self.http.host_external,
            port,
            self.sockjs.prefix
        )
    }

    /// `http` or `https`, for URLs handed to browsers.
    pub fn http_scheme(&self) -> &'static str {
        if self.tls.enabled {
            "https"
        } else {
            "http"
        }
    }

    /// The script URL the SockJS iframe page loads.
    pub fn sockjs_client_url(&self) -> String {
        if self.sockjs.client_url.is_empty() {
            format!(
                "{}://{}:{}/js/sockjs.min.js",
                self.http_scheme(),
                self.http.host_external,
                self.http.main_port
            )
        } else {
            self.sockjs.client_url.clone()
        }
    }
}
fn choose_file(explicit: Option<&Path>) -> Result<Option<PathBuf>, ConfigErrors> {
    let named = explicit
        .map(|p| (p.to_path_buf(), "--config"))
        .or_else(|| std::env::var_os(CONFIG_ENV).map(|p| (PathBuf::from(p), CONFIG_ENV)));
    if let Some((path, origin)) = named {
        return match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(path)),
            Ok(_) => Err(ConfigErrors::one(ConfigError::FileMissing {
                origin,
                path,
                reason: "not a regular file".into(),
            })),
            Err(e) => Err(ConfigErrors::one(ConfigError::FileMissing {
                origin,
                path,
                reason: e.to_string(),
            })),
        };
    }
    Ok([LOCAL_CONFIG, SYSTEM_CONFIG]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file()))
}

fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests;
