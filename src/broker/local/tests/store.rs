//! Session records and the shared secret.

use super::*;

#[actix_rt::test]
async fn session_records_round_trip_and_expire() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let one = Harness::connected(&dir.path()).await;
    let other = Harness::connected(&dir.path()).await;
    let record = Bytes::from_static(br#"{"user":"ada"}"#);
    let ttl = Duration::from_millis(300);
    one.store("s1", record.clone(), ttl).await.unwrap();
    let stored_at = Instant::now();
    assert_eq!(other.load("s1").await, Ok(Some(record)));
    assert_eq!(other.load("never-stored").await, Ok(None));

    let expired = || async { one.load("s1").await == Ok(None) };
    eventually("the record expires", Duration::from_secs(2), expired).await;
    assert!(stored_at.elapsed() >= ttl - Duration::from_millis(50));
}

#[actix_rt::test]
async fn shared_secret_keeps_the_first_value_across_clients() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let one = Harness::connected(&dir.path()).await;
    let other = Harness::connected(&dir.path()).await;
    let answers = [
        one.secret("first").await,
        one.secret("second").await,
        other.secret("third").await,
    ];
    assert_eq!(answers, [(); 3].map(|()| Ok("first".to_owned())));
}
