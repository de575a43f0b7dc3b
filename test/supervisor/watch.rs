//! How the tests watch a supervisor from outside: a staged restart in progress, worker processes
//! going away, and which executable file a process runs.

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use crate::main_port::{Health, State};
use crate::process::{Supervisor, POLL, SETTLE};

/// Polls `/health`, `/connect`, `/health` every [`POLL`] until every worker is ready in
/// generation 2, asserting all along that at most one worker is out of service and that
/// `/connect` never hands out a worker that was not ready from before the handout until after
/// it. Returns the number of polls.
pub async fn watch_roll(sup: &Supervisor) -> usize {
    let deadline = Instant::now() + SETTLE;
    let mut polls = 0;
    loop {
        polls += 1;
        let before = health_during_roll(sup).await;
        let handout = sup.handout().await.expect("/connect during the roll");
        let after = health_during_roll(sup).await;
        let index = handout.worker.expect("a worker of this supervisor");
        let (b, a) = (&before.workers[index], &after.workers[index]);
        assert_eq!(handout.url, format!("http://127.0.0.1:{}/rohrpost", a.port));
        // A slot's generation only changes when a new process starts: not ready before, not
        // ready after and the same process means it was not ready at any moment in between.
        assert!(
            b.state == State::Ready || a.state == State::Ready || a.generation != b.generation,
            "/connect handed out worker {index}, which was not ready: before {b:?}, after {a:?}"
        );
        if after.all_ready_in(2) {
            assert!(!after.rolling, "the roll is over: {after:?}");
            assert_eq!(after.counters.drains, 2, "one drain per worker");
            return polls;
        }
        assert!(Instant::now() < deadline, "roll not done: {after:?}");
        actix_rt::time::sleep(POLL).await;
    }
}

/// `/health` while rolling, with at least `count - 1` ready workers.
async fn health_during_roll(sup: &Supervisor) -> Health {
    let health = sup.health().await.expect("/health during the roll");
    assert!(
        health.ready() + 1 >= health.workers.len(),
        "ready workers fell below count - 1: {health:?}"
    );
    health
}

/// Waits until none of `pids` is a live worker of `sup`; fails at `deadline`.
pub async fn wait_gone(sup: &Supervisor, pids: &[u32], deadline: Instant) {
    assert!(!pids.is_empty(), "workers to watch");
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| sup.is_our_worker(p))
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workers still running: {alive:?}"
        );
        actix_rt::time::sleep(POLL).await;
    }
}

/// The inode of the executable file process `pid` runs (also when that file was replaced).
pub fn running_inode(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/exe: {e}"))
        .ino()
}
