//! Validation: [`RawConfig`] to [`Config`], collecting every problem.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

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
        let history_ttl = duration(&mut errors, "history.ttl", &self.history.ttl);
        let history_size = checked_range(
            &mut errors,
            "history.size",
            self.history.size,
            1,
            10_000_000,
            "1..=10000000 entries",
        );
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
        let resume_grace = duration(
            &mut errors,
            "sessions.resume_grace",
            &self.sessions.resume_grace,
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
        let messages_per_second = checked_range(
            &mut errors,
            "limits.messages_per_second",
            self.limits.messages_per_second,
            1,
            1_000_000,
            "1..=1000000 messages per second",
        );
        let burst = checked_range(
            &mut errors,
            "limits.burst",
            self.limits.burst,
            1,
            1_000_000,
            "1..=1000000 messages",
        );
        let max_sessions_per_worker = checked_range(
            &mut errors,
            "limits.max_sessions_per_worker",
            self.limits.max_sessions_per_worker,
            1,
            10_000_000,
            "1..=10000000 sessions",
        );
        let max_sessions_per_ip = checked_range(
            &mut errors,
            "limits.max_sessions_per_ip",
            self.limits.max_sessions_per_ip,
            1,
            10_000_000,
            "1..=10000000 sessions",
        );
        let header_timeout = duration(
            &mut errors,
            "http.header_timeout",
            &self.http.header_timeout,
        );
        let body_timeout = duration(&mut errors, "http.body_timeout", &self.http.body_timeout);
        let allowed_origins = origins(&mut errors, &self.http.allowed_origins);
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
        if self.cluster.enabled && self.broker.kind != BrokerKind::Redis {
            errors.push(ConfigError::ClusterNeedsRedis);
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
            let url_ok = http_url(&url);
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

        let hooks = self.hooks.validate(&mut errors);
        let auth = self.auth.validate(self.hooks.connect_on(), &mut errors);

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
                allowed_origins,
                header_timeout,
                body_timeout,
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
                messages_per_second: messages_per_second as u32,
                burst: burst as u32,
                max_sessions_per_worker: max_sessions_per_worker as usize,
                max_sessions_per_ip: max_sessions_per_ip as usize,
            },
            broker: BrokerConfig {
                kind: self.broker.kind,
                redis_url: self.broker.redis_url,
                socket: if self.broker.socket.is_empty() {
                    default_socket(main_port)
                } else {
                    PathBuf::from(self.broker.socket)
                },
            },
            sessions: SessionsConfig {
                secret: (!self.sessions.secret.is_empty()).then_some(self.sessions.secret),
                ttl,
                handshake_timeout,
                resume_grace,
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
            history: HistoryConfig {
                enabled: self.history.enabled,
                size: history_size as usize,
                ttl: history_ttl,
            },
            auth,
            hooks,
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

/// Whether `url` is an `http://` or `https://` URL with a host.
pub(super) fn http_url(url: &str) -> bool {
    url.parse::<actix_web::http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

pub(super) fn duration(errors: &mut Vec<ConfigError>, key: &'static str, value: &str) -> Duration {
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

/// `http.allowed_origins`: each `scheme://host[:port]` as browsers send it in `Origin`
/// (lower case, no path, no trailing slash), kept normalised.
fn origins(errors: &mut Vec<ConfigError>, values: &[String]) -> Vec<String> {
    let mut kept = Vec::new();
    for value in values {
        let origin = value.trim().to_ascii_lowercase();
        let shaped = origin.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https")
                && !rest.is_empty()
                && !rest.contains(['/', '?', '#', ' ', '*'])
        });
        if shaped {
            kept.push(origin);
        } else {
            errors.push(ConfigError::Origin {
                value: value.clone(),
            });
        }
    }
    kept
}

/// The embedded broker's socket when none is configured: in a directory of its own under the
/// temporary directory, named after the user and the main port (so that two supervisors on one
/// machine do not meet).
fn default_socket(main_port: u16) -> PathBuf {
    let user = std::env::var("USER").unwrap_or_else(|_| "rohrpost".into());
    std::env::temp_dir()
        .join(format!("rohrpost-{user}-{main_port}"))
        .join("broker.sock")
}
