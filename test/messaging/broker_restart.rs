//! A broker restart under load: 200 sessions on a worker whose broker goes away and comes back
//! empty. For Redis that is a private `redis-server` killed and started again; for the embedded
//! broker, the test's server shut down (every client disconnected, the socket file removed) and
//! bound again on the same path. The websockets stay open, client publishes fail visibly while
//! the broker is down, and once it is back the worker restores its subscriptions (broadcasts
//! reach every session again) and its session records.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::broker::{fence, settle, settle_within, BrokerKind, TestBroker};
use crate::worker::Worker;

/// Sessions connected during the restart.
const SESSIONS: usize = 200;
/// Sessions opened concurrently while connecting.
const BATCH: usize = 50;
/// How long the worker may take to deliver again after the broker is back.
const RECOVERY: Duration = Duration::from_secs(15);
/// How long the sessions are watched for an unwanted close while the broker is down.
const DOWN_WATCH: Duration = Duration::from_millis(1000);

for_both_brokers!(
    sessions_survive_broker_restart,
    session_established_while_broker_is_down_is_stored_once_it_is_back,
);

async fn sessions_survive_broker_restart(kind: BrokerKind) {
    let mut broker = TestBroker::stoppable(kind).await;
    let worker = Worker::start_on(&broker).await;
    let mut clients = worker.sessions(SESSIONS, BATCH).await;
    let channel = worker.topic("anonym");
    let mut backend = broker.connect().await;
    settle(&mut backend, &mut clients[0], &channel).await;
    fence(
        &mut backend,
        &mut clients.iter_mut().collect::<Vec<_>>(),
        &channel,
    )
    .await;

    broker.stop();
    join_all(clients.iter_mut().map(|c| c.expect_quiet(DOWN_WATCH))).await;
    let publisher = &mut clients[0];
    publisher
        .publish(&channel, json!("while the broker is down"))
        .await;
    let error = publisher.expect_error("backend_unavailable").await;
    assert_eq!(error["topic"], channel.as_str(), "error {error}");

    broker.restart().await;
    let restarted = Instant::now();
    let mut backend = broker.connect().await;
    settle_within(&mut backend, &mut clients[0], &channel, RECOVERY).await;
    fence(
        &mut backend,
        &mut clients.iter_mut().collect::<Vec<_>>(),
        &channel,
    )
    .await;
    println!(
        "broker restart ({kind:?}): all {SESSIONS} sessions receive again {:?} after the restart",
        restarted.elapsed()
    );
}

async fn session_established_while_broker_is_down_is_stored_once_it_is_back(kind: BrokerKind) {
    let mut broker = TestBroker::stoppable(kind).await;
    let worker = Worker::start_on(&broker).await;
    broker.stop();
    let (mut client, welcome) = worker.session().await;

    broker.restart().await;
    let mut backend = broker.connect().await;
    settle_within(&mut backend, &mut client, &welcome.direct_topic(), RECOVERY).await;
    // Connected again, and still connected: another worker could resume it now only if its
    // record is in the broker.
    let record = backend.session_record(&welcome.session, |_| true).await;
    assert!(
        record.is_object(),
        "a session record is an object: {record}"
    );
}
