//! `api.key`, `sessions.secret` and the resume tokens made with it, `auth.hs256_secret` and the
//! JWTs clients send, and the password in a connect hook's URL are credentials: none of them may
//! reach a log line, a process's command line, or `check-config`'s output (the hook URL aside,
//! which it prints as configured), whatever the log level, through everything that handles them
//! — API calls with the right and with wrong keys, new and resumed sessions, sessions with
//! tokens good and bad and a refresh, a connect hook that cannot be reached, a staged restart
//! that starts new workers.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

use serde_json::json;

use crate::client::{http, Client};
use crate::common::{BIN, WAIT};
use crate::main_port::{api_restart, worker_ws_url};
use crate::process::{Options, Supervisor, API_KEY, SECRET};

/// `POST /api/publish` with `authorization`; the status.
async fn api_publish(sup: &Supervisor, authorization: &str) -> u16 {
    let request = http()
        .post(sup.url("/api/publish"))
        .insert_header(("Authorization", authorization))
        .send_json(&json!({"topic": "anonym.secrets", "data": "hello"}));
    actix_rt::time::timeout(WAIT, request)
        .await
        .expect("/api/publish answers in time")
        .expect("/api/publish answers")
        .status()
        .as_u16()
}

/// `auth.hs256_secret` of the test.
const JWT_SECRET: &str = "jwt-secret-of-thirty-two-bytes-3c71a9e0";
/// The password in the connect hook's URL.
const HOOK_PASSWORD: &str = "hook-password-60b2d4";

/// An HS256 token for `sub` signed with `secret`, valid for a minute.
fn jwt(sub: &str, secret: &str) -> String {
    rohrpost::auth::crypto::install();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("a secret");
    let claims = json!({"sub": sub, "exp": exp});
    encode(&Header::new(Algorithm::HS256), &claims, &key).expect("the token signs")
}

/// The places of `needle` in `haystack`, as lines, for a readable failure.
fn lines_with<'a>(haystack: &'a str, needle: &str) -> Vec<&'a str> {
    haystack.lines().filter(|l| l.contains(needle)).collect()
}

#[actix_rt::test]
async fn keys_secrets_and_resume_tokens_are_never_logged_or_shown() {
    let unreachable = crate::common::free_port();
    let (sup, port) = Supervisor::start_one(Options {
        log_filter: Some("debug"),
        extra_config: format!(
            "[auth]\nhs256_secret = \"{JWT_SECRET}\"\n[hooks]\nconnect_on_error = \"allow\"\n\
             connect_url = \"http://rohrpost:{HOOK_PASSWORD}@127.0.0.1:{unreachable}/connect\"\n"
        ),
        ..Options::default()
    })
    .await;

    // The server API with the right key, a wrong one, one that is the key with more after it,
    // and one that is a prefix of it.
    assert_eq!(api_publish(&sup, &format!("Bearer {API_KEY}")).await, 202);
    for wrong in [
        "Bearer wrong".to_owned(),
        format!("Bearer {API_KEY}x"),
        format!("Bearer {}", &API_KEY[..API_KEY.len() - 1]),
        API_KEY.to_owned(),
    ] {
        assert_eq!(api_publish(&sup, &wrong).await, 401, "{wrong}");
    }

    // A session, resumed on a second connection with its token.
    let (first, welcome) = Client::new_session(&worker_ws_url(port)).await;
    first.close().await;
    let mut second = Client::connect(&worker_ws_url(port))
        .await
        .expect("second connection");
    let resumed = second.resume(&welcome.resume).await.expect("resumed");
    assert!(resumed.resumed, "{resumed:?}");
    second.close().await;

    // Sessions with a token (refreshed), and with one of a wrong secret (refused); the connect
    // hook cannot be reached and lets them in.
    let good = jwt("ada", JWT_SECRET);
    let fresh = jwt("ada", JWT_SECRET);
    let forged = jwt("ada", "not-the-secret-but-as-long-as-it-is!!");
    let mut third = Client::connect(&worker_ws_url(port))
        .await
        .expect("connection");
    third
        .handshake(json!({"hello": 1, "token": good}))
        .await
        .expect("welcomed with a token");
    third
        .send_json(&json!({"refresh": fresh}))
        .await
        .expect("refresh sent");
    assert!(third
        .wait_for_topic("rohrpost.refreshed", WAIT)
        .await
        .is_some());
    third.close().await;
    let mut fourth = Client::connect(&worker_ws_url(port))
        .await
        .expect("connection");
    let refused = fourth.handshake(json!({"hello": 1, "token": forged})).await;
    assert!(refused.is_err(), "{refused:?}");

    // A staged restart: the new worker reads the configuration too.
    assert_eq!(
        api_restart(&sup, Some(&format!("Bearer {API_KEY}"))).await,
        202
    );
    let health = sup
        .wait_for("the restarted worker ready", |h| h.all_ready_in(2))
        .await;

    // No command line of ours carries a secret (workers read the configuration file).
    let mut pids = health.pids();
    pids.push(sup.pid());
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        for secret in [API_KEY, SECRET, JWT_SECRET, HOOK_PASSWORD] {
            assert!(!cmdline.contains(secret), "pid {pid}: {cmdline}");
        }
    }

    // check-config shows that they are set, not what they are.
    let shown = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(sup.dir().join("rohrpost.toml"))
        .output()
        .expect("run check-config");
    assert!(shown.status.success());
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("\"(set)\""), "{shown}");

    // Debug logging is on (the log is not just empty), yet no credential is in it.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(sup.dir().join("rohrpost.log")).expect("the log");
    assert!(log.contains("DEBUG"), "the log runs at debug level:\n{log}");
    let resume_tag = welcome
        .resume
        .rsplit_once('.')
        .map(|(_, tag)| tag.to_owned())
        .expect("a token is <id>.<tag>");
    let signature = |token: &str| token.rsplit('.').next().unwrap_or_default().to_owned();
    for (what, secret) in [
        ("api.key", API_KEY),
        ("sessions.secret", SECRET),
        ("a resume token", resume_tag.as_str()),
        ("auth.hs256_secret", JWT_SECRET),
        ("a token", &signature(&good)),
        ("a refreshed token", &signature(&fresh)),
        ("a forged token", &signature(&forged)),
    ] {
        assert!(
            lines_with(&log, secret).is_empty(),
            "{what} logged: {:?}",
            lines_with(&log, secret)
        );
        assert!(!shown.contains(secret), "{what} shown by check-config");
    }
    assert!(
        log.contains("connect hook failed"),
        "the hook was tried:\n{log}"
    );
    assert!(
        lines_with(&log, HOOK_PASSWORD).is_empty(),
        "the hook's password logged: {:?}",
        lines_with(&log, HOOK_PASSWORD)
    );
}
