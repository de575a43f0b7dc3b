use std::path::PathBuf;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use jsonwebtoken::get_current_timestamp as now;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test/fixtures/jwt")
        .join(name)
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    super::super::crypto::install();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).expect("the test token signs")
}

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    sign(Algorithm::HS256, None, &key, claims)
}

fn rsa_key(name: &str) -> EncodingKey {
    let pem = std::fs::read(fixture(&format!("{name}-private.pem"))).unwrap();
    EncodingKey::from_rsa_pem(&pem).unwrap()
}

fn verifier(keys: Vec<VerifyingKey>, expect: Expectations) -> TokenVerifier {
    TokenVerifier::new(&keys, &expect).expect("keys are configured")
}

fn secret_only() -> TokenVerifier {
    let expect = Expectations {
        leeway: 30,
        ..Expectations::default()
    };
    verifier(vec![VerifyingKey::hs256(SECRET).unwrap()], expect)
}

fn in_an_hour() -> u64 {
    now() + 3600
}

#[test]
fn sub_becomes_the_session_data_user_and_the_rohrpost_claim_is_the_grant() {
    let exp = in_an_hour();
    let token = hs256(&json!({
        "sub": "ada", "exp": exp,
        "rohrpost": {"add": ["chat.*"], "remove": ["anonym.*"]}
    }));
    let claims = secret_only().verify(&token).unwrap();
    assert_eq!(claims.subject.as_deref(), Some("ada"));
    assert_eq!(claims.valid_until, exp + 30, "exp plus the leeway");
    assert_eq!(claims.grant.add, vec!["chat.*"]);
    assert_eq!(claims.grant.remove, vec!["anonym.*"]);
    assert_eq!(claims.grant.session_data, Some(json!({"user": "ada"})));
    assert_eq!(claims.grant.data, None, "a grant delivers nothing");
}

#[test]
fn session_data_claim_wins_over_sub_and_null_is_kept() {
    let v = secret_only();
    let with_data = hs256(&json!({
        "sub": "ada", "exp": in_an_hour(),
        "rohrpost": {"sessionData": {"name": "Ada", "role": "admin"}}
    }));
    let claims = v.verify(&with_data).unwrap();
    assert_eq!(
        claims.grant.session_data,
        Some(json!({"name": "Ada", "role": "admin"}))
    );
    let null_data = hs256(&json!({
        "sub": "ada", "exp": in_an_hour(), "rohrpost": {"sessionData": null}
    }));
    assert_eq!(
        v.verify(&null_data).unwrap().grant.session_data,
        Some(Value::Null)
    );
    let anonymous = hs256(&json!({"exp": in_an_hour()}));
    let claims = v.verify(&anonymous).unwrap();
    assert_eq!(claims.subject, None);
    assert_eq!(claims.grant, BackendMessage::default());
}

#[test]
fn expiry_allows_the_leeway_and_no_more() {
    let v = secret_only();
    let within = hs256(&json!({"exp": now() - 10}));
    assert!(
        v.verify(&within).is_ok(),
        "10 s late is within 30 s of skew"
    );
    let past = hs256(&json!({"exp": now() - 120}));
    assert_eq!(v.verify(&past), Err(TokenError::Expired));
    let future = hs256(&json!({"exp": in_an_hour(), "nbf": now() + 600}));
    assert_eq!(v.verify(&future), Err(TokenError::NotYetValid));
    let no_exp = hs256(&json!({"sub": "ada"}));
    assert_eq!(
        v.verify(&no_exp),
        Err(TokenError::Invalid),
        "exp is required"
    );
    let string_exp = hs256(&json!({"exp": "never"}));
    assert_eq!(v.verify(&string_exp), Err(TokenError::Invalid));
    let string_nbf = hs256(&json!({"exp": in_an_hour(), "nbf": "99999999999"}));
    assert_eq!(v.verify(&string_nbf), Err(TokenError::Invalid));
}

#[test]
fn a_token_signed_with_another_secret_is_invalid() {
    let other = EncodingKey::from_secret(b"another secret of at least 32 bytes!").unwrap();
    let token = sign(
        Algorithm::HS256,
        None,
        &other,
        &json!({"exp": in_an_hour()}),
    );
    assert_eq!(secret_only().verify(&token), Err(TokenError::Invalid));
}

#[test]
fn issuer_and_audience_must_match_when_configured() {
    let v = verifier(
        vec![VerifyingKey::hs256(SECRET).unwrap()],
        Expectations {
            issuer: Some("https://login.example".into()),
            audience: Some("rohrpost".into()),
            leeway: 0,
        },
    );
    let good = json!({"exp": in_an_hour(), "iss": "https://login.example", "aud": "rohrpost"});
    assert!(v.verify(&hs256(&good)).is_ok());
    let many =
        json!({"exp": in_an_hour(), "iss": "https://login.example", "aud": ["x", "rohrpost"]});
    assert!(v.verify(&hs256(&many)).is_ok());
    let aud = json!({"exp": in_an_hour(), "iss": "https://login.example", "aud": "other"});
    assert_eq!(v.verify(&hs256(&aud)), Err(TokenError::Audience));
    let no_aud = json!({"exp": in_an_hour(), "iss": "https://login.example"});
    assert_eq!(v.verify(&hs256(&no_aud)), Err(TokenError::Audience));
    let iss = json!({"exp": in_an_hour(), "iss": "https://evil.example", "aud": "rohrpost"});
    assert_eq!(v.verify(&hs256(&iss)), Err(TokenError::Issuer));
    let no_iss = json!({"exp": in_an_hour(), "aud": "rohrpost"});
    assert_eq!(v.verify(&hs256(&no_iss)), Err(TokenError::Issuer));
}

