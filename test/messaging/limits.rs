//! `[limits]` and the `[http]` guards against abuse: the per-session rate limit (and the close
//! of a client that ignores it), allowed origins (cross-site websocket hijacking), and the
//! header and body timeouts (slowloris). Each refusal is visible to the client as a documented error,
//! status or close code, and the session or server stays usable for everybody else.

use std::time::{Duration, Instant};

use awc::ws::CloseCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::broker::{unique, BrokerKind, TestBroker};
use crate::client::{http, Client};
use crate::worker::{Worker, WorkerConfig};

for_both_brokers!(
    messages_past_the_burst_get_rate_limited_until_tokens_come_back,
    a_client_sending_on_into_refusals_is_closed_with_1008,
    pages_from_other_origins_are_refused,
    a_client_sending_headers_slowly_is_cut_off,
    a_client_sending_a_body_slowly_is_cut_off_and_nothing_of_it_is_delivered,
);

/// Sends one message the bucket has to judge; the answer tells whether it passed: a message on
/// a forbidden topic that got past the bucket is refused as `not_whitelisted`.
async fn judged(client: &mut Client) -> String {
    client.publish(&unique("secret"), json!(1)).await;
    let (_, data) = client.recv().await;
    data["code"].as_str().unwrap_or_default().to_string()
}

async fn messages_past_the_burst_get_rate_limited_until_tokens_come_back(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        messages_per_second: 5,
        burst: 5,
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let (mut client, _) = worker.session().await;
    let started = Instant::now();
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(judged(&mut client).await);
    }
    // Five tokens in the bucket; the sixth (well within a second) finds it empty.
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "too slow to test the burst"
    );
    assert_eq!(codes[..5], ["not_whitelisted"; 5]);
    assert_eq!(codes[5], "rate_limited");
    // 5 per second: a token every 200 ms.
    actix_rt::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(judged(&mut client).await, "not_whitelisted");
    assert_eq!(judged(&mut client).await, "not_whitelisted");
    // The error says what the limit is.
    client.publish(&unique("secret"), json!(1)).await;
    let error = client.expect_error("rate_limited").await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("5 messages per second"), "{message}");
}

async fn a_client_sending_on_into_refusals_is_closed_with_1008(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        messages_per_second: 1,
        burst: 3,
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let (mut abuser, _) = worker.session().await;
    let (mut bystander, _) = worker.session().await;
    for _ in 0..3 {
        assert_eq!(judged(&mut abuser).await, "not_whitelisted");
    }
    // Three refusals are tolerated (a client may retry); the fourth in a row is abuse.
    for _ in 0..4 {
        assert_eq!(judged(&mut abuser).await, "rate_limited");
    }
    let reason = abuser.expect_closed(Duration::from_secs(5)).await;
    let reason = reason.expect("a close frame with a reason");
    assert_eq!(reason.code, CloseCode::Policy, "{reason:?}");
    assert!(
        reason
            .description
            .as_deref()
            .unwrap_or("")
            .contains("Rate limit"),
        "{reason:?}"
    );
    // Another session of the same worker is not affected.
    assert_eq!(judged(&mut bystander).await, "not_whitelisted");
}

async fn pages_from_other_origins_are_refused(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        allowed_origins: vec![
            "https://chat.example.com".into(),
            "HTTP://LOCAL.test:8080".into(),
        ],
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let info = format!("http://127.0.0.1:{}/rohrpost/info", worker.port());

    // /info: refused for a foreign page, served to allowed ones and to non-browser clients.
    let status = |origin: Option<&'static str>| {
        let info = info.clone();
        async move {
            let mut req = http().get(&info);
            if let Some(origin) = origin {
                req = req.insert_header(("Origin", origin));
            }
            let mut res = req.send().await.expect("/info answers");
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (
                res.status().as_u16(),
                res.headers().get("access-control-allow-origin").cloned(),
                body,
            )
        }
    };
    let (code, cors, _) = status(Some("https://evil.example")).await;
    assert_eq!(code, 403);
    assert!(cors.is_none(), "a refused page learns nothing: {cors:?}");
    let (code, _, _) = status(Some("null")).await;
    assert_eq!(
        code, 403,
        "sandboxed frames and file:// pages are not on the list"
    );
    let (code, cors, body) = status(Some("https://chat.example.com")).await;
    assert_eq!(code, 200);
    assert_eq!(cors.unwrap(), "https://chat.example.com");
    assert_eq!(
        body["origins"],
        json!(["chat.example.com:443", "local.test:8080"])
    );
    let (code, _, _) = status(Some("http://local.test:8080")).await;
    assert_eq!(code, 200);
    let (code, _, _) = status(None).await;
    assert_eq!(code, 200);
    // Two Origin headers (no browser sends them): refused, whichever comes first.
    let mut res = http()
        .get(&info)
        .append_header(("Origin", "https://chat.example.com"))
        .append_header(("Origin", "https://evil.example"))
        .send()
        .await
        .expect("/info answers");
    assert_eq!(res.status().as_u16(), 403, "two Origin headers");
    let _ = res.body().await;

    // The websocket upgrade: cross-site websocket hijacking is refused before the upgrade.
    let refused = http()
        .ws(worker.ws_url())
        .origin("https://evil.example")
        .connect()
        .await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 403)
        }
        Err(e) => panic!("expected 403, got {e}"),
        Ok(_) => panic!("a websocket from a foreign origin was accepted"),
    }
    let (_res, _conn) = http()
        .ws(worker.ws_url())
        .origin("https://chat.example.com")
        .connect()
        .await
        .expect("an allowed page opens its websocket");
    // The server's own pages (the iframe transports) are always allowed.
    let own = format!("http://127.0.0.1:{}", worker.port());
    let (_res, _conn) = http()
        .ws(worker.ws_url())
        .origin(own.as_str())
        .connect()
        .await
        .expect("the server's own origin opens a websocket");

    // A session URL (xhr) from a foreign page: refused too.
    let session = format!("{:016x}", rand::random::<u64>());
    let xhr = format!(
        "http://127.0.0.1:{}/rohrpost/000/{session}/xhr",
        worker.port()
    );
    let res = http()
        .post(xhr)
        .insert_header(("Origin", "https://evil.example"))
        .send()
        .await
        .expect("xhr answers");
    assert_eq!(res.status().as_u16(), 403);
}

