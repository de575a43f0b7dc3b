//! Losing and regaining the server, clients that misbehave, and the limits.

use super::*;

#[actix_rt::test]
async fn commands_fail_fast_until_the_server_is_up() {
    let dir = SocketDir::new();
    let mut h = Harness::start(&dir.path());
    let news = pattern("news");
    h.broker.do_send(Subscribe(news.clone()));

    let asked = Instant::now();
    let publish = h.try_publish("news", b"lost").await;
    let load = h.load("s").await;
    let secret = h.secret("x").await;
    for answer in [publish.err(), load.err(), secret.err()] {
        assert!(
            matches!(answer, Some(BrokerError::Unavailable(_))),
            "{answer:?}"
        );
    }
    assert!(asked.elapsed() < Duration::from_millis(500));
    assert!(!h.is_connected().await);

    let _server = dir.serve().await;
    h.until_connected(true, Duration::from_secs(10)).await;
    h.publish("news", "made while down").await;
    h.expect(&news, "news", "made while down").await;
}

#[actix_rt::test]
async fn reconnects_after_the_server_restarts_and_restores_subscriptions() {
    let dir = SocketDir::new();
    let server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    let news = h.subscribe("news").await;
    let chat = h.subscribe("chat.*").await;

    server.shutdown();
    h.until_connected(false, PROMPTLY).await;
    let asked = Instant::now();
    let publish = h.try_publish("news", b"into the void").await;
    assert!(
        matches!(publish, Err(BrokerError::Unavailable(_))),
        "{publish:?}"
    );
    assert!(asked.elapsed() < Duration::from_millis(500));

    let server = dir.serve().await;
    h.until_connected(true, Duration::from_secs(10)).await;
    assert_eq!(
        server.publish("chat.lobby", Bytes::from("back")).await,
        Ok(1)
    );
    h.expect(&chat, "chat.lobby", "back").await;
    h.publish("news", "again").await;
    h.expect(&news, "news", "again").await;
}

#[actix_rt::test]
async fn a_client_that_never_reads_is_dropped_without_slowing_the_others() {
    let dir = SocketDir::new();
    let limits = ServerLimits {
        client_queue_bytes: 256 * 1024,
        ..ServerLimits::default()
    };
    let server = dir.serve_with(limits).await;
    let mut stalled = RawClient::connect(&dir.path()).await;
    stalled.subscribe("flood").await;
    let mut reader = Harness::connected(&dir.path()).await;
    let flood = reader.subscribe("flood").await;

    let started = Instant::now();
    let payload = "x".repeat(200);
    for _ in 0..10_000 {
        reader.publish("flood", &payload).await;
        reader.expect(&flood, "flood", &payload).await;
    }
    let took = started.elapsed();
    eprintln!(
        "10000 publishes and deliveries took {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(30));

    let frames = stalled.frames_until_closed().await;
    assert!(
        frames < 10_000,
        "{frames} frames reached the stalled client"
    );
    assert_eq!(server.publish("flood", Bytes::from("after")).await, Ok(1));
}

#[actix_rt::test]
async fn a_client_leaving_takes_its_subscriptions_along() {
    let dir = SocketDir::new();
    let server = dir.serve().await;
    let mut raw = RawClient::connect(&dir.path()).await;
    raw.subscribe("gone").await;
    assert_eq!(server.publish("gone", Bytes::new()).await, Ok(1));
    drop(raw);
    let forgotten = || async { server.publish("gone", Bytes::new()).await == Ok(0) };
    eventually("the subscription is forgotten", PROMPTLY, forgotten).await;
}

#[actix_rt::test]
async fn frames_over_the_limit_drop_the_sender_only() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    let mut raw = RawClient::connect(&dir.path()).await;
    let too_long = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
    let stream = raw.0.get_mut();
    tokio::io::AsyncWriteExt::write_all(stream, &too_long)
        .await
        .unwrap();
    assert_eq!(raw.frames_until_closed().await, 0);

    let big = vec![b'x'; MAX_BODY + 1];
    let refused = h.try_publish("big", &big).await;
    assert!(
        matches!(refused, Err(BrokerError::Server(_))),
        "{refused:?}"
    );
    let ok = h.subscribe("ok").await;
    h.publish("ok", "still fine").await;
    h.expect(&ok, "ok", "still fine").await;
}

#[actix_rt::test]
async fn limits_refuse_subscriptions_sessions_and_clients_beyond_them() {
    let dir = SocketDir::new();
    let limits = ServerLimits {
        clients: 1,
        subscriptions_per_client: 2,
        session_records: 1,
        ..ServerLimits::default()
    };
    let _server = dir.serve_with(limits).await;
    let mut h = Harness::connected(&dir.path()).await;
    let a = h.subscribe("a").await;
    h.subscribe("b").await;
    h.subscribe("c").await;
    h.publish("c", "refused, so not delivered").await;
    h.publish("a", "delivered").await;
    h.expect(&a, "a", "delivered").await;

    h.store("one", Bytes::from("1"), PROMPTLY).await.unwrap();
    let second = h.store("two", Bytes::from("2"), PROMPTLY).await;
    assert!(matches!(second, Err(BrokerError::Server(_))), "{second:?}");

    let turned_away = Harness::start(&dir.path());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!turned_away.is_connected().await);
    assert!(h.is_connected().await);
}

#[actix_rt::test]
async fn socket_is_private_and_stale_files_are_replaced_but_live_servers_are_not() {
    let dir = SocketDir::new();
    let path = dir.path();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let server = dir.serve().await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let second = LocalBrokerServer::bind(&path).await;
    let refused = second.err().map(|e| e.kind());
    assert_eq!(refused, Some(std::io::ErrorKind::AddrInUse));
    let _h = Harness::connected(&path).await;

    server.shutdown();
    assert!(!path.exists());
    std::fs::write(&path, "not a socket").unwrap();
    assert!(LocalBrokerServer::bind(&path).await.is_err());
}