#[test]
fn without_an_audience_configured_a_tokens_aud_is_not_judged() {
    let token = hs256(&json!({"exp": in_an_hour(), "aud": "someone-else"}));
    assert!(secret_only().verify(&token).is_ok());
}

#[test]
fn alg_none_and_algorithms_without_keys_are_refused() {
    let v = secret_only();
    let good = hs256(&json!({"sub": "ada", "exp": in_an_hour()}));
    let payload = good.split('.').nth(1).unwrap();
    // {"alg":"none","typ":"JWT"}
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    assert_eq!(v.verify(&none), Err(TokenError::Invalid));
    // {"alg":"None"} and an empty signature with a real algorithm
    let none_caps = format!("eyJhbGciOiJOb25lIn0.{payload}.");
    assert_eq!(v.verify(&none_caps), Err(TokenError::Invalid));
    let unsigned = format!("{}.", good.rsplit_once('.').unwrap().0);
    assert_eq!(v.verify(&unsigned), Err(TokenError::Invalid));

    let rs = sign(
        Algorithm::RS256,
        None,
        &rsa_key("rs256"),
        &json!({"exp": in_an_hour()}),
    );
    assert_eq!(v.verify(&rs), Err(TokenError::Invalid), "no RS256 key here");
    for junk in ["", "a.b.c", "...", "not a token"] {
        assert_eq!(v.verify(junk), Err(TokenError::Invalid), "{junk:?}");
    }
    let long = format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(v.verify(&long), Err(TokenError::Invalid));
}

#[test]
fn the_public_key_as_an_hmac_secret_does_not_pass_for_rs256() {
    // The classic confusion: a token "signed" HS256 with the server's public key as secret.
    let public = std::fs::read(fixture("rs256-public.pem")).unwrap();
    let v = verifier(
        vec![VerifyingKey::rs256_pem(&fixture("rs256-public.pem")).unwrap()],
        Expectations::default(),
    );
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&public).unwrap(),
        &json!({"exp": in_an_hour()}),
    );
    assert_eq!(v.verify(&forged), Err(TokenError::Invalid));
}

#[test]
fn rs256_keys_rotate_by_kid_or_by_trying_each() {
    let v = verifier(
        vec![
            VerifyingKey::rs256_pem(&fixture("rs256-public.pem")).unwrap(),
            VerifyingKey::rs256_pem(&fixture("rs256-other-public.pem")).unwrap(),
        ],
        Expectations::default(),
    );
    let claims = json!({"sub": "ada", "exp": in_an_hour()});
    for (kid, key) in [
        (Some("rs256-other-public"), "rs256-other"),
        (Some("rs256-public"), "rs256"),
        (None, "rs256-other"),
        (Some("unknown-kid"), "rs256"),
    ] {
        let token = sign(Algorithm::RS256, kid, &rsa_key(key), &claims);
        assert!(v.verify(&token).is_ok(), "kid {kid:?}, key {key}");
    }
    // A kid naming a key that did not sign it: that key alone is tried.
    let token = sign(
        Algorithm::RS256,
        Some("rs256-public"),
        &rsa_key("rs256-other"),
        &claims,
    );
    assert_eq!(v.verify(&token), Err(TokenError::Invalid));
}

#[test]
fn es256_tokens_verify_with_a_p256_public_key() {
    let v = verifier(
        vec![VerifyingKey::es256_pem(&fixture("es256-public.pem")).unwrap()],
        Expectations::default(),
    );
    let pem = std::fs::read(fixture("es256-private.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    let token = sign(
        Algorithm::ES256,
        None,
        &key,
        &json!({"sub": "ada", "exp": in_an_hour()}),
    );
    assert_eq!(v.verify(&token).unwrap().subject.as_deref(), Some("ada"));
    let hs = hs256(&json!({"exp": in_an_hour()}));
    assert_eq!(
        v.verify(&hs),
        Err(TokenError::Invalid),
        "no HS256 secret here"
    );
}

#[test]
fn key_files_must_be_public_keys_of_their_algorithm() {
    assert_eq!(
        VerifyingKey::rs256_pem(&fixture("rs256-private.pem")).unwrap_err(),
        KeyError::Private
    );
    assert_eq!(
        VerifyingKey::es256_pem(&fixture("es384-public.pem")).unwrap_err(),
        KeyError::WrongCurve
    );
    assert_eq!(
        VerifyingKey::rs256_pem(&fixture("es256-public.pem")).unwrap_err(),
        KeyError::NotPublicKey("RSA")
    );
    assert_eq!(
        VerifyingKey::es256_pem(&fixture("rs256-public.pem")).unwrap_err(),
        KeyError::NotPublicKey("EC")
    );
    assert!(matches!(
        VerifyingKey::rs256_pem(&fixture("missing.pem")).unwrap_err(),
        KeyError::Unreadable(_)
    ));
    assert_eq!(
        VerifyingKey::rs256_pem(&fixture("rs1024-public.pem")).unwrap_err(),
        KeyError::RsaSize(1024)
    );
    assert_eq!(
        VerifyingKey::hs256("short").unwrap_err(),
        KeyError::ShortSecret(5)
    );
    let key = VerifyingKey::rs256_pem(&fixture("rs256-public.pem")).unwrap();
    assert_eq!(key.kid.as_deref(), Some("rs256-public"));
}

#[test]
fn malformed_rohrpost_claims_make_the_token_invalid() {
    let v = secret_only();
    for bad in [
        json!({"exp": in_an_hour(), "rohrpost": {"add": "chat.*"}}),
        json!({"exp": in_an_hour(), "rohrpost": "admin"}),
        json!({"exp": in_an_hour(), "sub": 7}),
    ] {
        assert_eq!(v.verify(&hs256(&bad)), Err(TokenError::Invalid), "{bad}");
    }
}