async fn a_client_sending_headers_slowly_is_cut_off(kind: BrokerKind) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        header_timeout: "1s".into(),
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", worker.port()))
        .await
        .expect("connect");
    let started = Instant::now();
    // Headers trickle in and never end.
    slow.write_all(b"GET /rohrpost/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        let _ = slow.write_all(b"X-Slow: 1\r\n").await;
        match actix_rt::time::timeout(Duration::from_millis(300), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a client trickling headers was held for 10 s"
        );
    };
    assert!(closed >= Duration::from_millis(900), "cut after {closed:?}");
    let answer = String::from_utf8_lossy(&seen);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a timed-out request gets 408 or nothing: {answer:?}"
    );
    // Everybody else is served meanwhile and after.
    let (mut client, _) = worker.session().await;
    assert_eq!(judged(&mut client).await, "not_whitelisted");
}

/// An `xhr_send` body dribbled a byte at a time (100 kB announced, a byte every 200 ms) gets
/// `408` once `http.body_timeout` is over and its connection is closed; nothing of it reaches
/// the session, which goes on serving its client.
async fn a_client_sending_a_body_slowly_is_cut_off_and_nothing_of_it_is_delivered(
    kind: BrokerKind,
) {
    let broker = TestBroker::start(kind).await;
    let config = WorkerConfig {
        body_timeout: "1s".into(),
        ..WorkerConfig::on(&broker)
    };
    let worker = Worker::start(&config).await;
    let base = format!(
        "http://127.0.0.1:{}/rohrpost/000/{}",
        worker.port(),
        unique("s").replace('.', "-")
    );
    let open = http().post(format!("{base}/xhr")).send().await;
    let body = open.expect("xhr").body().await.expect("open frame");
    assert_eq!(&body[..], b"o\n");

    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", worker.port()))
        .await
        .expect("connect");
    let path = base.split_once(&format!(":{}", worker.port())).unwrap().1;
    let head = format!(
        "POST {path}/xhr_send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Content-Length: 100000\r\n\r\n[\"dribbled"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        let _ = slow.write_all(b"x").await;
        match actix_rt::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a client dribbling a body was held for 10 s"
        );
    };
    let answer = String::from_utf8_lossy(&seen);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a late body gets 408: {answer:?}"
    );
    assert!(
        answer.contains("http.body_timeout"),
        "the 408 says which setting: {answer:?}"
    );
    assert!(closed >= Duration::from_millis(900), "cut after {closed:?}");

    // The session is intact and got nothing of the cut body: the next poll delivers exactly
    // the next message sent.
    let sent = http()
        .post(format!("{base}/xhr_send"))
        .send_body(r#"["after"]"#)
        .await
        .expect("xhr_send");
    assert_eq!(sent.status().as_u16(), 204);
    let mut poll = http()
        .post(format!("{base}/xhr"))
        .send()
        .await
        .expect("xhr");
    let frame = poll.body().await.expect("frame");
    let frame = String::from_utf8_lossy(&frame).into_owned();
    assert!(
        !frame.contains("dribbled"),
        "the cut body was delivered: {frame:?}"
    );
    assert!(
        frame.starts_with("a["),
        "a message frame expected: {frame:?}"
    );
}
