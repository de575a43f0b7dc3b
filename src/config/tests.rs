//! Unit tests of configuration validation.
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

#[test]
fn allowed_origins_are_normalised_and_checked() {
    let mut raw = RawConfig::default();
    raw.http.allowed_origins = vec![
        " HTTPS://Chat.Example.com ".into(),
        "http://a.test:8080".into(),
    ];
    let config = raw.validate(None).expect("valid origins");
    assert_eq!(
        config.http.allowed_origins,
        ["https://chat.example.com", "http://a.test:8080"]
    );
    let mut raw = RawConfig::default();
    raw.http.allowed_origins = vec![
        "chat.example.com".into(),
        "https://a.test/path".into(),
        "https://*.example.com".into(),
        "ftp://a.test".into(),
    ];
    let errors = errors_of(raw);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors
        .iter()
        .all(|e| e.to_string().contains("`http.allowed_origins`")));
}

#[test]
fn rate_limit_and_header_timeout_are_checked() {
    let mut raw = RawConfig::default();
    raw.limits.messages_per_second = 0;
    raw.limits.burst = -1;
    raw.http.header_timeout = "0s".into();
    let text = ConfigErrors(errors_of(raw)).to_string();
    assert!(text.contains("`limits.messages_per_second`: 0"), "{text}");
    assert!(text.contains("`limits.burst`: -1"), "{text}");
    assert!(text.contains("`http.header_timeout`"), "{text}");
    let config = RawConfig::default().validate(None).unwrap();
    assert_eq!(config.limits.messages_per_second, 100);
    assert_eq!(config.limits.burst, 200);
    assert_eq!(config.http.header_timeout, Duration::from_secs(5));
}

#[test]
fn session_caps_are_checked() {
    let mut raw = RawConfig::default();
    raw.limits.max_sessions_per_worker = 0;
    raw.limits.max_sessions_per_ip = -5;
    let text = ConfigErrors(errors_of(raw)).to_string();
    assert!(
        text.contains("`limits.max_sessions_per_worker`: 0"),
        "{text}"
    );
    assert!(text.contains("`limits.max_sessions_per_ip`: -5"), "{text}");
    let config = RawConfig::default().validate(None).unwrap();
    assert_eq!(config.limits.max_sessions_per_worker, 20_000);
    assert_eq!(config.limits.max_sessions_per_ip, 1_000);
}
