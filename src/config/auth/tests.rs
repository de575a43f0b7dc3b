//! `[auth]` and `[hooks]`: defaults, every problem named by its key, printed without secrets.

use std::time::Duration;

use super::super::{ConfigError, ConfigErrors, RawConfig};
use super::ConnectOnError;

fn fixture(name: &str) -> String {
    format!("{}/test/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn errors_text(raw: RawConfig) -> String {
    ConfigErrors(raw.validate(None).err().map(|e| e.0).unwrap_or_default()).to_string()
}

#[test]
fn auth_and_hooks_are_off_by_default() {
    let config = RawConfig::default().validate(None).unwrap();
    assert!(!config.auth.required);
    assert!(config.auth.keys.is_empty());
    assert_eq!(config.auth.leeway, Duration::from_secs(30));
    assert_eq!((config.auth.issuer, config.auth.audience), (None, None));
    assert_eq!(config.hooks.connect_url, None);
    assert_eq!(config.hooks.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.hooks.connect_on_error, ConnectOnError::Refuse);
}

#[test]
fn keys_are_parsed_and_printed_as_paths_never_the_secret() {
    let mut raw = RawConfig::default();
    raw.auth.hs256_secret = "a secret of thirty-two bytes or more".into();
    raw.auth.rs256_public_keys = vec![
        fixture("rs256-public.pem"),
        fixture("rs256-other-public.pem"),
    ];
    raw.auth.es256_public_keys = vec![fixture("es256-public.pem")];
    raw.auth.issuer = " https://login.example ".into();
    raw.auth.audience = "rohrpost".into();
    raw.auth.leeway = "0s".into();
    raw.hooks.connect_url = "https://auth.example/connect".into();
    raw.hooks.connect_timeout = "750ms".into();
    raw.hooks.connect_on_error = ConnectOnError::Allow;
    let config = raw.validate(None).expect("valid");
    assert_eq!(config.auth.keys.len(), 4);
    assert_eq!(config.auth.issuer.as_deref(), Some("https://login.example"));
    assert_eq!(config.auth.leeway, Duration::ZERO);
    assert_eq!(
        config.hooks.connect_url.as_deref(),
        Some("https://auth.example/connect")
    );
    assert_eq!(config.hooks.connect_timeout, Duration::from_millis(750));
    let text = config.to_toml();
    assert!(!text.contains("thirty-two"), "{text}");
    assert!(text.contains("hs256_secret = \"(set)\""), "{text}");
    assert!(text.contains("rs256-other-public.pem"), "{text}");
    assert!(text.contains("connect_on_error = \"allow\""), "{text}");
    assert!(text.contains("leeway = \"0s\""), "{text}");
}

#[test]
fn bad_keys_are_reported_by_key_and_file() {
    let mut raw = RawConfig::default();
    raw.auth.hs256_secret = "short".into();
    raw.auth.rs256_public_keys = vec![fixture("rs256-private.pem"), fixture("missing.pem")];
    raw.auth.es256_public_keys = vec![fixture("es384-public.pem"), fixture("rs256-public.pem")];
    let text = errors_text(raw);
    assert!(
        text.contains("`auth.hs256_secret`: must be at least 32 bytes"),
        "{text}"
    );
    assert!(
        text.contains("rs256-private.pem holds a private key"),
        "{text}"
    );
    assert!(text.contains("missing.pem cannot be read"), "{text}");
    assert!(
        text.contains("es384-public.pem is an EC key of another curve"),
        "{text}"
    );
    assert!(
        text.contains("rs256-public.pem is not a PEM EC public key"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5, "{text}");
}

#[test]
fn required_needs_keys_or_a_hook() {
    let mut raw = RawConfig::default();
    raw.auth.required = true;
    let errors = raw.clone().validate(None).unwrap_err().0;
    assert_eq!(errors, vec![ConfigError::AuthRequiredWithoutMeans]);
    raw.hooks.connect_url = "http://127.0.0.1:8080/connect".into();
    assert!(raw.clone().validate(None).is_ok());
    raw.hooks.connect_url = String::new();
    raw.auth.es256_public_keys = vec![fixture("es256-public.pem")];
    assert!(raw.validate(None).is_ok());
}

#[test]
fn hook_url_timeout_and_leeway_are_checked() {
    let mut raw = RawConfig::default();
    raw.hooks.connect_url = "auth.example/connect".into();
    raw.hooks.connect_timeout = "0s".into();
    raw.auth.leeway = "1h".into();
    let text = errors_text(raw);
    assert!(
        text.contains("`hooks.connect_url`: \"auth.example/connect\""),
        "{text}"
    );
    assert!(
        text.contains("`hooks.connect_timeout`: must be greater than zero"),
        "{text}"
    );
    assert!(
        text.contains("`auth.leeway`: \"1h\" is not a duration of at most 5m"),
        "{text}"
    );
}

#[test]
fn connect_on_error_takes_refuse_or_allow() {
    let raw: Result<RawConfig, _> = toml::from_str("[hooks]\nconnect_on_error = \"maybe\"\n");
    let error = raw.unwrap_err().to_string();
    assert!(
        error.contains("refuse") && error.contains("allow"),
        "{error}"
    );
}
