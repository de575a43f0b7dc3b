//! Configuration errors: one per problem, each naming the key and what to do.

use std::fmt;
use std::path::PathBuf;

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
    #[error(
        "config key `http.allowed_origins`: {value:?} is not an origin (write \
         \"https://host\" or \"https://host:port\", as browsers send it; no path)"
    )]
    Origin { value: String },
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
    #[error(
        "config key `cluster.enabled`: a cluster shares one Redis; set `broker.kind = \"redis\"`"
    )]
    ClusterNeedsRedis,
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
    #[error("config key `{key}`: file {path} {reason}")]
    AuthKey {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("config key `auth.hs256_secret`: {reason}")]
    AuthSecret { reason: String },
    #[error(
        "config key `auth.required`: no way to authenticate; set `auth.hs256_secret`, \
         `auth.rs256_public_keys` or `auth.es256_public_keys`, or `hooks.connect_url`"
    )]
    AuthRequiredWithoutMeans,
    #[error("config key `{key}`: {value:?} is not a duration of at most {max} (e.g. \"30s\")")]
    DurationAtMost {
        key: &'static str,
        value: String,
        max: String,
    },
}

/// Every problem found in one configuration; printed one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub(super) fn one(e: ConfigError) -> Self {
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
