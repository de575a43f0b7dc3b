//! Tokens in the hello (`{"hello": 1, "token": "<JWT>"}`), verified by the worker with the keys
//! of `[auth]`: a valid one grants what its `rohrpost` claim says and sets the session data, an
//! invalid one is refused at the level of "invalid", "expired", "wrong audience" or "wrong
//! issuer", and a session closes at its token's `exp` unless refreshed for the same `sub`.
//!
//! The keys are the test fixtures of `test/fixtures/jwt` (never production keys); the leeway is
//! zero so that expiry comes when `exp` says.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::auth_hook::refused;
use crate::broker::{settle, BrokerKind, TestBroker};
use crate::client::Client;
use crate::common::WAIT;
use crate::worker::{Worker, WorkerConfig};

for_both_brokers!(
    valid_tokens_of_each_algorithm_are_welcomed_with_their_grants,
    invalid_tokens_are_refused_saying_only_why_at_large,
    required_authentication_refuses_a_hello_without_a_token,
    token_not_refreshed_closes_the_session_at_its_expiry,
    token_refreshed_before_its_expiry_keeps_the_session,
    resume_keeps_the_token_binding_until_it_expires,
);

const SECRET: &str = "a test secret of at least thirty-two bytes";
const ISSUER: &str = "https://login.test";
const AUDIENCE: &str = "rohrpost-tests";

fn fixture(name: &str) -> String {
    format!("{}/test/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A worker config trusting the HS256 secret and the RS256 and ES256 fixture keys, for
/// `ISSUER` and `AUDIENCE`, with no leeway.
fn trusting(broker: &TestBroker) -> WorkerConfig {
    let mut config = WorkerConfig::on(broker);
    config.auth = json!({
        "hs256_secret": SECRET,
        "rs256_public_keys": [fixture("rs256-public.pem")],
        "es256_public_keys": [fixture("es256-public.pem")],
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "leeway": "0s",
    });
    config
}

/// Claims for `sub` expiring `exp` (Unix seconds), for our issuer and audience.
fn claims(sub: &str, exp: u64) -> Value {
    json!({"sub": sub, "exp": exp, "iss": ISSUER, "aud": AUDIENCE})
}

/// `claims` signed with `alg` and its fixture key (`key` names another fixture for RS256).
fn sign(alg: Algorithm, key: &str, claims: &Value) -> String {
    rohrpost::auth::crypto::install();
    let pem = |name: &str| std::fs::read(fixture(name)).expect("the fixture key is there");
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(key.as_bytes()).expect("a secret"),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem(key)).expect("an RSA key"),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem(key)).expect("an EC key"),
        other => panic!("no test key for {other:?}"),
    };
    encode(&Header::new(alg), claims, &key).expect("the token signs")
}

fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, SECRET, claims)
}

/// A new session with `token`.
async fn session_with(worker: &Worker, token: &str) -> (Client, crate::client::Welcome) {
    let mut client = worker.connect().await;
    client.send_json(&json!({"hello": 1, "token": token})).await;
    let data = client.expect_topic("rohrpost.welcome").await;
    let welcome = crate::client::Welcome::parse(&data);
    (client, welcome)
}

async fn valid_tokens_of_each_algorithm_are_welcomed_with_their_grants(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start(&trusting(&broker)).await;
    let members = worker.pattern("members");
    let mut granting = claims("ada", now() + 3600);
    granting["rohrpost"] = json!({"add": [members]});
    for (alg, key) in [
        (Algorithm::HS256, SECRET),
        (Algorithm::RS256, "rs256-private.pem"),
        (Algorithm::ES256, "es256-private.pem"),
    ] {
        let (_client, welcome) = session_with(&worker, &sign(alg, key, &granting)).await;
        assert!(
            welcome.whitelist.contains(&members),
            "{alg:?}: the token's grant is in the welcome: {:?}",
            welcome.whitelist
        );
    }

    // `sub` becomes the session data, which backends see with every client message.
    let (mut client, _) = session_with(&worker, &hs256(&granting)).await;
    let topic = worker.topic("members");
    let mut on_broker = broker.subscribe(&topic).await;
    client.publish(&topic, json!("hello")).await;
    let published = on_broker.next_json().await;
    assert_eq!(published["sessionData"], json!({"user": "ada"}));
    assert_eq!(published["data"], "hello");
}

