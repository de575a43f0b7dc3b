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

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::topics::Pattern;

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
}

/// Which broker carries messages between workers, machines and backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// Redis pub/sub and keys (`broker.redis_url`).
    Redis,
}

/// `[broker]`.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    pub redis_url: String,
}

/// `[sessions]`: Rohrpost sessions (whitelists, data, resume tokens).
#[derive(Debug, Clone)]
pub struct SessionsConfig {
    /// HMAC key of resume tokens; `None`: generated once and shared through the broker.
    pub secret: Option<String>,
    pub ttl: Duration,
    pub handshake_timeout: Duration,
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
            },
            broker: RawBroker {
                kind: self.broker.kind,
                redis_url: self.broker.redis_url.clone(),
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

/// One problem with the configuration, naming the key and what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("config file {path} (from {origin}) cannot be read: {reason}")]
    FileMissing {
        origin: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("config: {0}")]
    Load(String),
    #[error("config key `{key}`: {value} is not a valid port (1..=65535)")]
    PortRange { key: &'static str, value: i64 },
    #[error(
        "config key `http.worker_base_port`: worker ports {first}..={last} run past 65535 \
         (lower the base port or `workers.count`)"
    )]
    WorkerPortsOverflow { first: i64, last: i64 },
    #[error(
        "config key `http.main_port`: port {main} collides with worker ports {first}..={last} \
         (`http.worker_base_port` + `workers.count`)"
    )]
    PortCollision { main: u16, first: u16, last: u16 },
    #[error(
        "config key `{key}`: {value:?} is not a duration (use e.g. \"25s\", \"500ms\", \"10m\")"
    )]
    Duration { key: &'static str, value: String },
    #[error("config key `{key}`: must be greater than zero")]
    Zero { key: &'static str },
    #[error("config key `{key}`: {value} is out of range ({range})")]
    Range {
        key: &'static str,
        value: i64,
        range: &'static str,
    },
    #[error("config key `{key}`: {value:?} must start with `/`{extra}")]
    Path {
        key: &'static str,
        value: String,
        extra: &'static str,
    },
    #[error("config key `{key}`: file {path} cannot be read: {reason}")]
    TlsFile {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("config key `{key}`: {value:?} is not a duration (use e.g. \"5s\", \"500ms\")")]
    DurationAt { key: String, value: String },
    #[error("config key `{key}`: {value:?} is not a valid topic pattern: {reason}")]
    Pattern {
        key: String,
        value: String,
        reason: String,
    },
    #[error("config key `broker.redis_url`: {value:?} is not a Redis URL: {reason}")]
    RedisUrl { value: String, reason: String },
    #[error("config key `{key}`: {value:?} is not an http:// or https:// URL with a host")]
    HttpUrl { key: String, value: String },
    #[error("config key `{key}`: {value:?} is not a valid HTTP header name")]
    HeaderName { key: String, value: String },
    #[error("config keys `tls.cert`/`tls.key`: {0}")]
    Tls(String),
    #[error("config key `{key}`: must not be empty")]
    Empty { key: &'static str },
}

/// Every problem found in one configuration; printed one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    fn one(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The configuration as written in the file: the serde form of [`Config`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub http: RawHttp,
    pub workers: RawWorkers,
    pub tls: RawTls,
    pub sockjs: RawSockjs,
    pub limits: RawLimits,
    pub broker: RawBroker,
    pub sessions: RawSessions,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_topics: Vec<RawHttpTopic>,
    pub compat: RawCompat,
    pub api: RawApi,
    pub cluster: RawCluster,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCluster {
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawApi {
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    pub host: String,
    pub host_external: String,
    pub main_port: i64,
    pub worker_base_port: i64,
    pub connect_path: String,
    pub static_dir: String,
    pub max_in_flight: i64,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            host: "0.0.0.0".into(),
            host_external: "localhost".into(),
            main_port: 3000,
            worker_base_port: 3001,
            connect_path: "/connect".into(),
            static_dir: "static".into(),
            max_in_flight: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawWorkers {
    /// `None`: one worker per CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    pub threads: i64,
    pub max_restarts: i64,
    pub restart_window: String,
    pub drain_timeout: String,
    pub recycle_interval: String,
}

impl Default for RawWorkers {
    fn default() -> Self {
        RawWorkers {
            count: None,
            threads: 1,
            max_restarts: 5,
            restart_window: "60s".into(),
            drain_timeout: "30s".into(),
            recycle_interval: "0s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTls {
    pub enabled: bool,
    pub cert: String,
    pub key: String,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls {
            enabled: false,
            cert: "keys/cert.pem".into(),
            key: "keys/key.pem".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSockjs {
    pub prefix: String,
    pub heartbeat: String,
    pub disconnect_delay: String,
    pub response_limit: i64,
    pub client_url: String,
    pub websocket: bool,
    pub cookie_needed: bool,
}

impl Default for RawSockjs {
    fn default() -> Self {
        RawSockjs {
            prefix: "/rohrpost".into(),
            heartbeat: "25s".into(),
            disconnect_delay: "5s".into(),
            response_limit: 128 * 1024,
            client_url: String::new(),
            websocket: true,
            cookie_needed: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    pub max_frame_bytes: i64,
    pub outbound_queue: i64,
    pub max_topic_len: i64,
    pub max_message_bytes: i64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_frame_bytes: 1024 * 1024,
            outbound_queue: 1024,
            max_topic_len: 256,
            max_message_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBroker {
    pub kind: BrokerKind,
    pub redis_url: String,
}

impl Default for RawBroker {
    fn default() -> Self {
        RawBroker {
            kind: BrokerKind::Redis,
            redis_url: "redis://127.0.0.1:6379/".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSessions {
    pub secret: String,
    pub ttl: String,
    pub handshake_timeout: String,
    pub default_whitelist: Vec<String>,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            secret: String::new(),
            ttl: "10m".into(),
            handshake_timeout: "10s".into(),
            default_whitelist: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpTopic {
    pub pattern: String,
    pub url: String,
    #[serde(default = "default_http_timeout")]
    pub timeout: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

fn default_http_timeout() -> String {
    "5s".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCompat {
    pub legacy_handshake: bool,
}

impl RawConfig {
    /// Checks every key and returns the typed configuration, or every problem found.
    pub fn validate(self, source: Option<PathBuf>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut port = |key: &'static str, value: i64| -> u16 {
            match u16::try_from(value) {
                Ok(p) if p > 0 => p,
                _ => {
                    errors.push(ConfigError::PortRange { key, value });
                    0
                }
            }
        };
        let main_port = port("http.main_port", self.http.main_port);
        let worker_base_port = port("http.worker_base_port", self.http.worker_base_port);

        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        let count = self.workers.count.unwrap_or(cpus);
        let count = checked_range(&mut errors, "workers.count", count, 1, 1024, "1..=1024");
        let threads = checked_range(
            &mut errors,
            "workers.threads",
            self.workers.threads,
            1,
            256,
            "1..=256",
        );

        if main_port > 0 && worker_base_port > 0 && count > 0 {
            let first = i64::from(worker_base_port);
            let last = first + count - 1;
            if last > 65535 {
                errors.push(ConfigError::WorkerPortsOverflow { first, last });
            } else if (first..=last).contains(&i64::from(main_port)) {
                errors.push(ConfigError::PortCollision {
                    main: main_port,
                    first: worker_base_port,
                    last: last as u16,
                });
            }
        }

        let heartbeat = duration(&mut errors, "sockjs.heartbeat", &self.sockjs.heartbeat);
        let disconnect_delay = duration(
            &mut errors,
            "sockjs.disconnect_delay",
            &self.sockjs.disconnect_delay,
        );
        let ttl = duration(&mut errors, "sessions.ttl", &self.sessions.ttl);
        let restart_window = duration(
            &mut errors,
            "workers.restart_window",
            &self.workers.restart_window,
        );
        let drain_timeout = duration(
            &mut errors,
            "workers.drain_timeout",
            &self.workers.drain_timeout,
        );
        let recycle_interval = match humantime::parse_duration(self.workers.recycle_interval.trim())
        {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(_) => {
                errors.push(ConfigError::Duration {
                    key: "workers.recycle_interval",
                    value: self.workers.recycle_interval.clone(),
                });
                None
            }
        };
        let max_restarts = checked_range(
            &mut errors,
            "workers.max_restarts",
            self.workers.max_restarts,
            1,
            1000,
            "1..=1000",
        );
        let handshake_timeout = duration(
            &mut errors,
            "sessions.handshake_timeout",
            &self.sessions.handshake_timeout,
        );

        let response_limit = checked_range(
            &mut errors,
            "sockjs.response_limit",
            self.sockjs.response_limit,
            1,
            i64::from(u32::MAX),
            "1..=4294967295 bytes",
        );
        let max_frame_bytes = checked_range(
            &mut errors,
            "limits.max_frame_bytes",
            self.limits.max_frame_bytes,
            1024,
            256 * 1024 * 1024,
            "1024..=268435456 bytes",
        );
        let outbound_queue = checked_range(
            &mut errors,
            "limits.outbound_queue",
            self.limits.outbound_queue,
            1,
            1_000_000,
            "1..=1000000 messages",
        );

        let max_topic_len = checked_range(
            &mut errors,
            "limits.max_topic_len",
            self.limits.max_topic_len,
            1,
            65_536,
            "1..=65536 bytes",
        ) as usize;
        let max_message_bytes = checked_range(
            &mut errors,
            "limits.max_message_bytes",
            self.limits.max_message_bytes,
            16,
            max_frame_bytes.max(16),
            "16..=limits.max_frame_bytes",
        );
        let max_in_flight = checked_range(
            &mut errors,
            "http.max_in_flight",
            self.http.max_in_flight,
            1,
            100_000,
            "1..=100000",
        );
        let mut default_whitelist = Vec::new();
        for p in &self.sessions.default_whitelist {
            match Pattern::parse(p, max_topic_len.max(1)) {
                Ok(p) => default_whitelist.push(p),
                Err(e) => errors.push(ConfigError::Pattern {
                    key: "sessions.default_whitelist".into(),
                    value: p.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        if let Err(e) = redis::Client::open(self.broker.redis_url.as_str()) {
            errors.push(ConfigError::RedisUrl {
                value: self.broker.redis_url.clone(),
                reason: e.to_string(),
            });
        }
        let mut http_topics = Vec::new();
        for (i, rule) in self.http_topics.iter().enumerate() {
            let key = |field: &str| format!("http_topics[{i}].{field}");
            let pattern = Pattern::parse(&rule.pattern, max_topic_len.max(1))
                .map_err(|e| {
                    errors.push(ConfigError::Pattern {
                        key: key("pattern"),
                        value: rule.pattern.clone(),
                        reason: e.to_string(),
                    })
                })
                .ok();
            let url = rule.url.trim_end_matches('/').to_string();
            let url_ok = url.parse::<actix_web::http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !url_ok {
                errors.push(ConfigError::HttpUrl {
                    key: key("url"),
                    value: rule.url.clone(),
                });
            }
            let timeout = match humantime::parse_duration(rule.timeout.trim()) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    errors.push(ConfigError::DurationAt {
                        key: key("timeout"),
                        value: rule.timeout.clone(),
                    });
                    Duration::ZERO
                }
            };
            for name in rule.headers.keys() {
                if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    errors.push(ConfigError::HeaderName {
                        key: key("headers"),
                        value: name.clone(),
                    });
                }
            }
            if let (Some(pattern), true) = (pattern, url_ok) {
                http_topics.push(HttpTopicRule {
                    pattern,
                    url,
                    timeout,
                    headers: rule.headers.clone().into_iter().collect(),
                });
            }
        }

        let prefix = self.sockjs.prefix.trim_end_matches('/').to_string();
        if !self.sockjs.prefix.starts_with('/') {
            errors.push(ConfigError::Path {
                key: "sockjs.prefix",
                value: self.sockjs.prefix.clone(),
                extra: "",
            });
        } else if prefix.is_empty() {
            errors.push(ConfigError::Path {
                key: "sockjs.prefix",
                value: self.sockjs.prefix.clone(),
                extra: " and name a path other than `/`",
            });
        }
        if !self.http.connect_path.starts_with('/') {
            errors.push(ConfigError::Path {
                key: "http.connect_path",
                value: self.http.connect_path.clone(),
                extra: "",
            });
        }
        if self.http.host.trim().is_empty() {
            errors.push(ConfigError::Empty { key: "http.host" });
        }
        if self.http.host_external.trim().is_empty() {
            errors.push(ConfigError::Empty {
                key: "http.host_external",
            });
        }

        if self.tls.enabled {
            let mut readable = true;
            for (key, path) in [("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
                if let Err(e) = std::fs::read(path) {
                    readable = false;
                    errors.push(ConfigError::TlsFile {
                        key,
                        path: PathBuf::from(path),
                        reason: e.to_string(),
                    });
                }
            }
            if readable {
                let files = crate::tls::TlsFiles {
                    cert: PathBuf::from(&self.tls.cert),
                    key: PathBuf::from(&self.tls.key),
                };
                if let Err(e) = files.server_config() {
                    errors.push(ConfigError::Tls(e.to_string()));
                }
            }
        }

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            source,
            http: HttpConfig {
                host: self.http.host,
                host_external: self.http.host_external,
                main_port,
                worker_base_port,
                connect_path: self.http.connect_path,
                max_in_flight: max_in_flight as usize,
                static_dir: (!self.http.static_dir.is_empty())
                    .then(|| PathBuf::from(self.http.static_dir)),
            },
            workers: WorkersConfig {
                count: count as u16,
                threads: threads as usize,
                max_restarts: max_restarts as u32,
                restart_window,
                drain_timeout,
                recycle_interval,
            },
            tls: TlsConfig {
                enabled: self.tls.enabled,
                cert: PathBuf::from(self.tls.cert),
                key: PathBuf::from(self.tls.key),
            },
            sockjs: SockjsConfig {
                prefix,
                heartbeat,
                disconnect_delay,
                response_limit: response_limit as usize,
                client_url: self.sockjs.client_url,
                websocket: self.sockjs.websocket,
                cookie_needed: self.sockjs.cookie_needed,
            },
            limits: LimitsConfig {
                max_frame_bytes: max_frame_bytes as usize,
                outbound_queue: outbound_queue as usize,
                max_topic_len,
                max_message_bytes: max_message_bytes as usize,
            },
            broker: BrokerConfig {
                kind: self.broker.kind,
                redis_url: self.broker.redis_url,
            },
            sessions: SessionsConfig {
                secret: (!self.sessions.secret.is_empty()).then_some(self.sessions.secret),
                ttl,
                handshake_timeout,
                default_whitelist,
            },
            http_topics,
            compat: CompatConfig {
                legacy_handshake: self.compat.legacy_handshake,
            },
            api: ApiConfig {
                key: (!self.api.key.is_empty()).then_some(self.api.key),
            },
            cluster: ClusterConfig {
                enabled: self.cluster.enabled,
            },
        })
    }
}

fn checked_range(
    errors: &mut Vec<ConfigError>,
    key: &'static str,
    value: i64,
    min: i64,
    max: i64,
    range: &'static str,
) -> i64 {
    if (min..=max).contains(&value) {
        value
    } else {
        errors.push(ConfigError::Range { key, value, range });
        0
    }
}

fn duration(errors: &mut Vec<ConfigError>, key: &'static str, value: &str) -> Duration {
    match humantime::parse_duration(value.trim()) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            errors.push(ConfigError::Zero { key });
            Duration::ZERO
        }
        Err(_) => {
            errors.push(ConfigError::Duration {
                key,
                value: value.to_string(),
            });
            Duration::ZERO
        }
    }
}

fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(raw: RawConfig) -> Vec<ConfigError> {
        raw.validate(None).err().map(|e| e.0).unwrap_or_default()
    }

    #[test]
    fn defaults_are_valid() {
        let config = RawConfig::default().validate(None).expect("defaults valid");
        assert_eq!(config.http.main_port, 3000);
        assert_eq!(config.sockjs.heartbeat, Duration::from_secs(25));
        assert_eq!(config.sockjs.prefix, "/rohrpost");
    }

    #[test]
    fn main_port_inside_worker_range_is_reported() {
        let mut raw = RawConfig::default();
        raw.workers.count = Some(4);
        raw.http.main_port = 3002;
        assert_eq!(
            errors_of(raw),
            vec![ConfigError::PortCollision {
                main: 3002,
                first: 3001,
                last: 3004
            }]
        );
    }

    #[test]
    fn worker_ports_past_65535_are_reported() {
        let mut raw = RawConfig::default();
        raw.workers.count = Some(4);
        raw.http.worker_base_port = 65534;
        assert_eq!(
            errors_of(raw),
            vec![ConfigError::WorkerPortsOverflow {
                first: 65534,
                last: 65537
            }]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut raw = RawConfig::default();
        raw.http.main_port = 70000;
        raw.sockjs.heartbeat = "soon".into();
        raw.sockjs.prefix = "rohrpost".into();
        let errors = errors_of(raw);
        assert_eq!(errors.len(), 3, "{errors:?}");
        let text = ConfigErrors(errors).to_string();
        assert!(text.contains("`http.main_port`: 70000"));
        assert!(text.contains("`sockjs.heartbeat`: \"soon\""));
        assert!(text.contains("`sockjs.prefix`: \"rohrpost\" must start with `/`"));
    }

    #[test]
    fn trailing_slash_of_prefix_is_dropped() {
        let mut raw = RawConfig::default();
        raw.sockjs.prefix = "/echo/".into();
        assert_eq!(raw.validate(None).unwrap().sockjs.prefix, "/echo");
    }

    #[test]
    fn missing_tls_files_are_reported_when_enabled() {
        let mut raw = RawConfig::default();
        raw.tls.enabled = true;
        raw.tls.cert = "/nonexistent/cert.pem".into();
        raw.tls.key = "/nonexistent/key.pem".into();
        let errors = errors_of(raw);
        assert_eq!(errors.len(), 2);
        assert!(errors[0].to_string().starts_with("config key `tls.cert`"));
    }

    #[test]
    fn printed_config_parses_back_to_the_same() {
        let config = RawConfig::default().validate(None).unwrap();
        let text = config.to_toml();
        let raw: RawConfig = toml::from_str(&text).expect("printed config parses");
        let again = raw.validate(None).unwrap();
        assert_eq!(again.to_toml(), text);
    }
}
