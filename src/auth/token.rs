//! JWTs in the hello: `{"hello": 1, "token": "<JWT>"}`, verified here with no network round
//! trip, and `{"refresh": "<JWT>"}` later to extend the session past the first token's `exp`.
//!
//! Keys come from `[auth]` ([`VerifyingKey`], parsed when the configuration is loaded): an
//! HS256 secret, RS256 and ES256 public keys (PEM files, several of each for rotation). A
//! token's `alg` must be one with a configured key (`none` never is); a token naming a `kid` is
//! tried with the keys of that id (a key file's id is its name without `.pem`) and, if none has
//! it, with every key of its algorithm. `exp` is required; `nbf` is checked when present;
//! `iss` and `aud` must match `auth.issuer` / `auth.audience` when those are set; every time
//! check allows `auth.leeway` of clock skew.
//!
//! The claims Rohrpost reads ([`Claims`]):
//!
//! ```json
//! {"sub": "ada", "exp": 1767225600,
//!  "rohrpost": {"add": ["chat.room.*"], "remove": ["anonym.*"], "sessionData": {"name": "Ada"}}}
//! ```
//!
//! `rohrpost` is applied to the session like a message on its direct topic (`add`, `remove`,
//! `sessionData`); without `rohrpost.sessionData`, a `sub` sets the session data to
//! `{"user": sub}`.
//!
//! What a client hears of a refused token is only [`TokenError`]'s level (invalid, expired,
//! not valid yet, wrong audience, wrong issuer); the detail goes to the debug log.

use std::fmt;
use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use log::debug;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::protocol::BackendMessage;

/// The longest token verified; a longer one is invalid without being parsed.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// One key a token may be signed with.
#[derive(Clone)]
pub struct VerifyingKey {
    algorithm: Algorithm,
    /// The `kid` that selects this key: the file name without `.pem` (none for the secret).
    kid: Option<String>,
    /// Where it came from (a path, or `auth.hs256_secret`), for `check-config` and the log.
    source: String,
    key: DecodingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({:?}, {})", self.algorithm, self.source)
    }
}

/// Why a configured key cannot be used (for the config error naming it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("cannot be read: {0}")]
    Unreadable(String),
    #[error("holds a private key: configure the public half (`openssl pkey -in KEY -pubout`)")]
    Private,
    #[error("is not a PEM {0} public key (-----BEGIN PUBLIC KEY-----)")]
    NotPublicKey(&'static str),
    #[error("is an EC key of another curve than P-256 (ES256 is P-256 only)")]
    WrongCurve,
    #[error("is an RSA key of {0} bits; RS256 keys must have 2048 to 8192")]
    RsaSize(usize),
    #[error("must be at least 32 bytes (256 bits, as RFC 7518 asks of HS256 keys); it has {0}")]
    ShortSecret(usize),
}

impl VerifyingKey {
    /// The HS256 shared secret (its bytes as written).
    pub fn hs256(secret: &str) -> Result<VerifyingKey, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        let key = DecodingKey::from_secret(secret.as_bytes())
            .map_err(|_| KeyError::ShortSecret(secret.len()))?;
        Ok(VerifyingKey {
            algorithm: Algorithm::HS256,
            kid: None,
            source: "auth.hs256_secret".into(),
            key,
        })
    }

    /// An RS256 public key from a PEM file (`PUBLIC KEY` or `RSA PUBLIC KEY`).
    pub fn rs256_pem(path: &Path) -> Result<VerifyingKey, KeyError> {
        let pem = read_public_pem(path)?;
        let key = DecodingKey::from_rsa_pem(&pem).map_err(|_| KeyError::NotPublicKey("RSA"))?;
        // What ring verifies with RSA_PKCS1_2048_8192_SHA256: a shorter or longer key would
        // refuse every token, so it is refused here, where the operator sees why.
        let der = key.try_get_as_bytes().unwrap_or_default();
        match rsa_modulus_bits(der) {
            Some(bits) if (2048..=8192).contains(&bits) => {}
            Some(bits) => return Err(KeyError::RsaSize(bits)),
            None => return Err(KeyError::NotPublicKey("RSA")),
        }
        Ok(Self::from_file(Algorithm::RS256, path, key))
    }

    /// An ES256 public key (P-256) from a PEM file (`PUBLIC KEY`).
    pub fn es256_pem(path: &Path) -> Result<VerifyingKey, KeyError> {
        let pem = read_public_pem(path)?;
        let key = DecodingKey::from_ec_pem(&pem).map_err(|_| KeyError::NotPublicKey("EC"))?;
        // The uncompressed point of a P-256 key: 0x04, then 32 bytes each of x and y.
        let point = key.try_get_as_bytes().unwrap_or_default();
        if point.len() != 65 || point[0] != 4 {
            return Err(KeyError::WrongCurve);
        }
        Ok(Self::from_file(Algorithm::ES256, path, key))
    }

    fn from_file(algorithm: Algorithm, path: &Path, key: DecodingKey) -> VerifyingKey {
        VerifyingKey {
            algorithm,
            kid: path.file_stem().map(|s| s.to_string_lossy().into_owned()),
            source: path.display().to_string(),
            key,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// A path, or `auth.hs256_secret`.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The bit length of an RSA public key's modulus, from its PKCS#1 DER form
/// (`SEQUENCE { INTEGER n, INTEGER e }`).
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (0x30, sequence) = der_item(der)? else {
        return None;
    };
    let (0x02, modulus) = der_item(sequence)? else {
        return None;
    };
    let first = modulus.iter().position(|&b| b != 0)?;
    let modulus = &modulus[first..];
    Some(modulus.len() * 8 - modulus[0].leading_zeros() as usize)
}

/// The tag and contents of the DER item `input` starts with.
fn der_item(input: &[u8]) -> Option<(u8, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        (bytes.iter().fold(0, |n, &b| n << 8 | usize::from(b)), rest)
    };
    Some((tag, rest.get(..len)?))
}