async fn invalid_tokens_are_refused_saying_only_why_at_large(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start(&trusting(&broker)).await;
    let later = now() + 3600;
    let valid = hs256(&claims("ada", later));
    let payload = valid.split('.').nth(1).expect("a JWT has a payload");
    let mut wrong_audience = claims("ada", later);
    wrong_audience["aud"] = json!("someone-else");
    let mut wrong_issuer = claims("ada", later);
    wrong_issuer["iss"] = json!("https://evil.test");
    let cases = [
        (
            "expired",
            hs256(&claims("ada", now() - 60)),
            "token expired",
        ),
        (
            "wrong key",
            sign(
                Algorithm::RS256,
                "rs256-other-private.pem",
                &claims("ada", later),
            ),
            "invalid token",
        ),
        (
            "wrong secret",
            sign(
                Algorithm::HS256,
                "another secret, also thirty-two bytes",
                &claims("ada", later),
            ),
            "invalid token",
        ),
        (
            "wrong audience",
            hs256(&wrong_audience),
            "token has the wrong audience",
        ),
        (
            "wrong issuer",
            hs256(&wrong_issuer),
            "token has the wrong issuer",
        ),
        (
            "alg none",
            // {"alg":"none","typ":"JWT"}, the valid token's claims, no signature
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."),
            "invalid token",
        ),
        ("garbage", "not.a.token".to_owned(), "invalid token"),
    ];
    for (case, token, message) in cases {
        let mut client = worker.connect().await;
        client.send_json(&json!({"hello": 1, "token": token})).await;
        let error = client.expect_error("unauthorized").await;
        assert_eq!(error["message"], message, "{case}");
        let close = client.expect_closed(WAIT).await.expect("a close reason");
        assert_eq!(u16::from(close.code), 4003, "{case}");
        let mut reason = message.to_owned();
        reason[..1].make_ascii_uppercase();
        assert_eq!(
            close.description.as_deref(),
            Some(reason.as_str()),
            "{case}"
        );
    }
}

async fn required_authentication_refuses_a_hello_without_a_token(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let mut config = trusting(&broker);
    config.auth["required"] = json!(true);
    let worker = Worker::start(&config).await;

    let mut client = worker.connect().await;
    let closed = refused(&mut client, json!({"hello": 1}), "unauthorized").await;
    assert_eq!(closed, (4003, "Authentication required".to_owned()));

    let (_client, welcome) = session_with(&worker, &hs256(&claims("ada", now() + 60))).await;
    assert!(!welcome.resumed);
}

/// Waits for the expiry close of a session whose token expires at `exp`, and checks it came
/// no earlier.
async fn expect_expiry_close(client: &mut Client, exp: u64) {
    let error = client.expect_error("unauthorized").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("token expired"),
        "{error}"
    );
    let close = client.expect_closed(WAIT).await.expect("a close reason");
    assert_eq!(u16::from(close.code), 4004);
    assert_eq!(close.description.as_deref(), Some("Token expired"));
    assert!(
        now() >= exp,
        "closed at {}, before the token's exp {exp}",
        now()
    );
}

async fn token_not_refreshed_closes_the_session_at_its_expiry(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start(&trusting(&broker)).await;
    let exp = now() + 2;
    let (mut client, _) = session_with(&worker, &hs256(&claims("ada", exp))).await;
    expect_expiry_close(&mut client, exp).await;
}

async fn token_refreshed_before_its_expiry_keeps_the_session(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start(&trusting(&broker)).await;
    let first_exp = now() + 2;
    let (mut client, _) = session_with(&worker, &hs256(&claims("ada", first_exp))).await;

    // Refusals leave the session as it is.
    let other = hs256(&claims("grace", now() + 60));
    client.send_json(&json!({"refresh": other})).await;
    let error = client.expect_error("unauthorized").await;
    assert_eq!(
        error["message"],
        "refresh refused: the token is for another subject"
    );
    let stale = hs256(&claims("ada", now() - 60));
    client.send_json(&json!({"refresh": stale})).await;
    let error = client.expect_error("unauthorized").await;
    assert_eq!(error["message"], "refresh refused: token expired");

    let new_exp = now() + 60;
    client
        .send_json(&json!({"refresh": hs256(&claims("ada", new_exp))}))
        .await;
    assert_eq!(
        client.expect_topic("rohrpost.refreshed").await,
        json!({"exp": new_exp})
    );
    // Past the first token's expiry, the session is still open and receiving.
    let past_first = Duration::from_secs(first_exp + 1 - now().min(first_exp + 1));
    client.expect_quiet(past_first).await;
    let topic = worker.topic("anonym");
    let mut publisher = broker.connect().await;
    settle(&mut publisher, &mut client, &topic).await;
}

async fn resume_keeps_the_token_binding_until_it_expires(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start(&trusting(&broker)).await;
    let exp = now() + 3;
    let (client, welcome) = session_with(&worker, &hs256(&claims("ada", exp))).await;
    client.close().await;

    // Without a token, the resume goes on under the first token: it closes when that expires.
    let mut client = worker.connect().await;
    let resumed = client.resume(&welcome.resume).await;
    assert!(resumed.resumed, "{resumed:?}");
    expect_expiry_close(&mut client, exp).await;

    // Once expired, the resume token alone gives a new session, nothing of the old one.
    let mut client = worker.connect().await;
    let fresh = client.resume(&welcome.resume).await;
    assert!(!fresh.resumed, "{fresh:?}");
    assert_ne!(fresh.session, welcome.session);

    // With a token of another subject, too.
    let (_client, welcome) = session_with(&worker, &hs256(&claims("ada", now() + 60))).await;
    let mut client = worker.connect().await;
    let grace = hs256(&claims("grace", now() + 60));
    client
        .send_json(&json!({"hello": 1, "resume": welcome.resume, "token": grace}))
        .await;
    let data = client.expect_topic("rohrpost.welcome").await;
    assert_eq!(data["resumed"], false, "{data}");
}
