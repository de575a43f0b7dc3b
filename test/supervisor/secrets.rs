//! `api.key`, `sessions.secret` and the resume tokens made with it are credentials: none of
//! them may reach a log line, a process's command line, or `check-config`'s output, whatever the
//! log level, through everything that handles them — API calls with the right and with wrong
//! keys, new and resumed sessions, a staged restart that starts new workers.

use std::process::Command;
use std::time::Duration;

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

/// The places of `needle` in `haystack`, as lines, for a readable failure.
fn lines_with<'a>(haystack: &'a str, needle: &str) -> Vec<&'a str> {
    haystack.lines().filter(|l| l.contains(needle)).collect()
}

#[actix_rt::test]
async fn keys_secrets_and_resume_tokens_are_never_logged_or_shown() {
    let (sup, port) = Supervisor::start_one(Options {
        log_filter: Some("debug"),
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
        for secret in [API_KEY, SECRET] {
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
    for (what, secret) in [
        ("api.key", API_KEY),
        ("sessions.secret", SECRET),
        ("a resume token", resume_tag.as_str()),
    ] {
        assert!(
            lines_with(&log, secret).is_empty(),
            "{what} logged: {:?}",
            lines_with(&log, secret)
        );
        assert!(!shown.contains(secret), "{what} shown by check-config");
    }
}
