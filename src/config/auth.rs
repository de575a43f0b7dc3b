//! `[auth]` and `[hooks]`: connect-time authentication (see [`crate::auth`]), in file form,
//! typed, validated and printed back.
//!
//! `[hooks]` holds the HTTP hooks Rohrpost calls itself; each hook's keys share its prefix
//! (`connect_*` for the connect hook), so that more hooks fit beside it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{format_duration, ConfigError};
use crate::auth::token::VerifyingKey;

/// The largest `auth.leeway`: more skew than that is a clock to fix, not to allow for.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    pub required: bool,
    pub hs256_secret: String,
    pub rs256_public_keys: Vec<String>,
    pub es256_public_keys: Vec<String>,
    pub issuer: String,
    pub audience: String,
    pub leeway: String,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            required: false,
            hs256_secret: String::new(),
            rs256_public_keys: Vec::new(),
            es256_public_keys: Vec::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHooks {
    pub connect_url: String,
    pub connect_timeout: String,
    pub connect_on_error: ConnectOnError,
    pub events_url: String,
    pub events_timeout: String,
    pub events_attempts: i64,
}

impl Default for RawHooks {
    fn default() -> Self {
        RawHooks {
            connect_url: String::new(),
            connect_timeout: "5s".into(),
            connect_on_error: ConnectOnError::Refuse,
            events_url: String::new(),
            events_timeout: "5s".into(),
            events_attempts: 10,
        }
    }
}

/// `[auth]`: tokens in the hello.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Sessions need a valid token or the connect hook's approval.
    pub required: bool,
    /// The HS256 secret, then the RS256 and ES256 public keys, parsed.
    pub keys: Vec<VerifyingKey>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// `[hooks]`: HTTP hooks Rohrpost calls.
#[derive(Debug, Clone)]
pub struct HooksConfig {
    /// `None`: no connect hook.
    pub connect_url: Option<String>,
    pub connect_timeout: Duration,
    pub connect_on_error: ConnectOnError,
    /// `None`: session events are only published on `rohrpost.events`, not POSTed.
    pub events_url: Option<String>,
    /// The longest one POST of events may take.
    pub events_timeout: Duration,
    /// How many times a batch of events is tried before it is dropped (logged, counted).
    pub events_attempts: u32,
}

/// What a connect hook that cannot be asked (timeout, no connection, 5xx) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectOnError {
    /// The session is refused (close 1013: try again later).
    Refuse,
    /// The session goes on without the hook's grant (with `auth.required`, only with a token).
    Allow,
}

impl RawAuth {
    pub(super) fn validate(&self, hook_on: bool, errors: &mut Vec<ConfigError>) -> AuthConfig {
        let mut keys = Vec::new();
        if !self.hs256_secret.is_empty() {
            match VerifyingKey::hs256(&self.hs256_secret) {
                Ok(key) => keys.push(key),
                Err(e) => errors.push(ConfigError::AuthSecret {
                    reason: e.to_string(),
                }),
            }
        }
        let files = [
            ("auth.rs256_public_keys", &self.rs256_public_keys, true),
            ("auth.es256_public_keys", &self.es256_public_keys, false),
        ];
        for (key, paths, rsa) in files {
            for path in paths {
                let parsed = if rsa {
                    VerifyingKey::rs256_pem(Path::new(path))
                } else {
                    VerifyingKey::es256_pem(Path::new(path))
                };
                match parsed {
                    Ok(k) => keys.push(k),
                    Err(e) => errors.push(ConfigError::AuthKey {
                        key,
                        path: path.into(),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        let leeway = match humantime::parse_duration(self.leeway.trim()) {
            Ok(d) if d <= MAX_LEEWAY => d,
            _ => {
                errors.push(ConfigError::DurationAtMost {
                    key: "auth.leeway",
                    value: self.leeway.clone(),
                    max: format_duration(MAX_LEEWAY),
                });
                Duration::ZERO
            }
        };
        let configured = !self.hs256_secret.is_empty()
            || !self.rs256_public_keys.is_empty()
            || !self.es256_public_keys.is_empty();
        if self.required && !configured && !hook_on {
            errors.push(ConfigError::AuthRequiredWithoutMeans);
        }
        let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        AuthConfig {
            required: self.required,
            keys,
            issuer: text(&self.issuer),
            audience: text(&self.audience),
            leeway,
        }
    }
}

impl RawHooks {
    /// Whether a connect hook is configured (for `auth.required`'s check).
    pub(super) fn connect_on(&self) -> bool {
        !self.connect_url.trim().is_empty()
    }

    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) -> HooksConfig {
        let connect_url = match self.connect_url.trim() {
            "" => None,
            url if super::validate::http_url(url) => Some(url.to_string()),
            _ => {
                errors.push(ConfigError::HttpUrl {
                    key: "hooks.connect_url".into(),
                    value: self.connect_url.clone(),
                });
                None
            }
        };
        let connect_timeout =
            super::validate::duration(errors, "hooks.connect_timeout", &self.connect_timeout);
        let events_url = match self.events_url.trim() {
            "" => None,
            url if super::validate::http_url(url) => Some(url.to_string()),
            _ => {
                errors.push(ConfigError::HttpUrl {
                    key: "hooks.events_url".into(),
                    value: self.events_url.clone(),
                });
                None
            }
        };
        let events_timeout =
            super::validate::duration(errors, "hooks.events_timeout", &self.events_timeout);
        let events_attempts = match u32::try_from(self.events_attempts) {
            Ok(n @ 1..=1000) => n,
            _ => {
                errors.push(ConfigError::Range {
                    key: "hooks.events_attempts",
                    value: self.events_attempts,
                    range: "1..=1000",
                });
                1
            }
        };
        HooksConfig {
            connect_url,
            connect_timeout,
            connect_on_error: self.connect_on_error,
            events_url,
            events_timeout,
            events_attempts,
        }
    }
}

impl AuthConfig {
    /// The file form, as `check-config` prints it: never the secret itself.
    pub(super) fn to_raw(&self) -> RawAuth {
        let paths = |alg| {
            (self.keys.iter())
                .filter(|k| k.algorithm() == alg)
                .map(|k| k.source().to_string())
                .collect()
        };
        let has_secret = self
            .keys
            .iter()
            .any(|k| k.algorithm() == jsonwebtoken::Algorithm::HS256);
        RawAuth {
            required: self.required,
            hs256_secret: if has_secret {
                "(set)".into()
            } else {
                String::new()
            },
            rs256_public_keys: paths(jsonwebtoken::Algorithm::RS256),
            es256_public_keys: paths(jsonwebtoken::Algorithm::ES256),
            issuer: self.issuer.clone().unwrap_or_default(),
            audience: self.audience.clone().unwrap_or_default(),
            leeway: format_duration(self.leeway),
        }
    }
}

impl HooksConfig {
    pub(super) fn to_raw(&self) -> RawHooks {
        RawHooks {
            connect_url: self.connect_url.clone().unwrap_or_default(),
            connect_timeout: format_duration(self.connect_timeout),
            connect_on_error: self.connect_on_error,
            events_url: self.events_url.clone().unwrap_or_default(),
            events_timeout: format_duration(self.events_timeout),
            events_attempts: i64::from(self.events_attempts),
        }
    }
}

#[cfg(test)]
mod tests;
