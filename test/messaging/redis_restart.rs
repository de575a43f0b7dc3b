//! A Redis restart under load: 200 sessions on a worker whose private Redis is killed and
//! started again. The websockets stay open, client publishes fail visibly while Redis is down,
//! and broadcasts reach every session again once it is back.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::broker::{fence, settle, settle_within, Redis, RedisServer};
use crate::worker::{Worker, WorkerConfig};

/// Sessions connected during the restart.
const SESSIONS: usize = 200;
/// Sessions opened concurrently while connecting.
const BATCH: usize = 50;
/// How long the worker may take to deliver again after Redis is back.
const RECOVERY: Duration = Duration::from_secs(15);
/// How long the sessions are watched for an unwanted close while Redis is down.
const DOWN_WATCH: Duration = Duration::from_millis(1000);

#[actix_rt::test]
async fn sessions_survive_redis_restart() {
    let mut server = RedisServer::start().await;
    let config = WorkerConfig {
        redis_url: server.url(),
        ..WorkerConfig::default()
    };
    let worker = Worker::start(&config).await;
    let mut clients = worker.sessions(SESSIONS, BATCH).await;
    let channel = worker.topic("anonym");
    let mut redis = Redis::connect(&server.url()).await;
    settle(&mut redis, &mut clients[0], &channel).await;
    fence(
        &mut redis,
        &mut clients.iter_mut().collect::<Vec<_>>(),
        &channel,
    )
    .await;

    server.kill();
    join_all(clients.iter_mut().map(|c| c.expect_quiet(DOWN_WATCH))).await;
    let publisher = &mut clients[0];
    publisher
        .publish(&channel, json!("while redis is down"))
        .await;
    let error = publisher.expect_error("backend_unavailable").await;
    assert_eq!(error["topic"], channel.as_str(), "error {error}");

    server.restart().await;
    let restarted = Instant::now();
    let mut redis = Redis::connect(&server.url()).await;
    settle_within(&mut redis, &mut clients[0], &channel, RECOVERY).await;
    fence(
        &mut redis,
        &mut clients.iter_mut().collect::<Vec<_>>(),
        &channel,
    )
    .await;
    println!(
        "redis restart: all {SESSIONS} sessions receive again {:?} after the restart",
        restarted.elapsed()
    );
}

#[actix_rt::test]
async fn session_established_while_redis_is_down_is_stored_once_it_is_back() {
    let mut server = RedisServer::start().await;
    let worker = Worker::start(&WorkerConfig {
        redis_url: server.url(),
        ..WorkerConfig::default()
    })
    .await;
    server.kill();
    let (mut client, welcome) = worker.session().await;

    server.restart().await;
    let mut redis = Redis::connect(&server.url()).await;
    settle_within(&mut redis, &mut client, &welcome.direct_topic(), RECOVERY).await;
    // Connected again, and still connected: another worker could resume it now only if its
    // record is in Redis.
    let record = redis.session_record(&welcome.session, |_| true).await;
    assert!(
        record.is_object(),
        "a session record is an object: {record}"
    );
}
