//! One publish reaching many sessions: 1,000 websockets on one worker, each receiving every
//! broadcast exactly once and in order. The delivery rate is measured and printed (run with
//! `--nocapture` to see it).

use std::time::Instant;

use futures_util::future::join_all;
use serde_json::json;

use crate::broker::{fence, settle, BrokerKind, TestBroker};
use crate::client::Client;
use crate::worker::Worker;

/// Sessions connected at once.
const SESSIONS: usize = 1000;
/// Sessions opened concurrently while connecting.
const BATCH: usize = 100;
/// Broadcasts timed.
const BROADCASTS: u64 = 20;
/// File descriptors the test process and the worker (which inherits the limit) need.
const OPEN_FILES: u64 = 4096;

for_both_brokers!(broadcast_reaches_1000_sessions_exactly_once_each);

async fn broadcast_reaches_1000_sessions_exactly_once_each(kind: BrokerKind) {
    raise_open_file_limit(OPEN_FILES);
    let broker = TestBroker::start(kind).await;
    let worker = Worker::start_on(&broker).await;
    let mut clients = worker.sessions(SESSIONS, BATCH).await;
    let channel = worker.topic("anonym");
    let mut backend = broker.connect().await;
    // The subscription is shared by the worker's sessions: once one session receives, all do.
    settle(&mut backend, &mut clients[0], &channel).await;
    let mut all: Vec<&mut Client> = clients.iter_mut().collect();
    fence(&mut backend, &mut all, &channel).await;

    let started = Instant::now();
    for n in 0..BROADCASTS {
        backend.publish(&channel, &json!({"data": {"n": n}})).await;
    }
    let channel_ref = channel.as_str();
    join_all(all.iter_mut().map(|client| async move {
        for n in 0..BROADCASTS {
            client.expect(channel_ref, json!({"n": n})).await;
        }
    }))
    .await;
    let elapsed = started.elapsed();
    let deliveries = SESSIONS as u64 * BROADCASTS;
    println!(
        "broadcast ({kind:?}): {BROADCASTS} messages to {SESSIONS} sessions = {deliveries} deliveries in \
         {elapsed:?}: {:.0} deliveries/s",
        deliveries as f64 / elapsed.as_secs_f64()
    );

    // Exactly once: the next thing each session sees is a new marker, not a duplicate.
    fence(&mut backend, &mut all, &channel).await;
}

/// Raises this process's soft `RLIMIT_NOFILE` to at least `needed` (up to the hard limit) with
/// util-linux `prlimit`, so that neither the test nor the worker it spawns runs out of
/// descriptors; fails the test if that is not possible.
pub fn raise_open_file_limit(needed: u64) {
    let (soft, hard) = open_file_limit();
    if soft >= needed {
        return;
    }
    assert!(
        hard >= needed,
        "the hard open-file limit {hard} is below the {needed} this test needs"
    );
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
        .status();
    let (raised, _) = open_file_limit();
    assert!(
        raised >= needed,
        "could not raise the open-file limit from {soft} to {needed} ({status:?})"
    );
}

/// The soft and hard `Max open files` of this process, from `/proc/self/limits`.
fn open_file_limit() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("/proc/self/limits lists open files");
    let mut numbers = line.split_whitespace().filter_map(|w| {
        w.parse::<u64>()
            .ok()
            .or((w == "unlimited").then_some(u64::MAX))
    });
    let soft = numbers.next().expect("a soft limit");
    let hard = numbers.next().expect("a hard limit");
    (soft, hard)
}
