//! The configuration as written in the file and the environment: the serde form of
//! [`Config`](super::Config), with the built-in defaults. Durations are strings and ports plain
//! integers here, so that validation can report every problem, not just the first one.

use serde::{Deserialize, Serialize};

use super::{BrokerKind, RawAuth, RawHooks};

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
    pub history: RawHistory,
    pub auth: RawAuth,
    pub hooks: RawHooks,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHistory {
    pub enabled: bool,
    pub size: i64,
    pub ttl: String,
}

impl Default for RawHistory {
    fn default() -> Self {
        RawHistory {
            enabled: true,
            size: 10_000,
            ttl: "5m".into(),
        }
    }
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
    pub allowed_origins: Vec<String>,
    pub header_timeout: String,
    pub body_timeout: String,
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
            allowed_origins: Vec::new(),
            header_timeout: "5s".into(),
            body_timeout: "10s".into(),
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
    pub messages_per_second: i64,
    pub burst: i64,
    pub max_sessions_per_worker: i64,
    pub max_sessions_per_ip: i64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_frame_bytes: 1024 * 1024,
            outbound_queue: 1024,
            max_topic_len: 256,
            max_message_bytes: 64 * 1024,
            messages_per_second: 100,
            burst: 200,
            max_sessions_per_worker: 20_000,
            max_sessions_per_ip: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBroker {
    pub kind: BrokerKind,
    pub redis_url: String,
    /// `""`: a private directory under the system's temporary directory, per main port.
    pub socket: String,
}

impl Default for RawBroker {
    fn default() -> Self {
        RawBroker {
            kind: BrokerKind::Local,
            redis_url: "redis://127.0.0.1:6379/".into(),
            socket: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSessions {
    pub secret: String,
    pub ttl: String,
    pub handshake_timeout: String,
    pub resume_grace: String,
    pub default_whitelist: Vec<String>,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            secret: String::new(),
            ttl: "10m".into(),
            handshake_timeout: "10s".into(),
            resume_grace: "10s".into(),
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