/// The file's bytes, if it holds a public key (a private one is refused: it does not belong on
/// a server that only verifies).
fn read_public_pem(path: &Path) -> Result<Vec<u8>, KeyError> {
    let pem = std::fs::read(path).map_err(|e| KeyError::Unreadable(e.to_string()))?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("PRIVATE KEY-----") {
        return Err(KeyError::Private);
    }
    Ok(pem)
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `sub`, if the token has one: a refresh must carry the same.
    pub subject: Option<String>,
    /// `exp`, Unix seconds.
    pub expires: u64,
    /// Unix time (seconds) until which the token is accepted: `exp` plus the leeway. A session
    /// authenticated by it closes then, unless refreshed.
    pub valid_until: u64,
    /// What the token grants: `rohrpost.add`, `.remove`, `.sessionData` (or `{"user": sub}`).
    pub grant: BackendMessage,
}

/// Why a token was refused, at the level a client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, signed with an algorithm or key not configured, a bad signature, claims of
    /// the wrong shape.
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead.
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token has the wrong audience")]
    Audience,
    #[error("token has the wrong issuer")]
    Issuer,
}

/// The claims as a token carries them.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<String>,
    /// Checked by `jsonwebtoken` already (a number, present); a NumericDate may have a fraction.
    exp: f64,
    #[serde(default)]
    rohrpost: Option<RohrpostClaim>,
}

/// The `rohrpost` claim: what the token grants.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RohrpostClaim {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    session_data: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl RawClaims {
    fn into_claims(self, leeway: u64) -> Claims {
        let RohrpostClaim {
            add,
            remove,
            session_data,
        } = self.rohrpost.unwrap_or(RohrpostClaim {
            add: Vec::new(),
            remove: Vec::new(),
            session_data: None,
        });
        let session_data = session_data.or_else(|| {
            self.sub
                .as_ref()
                .map(|sub| serde_json::json!({"user": sub}))
        });
        let expires = self.exp.max(0.0) as u64;
        Claims {
            subject: self.sub,
            expires,
            valid_until: expires.saturating_add(leeway),
            grant: BackendMessage {
                add,
                remove,
                session_data,
                ..BackendMessage::default()
            },
        }
    }
}

/// Verifies tokens against the configured keys; see the module docs.
pub struct TokenVerifier {
    keys: Vec<VerifyingKey>,
    /// One per algorithm that has keys: only that algorithm allowed.
    validations: Vec<(Algorithm, Validation)>,
    leeway: u64,
}

/// What the verifier checks besides the keys (from `[auth]`).
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway: u64,
}

impl TokenVerifier {
    /// A verifier for `keys`; `None` when there are none (tokens are then not verified).
    pub fn new(keys: &[VerifyingKey], expect: &Expectations) -> Option<TokenVerifier> {
        if keys.is_empty() {
            return None;
        }
        super::crypto::install();
        let mut validations: Vec<(Algorithm, Validation)> = Vec::new();
        for key in keys {
            if validations.iter().any(|(a, _)| *a == key.algorithm) {
                continue;
            }
            let mut validation = Validation::new(key.algorithm);
            validation.leeway = expect.leeway;
            validation.validate_nbf = true;
            let mut required = vec!["exp"];
            if let Some(issuer) = &expect.issuer {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            match &expect.audience {
                Some(audience) => {
                    validation.set_audience(&[audience]);
                    required.push("aud");
                }
                // No audience configured: a token's `aud` is not ours to judge.
                None => validation.validate_aud = false,
            }
            validation.set_required_spec_claims(&required);
            validations.push((key.algorithm, validation));
        }
        Some(TokenVerifier {
            keys: keys.to_vec(),
            validations,
            leeway: expect.leeway,
        })
    }

    /// The claims of `token`, if it is valid now.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            debug!("token refused reason=too_long bytes={}", token.len());
            return Err(TokenError::Invalid);
        }
        let header = decode_header(token).map_err(|e| {
            debug!("token refused reason=header error={:?}", e.kind());
            TokenError::Invalid
        })?;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            debug!("token refused reason=algorithm alg={:?}", header.alg);
            return Err(TokenError::Invalid);
        };
        let of_alg = || self.keys.iter().filter(|k| k.algorithm == header.alg);
        let named: Vec<&VerifyingKey> = match &header.kid {
            Some(kid) => of_alg().filter(|k| k.kid.as_ref() == Some(kid)).collect(),
            None => Vec::new(),
        };
        let candidates = if named.is_empty() {
            of_alg().collect()
        } else {
            named
        };
        for key in candidates {
            match decode::<RawClaims>(token, &key.key, validation) {
                Ok(data) => return Ok(data.claims.into_claims(self.leeway)),
                // Not this key's signature: the next one's, perhaps (rotation).
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                // The signature is this key's: the claims are what is wrong.
                Err(e) => {
                    debug!("token refused reason=claims key={} error={e}", key.source);
                    return Err(claims_error(e.kind()));
                }
            }
        }
        debug!("token refused reason=signature alg={:?}", header.alg);
        Err(TokenError::Invalid)
    }
}

fn claims_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => TokenError::Issuer,
        _ => TokenError::Invalid,
    }
}

#[cfg(test)]
mod tests;
