//! `bench idle --processes P`: the sessions are split over P bench processes, because one process
//! may hold no more sockets than its open-file limit allows (a hard limit that only a privileged
//! user can raise). The parent starts the children, waits until each has its share open, holds,
//! measures the server, and then lets them go by closing their standard input.
//!
//! A child (the hidden `--child` flag) prints one JSON line when its sessions are open
//! (`{"opened": n}`), holds them until its standard input closes (or `--timeout`), and prints a
//! last line (`{"sessions_lost": n}`) before it exits.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::{BenchArgs, BenchError};

/// One child: the process, and its output read line by line.
struct Worker {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
}

/// The command line of a child holding `share` of the sessions.
fn child_args(args: &BenchArgs, share: usize) -> Vec<String> {
    let mut argv = vec![
        "bench".to_string(),
        "idle".into(),
        "--child".into(),
        "-n".into(),
        share.to_string(),
        "--url".into(),
        args.url.clone(),
        "--concurrency".into(),
        args.concurrency.to_string(),
        "--timeout".into(),
        format!("{}s", args.timeout.as_secs().max(1)),
        "--target".into(),
        args.target.name().into(),
        "--topic".into(),
        args.topic.clone(),
    ];
    if let Some(ips) = &args.src_ips {
        argv.extend(["--src-ips".to_string(), ips.clone()]);
    }
    if let Some(ca) = &args.ca {
        argv.extend(["--ca".to_string(), ca.display().to_string()]);
    }
    if args.legacy {
        argv.push("--legacy".into());
    }
    argv
}

/// The next JSON line of a child, within `deadline`.
async fn next_report(worker: &mut Worker, deadline: Instant) -> Result<Value, BenchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let line = actix_rt::time::timeout(left, worker.lines.next_line())
        .await
        .map_err(|_| BenchError::Server("a bench child did not report in time".into()))?
        .map_err(|e| BenchError::Server(format!("bench child output: {e}")))?
        .ok_or_else(|| BenchError::Server("a bench child exited early (see its errors)".into()))?;
    serde_json::from_str(&line)
        .map_err(|e| BenchError::Server(format!("bench child said {line:?}: {e}")))
}

/// Opens the sessions in `processes` children; returns when all are open, with the time it
/// took. [`Children::release`] lets them go.
pub struct Children {
    workers: Vec<Worker>,
    deadline: Instant,
}

impl Children {
    pub async fn open(
        args: &BenchArgs,
        processes: usize,
    ) -> Result<(Children, Duration), BenchError> {
        let deadline = Instant::now() + args.timeout;
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::Usage(format!("cannot find the bench's own binary: {e}")))?;
        let started = Instant::now();
        let mut workers = Vec::with_capacity(processes);
        for p in 0..processes {
            // The first children take the remainder, one session each.
            let share = args.sessions / processes + usize::from(p < args.sessions % processes);
            let mut child = Command::new(&exe)
                .args(child_args(args, share))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| BenchError::Usage(format!("starting a bench child: {e}")))?;
            let stdout = child.stdout.take().expect("piped stdout");
            workers.push(Worker {
                child,
                lines: BufReader::new(stdout).lines(),
            });
        }
        let mut children = Children { workers, deadline };
        for worker in &mut children.workers {
            let report = next_report(worker, deadline).await?;
            if report["opened"].as_u64().is_none() {
                return Err(BenchError::Server(format!("bench child: {report}")));
            }
        }
        Ok((children, started.elapsed()))
    }

    /// Closes every child's input and sums the sessions they lost while holding.
    pub async fn release(mut self) -> Result<u64, BenchError> {
        for worker in &mut self.workers {
            drop(worker.child.stdin.take());
        }
        let mut lost = 0;
        for worker in &mut self.workers {
            let report = next_report(worker, self.deadline).await?;
            lost += report["sessions_lost"].as_u64().unwrap_or(0);
            let _ = worker.child.wait().await;
        }
        Ok(lost)
    }
}

/// The child's side: report the open sessions, hold them until standard input closes.
pub async fn hold_as_child(opened: usize, deadline: Instant) {
    println!("{}", json!({ "opened": opened }));
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = actix_rt::time::timeout(left, async {
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}
