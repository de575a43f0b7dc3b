//! `bench soak`: `--duration` (30 minutes by default) of mixed traffic against a running
//! supervisor, while the server's memory and open files are sampled — the test that nothing
//! grows without bound over restarts and churn.
//!
//! - A steady population of `-n` sessions (one task each, see [`session`]); every second
//!   `--churn` of them leave and come back as new sessions or reconnect resuming (which must
//!   give `resumed: true` and the whitelist back, including a pattern granted through the
//!   server API when the session was new).
//! - Fan-out: numbered messages on `--topic` through the server API (or `--redis`) at `--rate`
//!   per second (10 by default); a connection may miss none whose publishing started after its
//!   welcome.
//! - HTTP topics: `--http-rate` round trips per second through `--http-topic` to the minimal
//!   backend the bench serves on `--backend`.
//! - A staged restart (`POST /api/restart`) every `--restart-every`; the sessions it moves
//!   reconnect and resume.
//! - Every `--sample-every`: RSS and open file descriptors summed over the supervisor and its
//!   workers (from `/proc`, the processes as `/health` names them now), sessions, deliveries.
//!
//! The verdict: the RSS at the end (sessions still open) within [`RSS_TOLERANCE`] of the first
//! sample after warm-up — two restart intervals, at most a third of the run: by then the
//! embedded broker holds its steady number of session records (`sessions.ttl`, 10 minutes by
//! default), and one restart has put every session on one worker, whose heap keeps that size
//! (it is what a restart costs, not growth); the open
//! files at the end within [`fd_slack`] of that sample, and back within [`fd_slack_closed`] of
//! the start once every session has closed; no fan-out message lost; every resume good.

mod session;

use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use self::session::{Order, Shared, Totals};
use super::publisher::Publisher;
use super::scenarios::{print_table, serve_backend, Clients};
use super::system;
use super::{BenchArgs, BenchError};

/// The end-of-run RSS may be at most this multiple of the RSS after warm-up.
const RSS_TOLERANCE: f64 = 1.25;
/// Time for the last deliveries and round trips to arrive after traffic stops, and for idle
/// keep-alive connections to the main port to close.
const WIND_DOWN: Duration = Duration::from_secs(8);

/// Open files the server may hold at the end beyond the warm-up sample, sessions still open:
/// the same population, give or take the sessions in the middle of churn.
fn fd_slack(sessions: usize, churn: usize) -> u64 {
    32 + 2 * churn as u64 + sessions as u64 / 50
}

/// Open files the server may hold beyond its start once every session has closed: the workers'
/// pooled backend connections (at most about one second's round trips, which start at once;
/// the pool closes them only when it is next used) and a few more.
fn fd_slack_closed(http_rate: f64) -> u64 {
    32 + http_rate.ceil() as u64
}

/// One reading of the server and the run's counters.
#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    /// Seconds since the population was open.
    t: u64,
    rss_kib: u64,
    fds: u64,
    processes: usize,
    /// Sessions the server reports (sum over its workers).
    server_sessions: u64,
    /// A staged restart is under way.
    rolling: bool,
    /// Taken just before a restart was started.
    restart: bool,
    totals: Totals,
}

/// Runs the soak and prints its report; fails when the verdict does.
pub async fn soak(args: &BenchArgs, clients: &Clients) -> anyhow::Result<()> {
    if args.api_key.is_none() {
        anyhow::bail!(
            "soak restarts the server through its API: give --api-key (or ROHRPOST__API__KEY)"
        );
    }
    if args.duration.is_zero() || args.restart_every.is_zero() || args.sample_every.is_zero() {
        anyhow::bail!("--duration, --restart-every and --sample-every must be more than 0");
    }
    let http = clients.first().clone();
    let backend = serve_backend(&args.backend)?;
    let start = sample(&http, args, &Totals::default(), 0, false).await?;
    let churn = args.churn.unwrap_or(args.sessions / 100).max(1);
    let shared = Rc::new(Shared {
        url: args.url.clone(),
        api_key: args.api_key.clone(),
        topic: args.topic.clone(),
        http_topic: args.http_topic.clone(),
        published: std::cell::Cell::new(-1),
        sending: std::cell::Cell::new(-1),
        totals: Default::default(),
    });
    let (orders, tasks) = populate(args, clients, &shared).await;
    let publisher = publish(args, http.clone(), shared.clone()).await?;

    let began = Instant::now();
    let mut samples = vec![];
    let mut next_sample = Duration::ZERO;
    let mut next_restart = args.restart_every;
    let mut restarts = 0;
    let mut restarts_refused = 0;
    let mut http_due = 0.0;
    let mut churned = 0u64;
    let mut tick = actix_rt::time::interval(Duration::from_secs(1));
    while began.elapsed() < args.duration {
        tick.tick().await;
        for _ in 0..churn {
            // Alternately: a session leaves for a new one, a session reconnects resuming.
            churned += 1;
            let order = if churned.is_multiple_of(2) {
                Order::Leave
            } else {
                Order::Reconnect
            };
            let _ = orders[rand::random_range(0..orders.len())].send(order);
        }
        http_due += args.http_rate;
        while http_due >= 1.0 {
            http_due -= 1.0;
            let _ = orders[rand::random_range(0..orders.len())].send(Order::Http);
        }
        let now = began.elapsed();
        let restart_due = now >= next_restart && now + args.restart_every / 2 < args.duration;
        if now >= next_sample || restart_due {
            let totals = shared.totals.borrow().clone();
            match sample(&http, args, &totals, now.as_secs(), restart_due).await {
                Ok(s) => {
                    print_sample(&s);
                    samples.push(s);
                }
                Err(e) => log::warn!("soak sample at t={}s failed: {e}", now.as_secs()),
            }
            next_sample += args.sample_every;
        }
        if restart_due {
            if restart(&http, args).await? {
                restarts += 1;
            } else {
                restarts_refused += 1;
                log::warn!(
                    "soak t={}s: the server refused a restart (one still under way)",
                    now.as_secs()
                );
            }
            next_restart += args.restart_every;
        }
    }

    // Wind down: no new traffic, any restart finishes, the last messages arrive, and the
    // connections of the reconnect bursts to the main port are closed (keep-alive).
    publisher.stop();
    settle(&http, args).await;
    actix_rt::time::sleep(WIND_DOWN).await;
    let totals = shared.totals.borrow().clone();
    let end = sample(&http, args, &totals, began.elapsed().as_secs(), false).await?;
    print_sample(&end);
    for o in &orders {
        let _ = o.send(Order::Stop);
    }
    let _ = actix_rt::time::timeout(
        Duration::from_secs(30),
        futures_util::future::join_all(tasks),
    )
    .await;
    // The workers' pooled connections to the backend close with it.
    backend.stop(false).await;
    actix_rt::time::sleep(WIND_DOWN).await;
    let totals = shared.totals.borrow().clone();
    let closed = sample(&http, args, &totals, began.elapsed().as_secs(), false).await?;
    print_sample(&closed);

    let mut report = report(args, churn, &start, &samples, &end, &closed, restarts);
    report["publish_failures"] = json!(publisher.failures());
    report["restarts_refused"] = json!(restarts_refused);
    println!("{report}");
    print_table(&report);
    print_samples(&start, &samples, &end, &closed);
    if report["verdict"]["ok"] != true {
        anyhow::bail!("soak failed: {}", report["verdict"]);
    }
    Ok(())
}

/// Starts the population's tasks, `--concurrency` connecting at a time; their order queues.
async fn populate(
    args: &BenchArgs,
    clients: &Clients,
    shared: &Rc<Shared>,
) -> (
    Vec<tokio::sync::mpsc::UnboundedSender<Order>>,
    Vec<actix_rt::task::JoinHandle<()>>,
) {
    let mut orders = Vec::with_capacity(args.sessions);
    let mut tasks = Vec::with_capacity(args.sessions);
    let batch = args.concurrency.max(1);
    for i in 0..args.sessions {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = clients.nth(i).clone();
        tasks.push(actix_rt::spawn(session::run(i, client, shared.clone(), rx)));
        orders.push(tx);
        if (i + 1) % batch == 0 || i + 1 == args.sessions {
            // Until this batch is in (or has failed), at most 30 s.
            let want = (i + 1) as u64;
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                let tried = {
                    let t = shared.totals.borrow();
                    t.connects + t.connect_errors
                };
                if tried >= want {
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (orders, tasks)
}

/// The fan-out publisher, a task numbering its messages from 0 at `--rate` per second.
struct PublisherTask {
    stop: Rc<std::cell::Cell<bool>>,
    failures: Rc<std::cell::Cell<u64>>,
}

impl PublisherTask {
    fn stop(&self) {
        self.stop.set(true);
    }

    fn failures(&self) -> u64 {
        self.failures.get()
    }
}

async fn publish(
    args: &BenchArgs,
    http: awc::Client,
    shared: Rc<Shared>,
) -> Result<PublisherTask, BenchError> {
    let mut publisher = Publisher::new(args).await?;
    let task = PublisherTask {
        stop: Default::default(),
        failures: Default::default(),
    };
    let (stop, failures) = (task.stop.clone(), task.failures.clone());
    let args = args.clone();
    let period = Duration::from_secs_f64(1.0 / args.rate.unwrap_or(10.0).max(0.01));
    // Bounded even if the run ends early: the duration and a margin.
    let until = Instant::now() + args.duration + Duration::from_secs(300);
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut i = 0;
        while !stop.get() && Instant::now() < until {
            tick.tick().await;
            shared.sending.set(i);
            if publisher.publish(&http, &args, i).await {
                shared.published.set(i);
                i += 1;
            } else {
                failures.set(failures.get() + 1);
            }
        }
    });
    Ok(task)
}

/// Starts a staged restart through the server API (a second try if the connection failed);
/// whether one started (not while one is still under way).
pub(super) async fn restart(http: &awc::Client, args: &BenchArgs) -> Result<bool, BenchError> {
    let request = || {
        http.post(format!("{}/api/restart", args.url))
            .insert_header((
                "Authorization",
                format!("Bearer {}", args.api_key.as_deref().unwrap_or("")),
            ))
            .send()
    };
    let mut res = match request().await {
        Ok(res) => res,
        Err(_) => request()
            .await
            .map_err(|e| BenchError::Server(format!("/api/restart: {e}")))?,
    };
    if !res.status().is_success() {
        return Err(BenchError::Server(format!(
            "/api/restart answered {}",
            res.status()
        )));
    }
    let answer: Value = res.json().await.unwrap_or_default();
    Ok(answer["started"] == true)
}

/// Waits (at most two minutes) until no restart is under way and every worker is ready.
pub(super) async fn settle(http: &awc::Client, args: &BenchArgs) {
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        if let Ok(h) = system::health(http, &args.url).await {
            let workers = h["workers"].as_array().map_or(0, Vec::len) as u64;
            if h["rolling"] != true && h["ready_workers"].as_u64() == Some(workers) {
                return;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn sample(
    http: &awc::Client,
    args: &BenchArgs,
    totals: &Totals,
    t: u64,
    restart: bool,
) -> Result<Sample, BenchError> {
    // A pooled keep-alive connection may close under the request: try again (3 tries).
    let mut health = system::health(http, &args.url).await;
    for _ in 0..2 {
        if health.is_ok() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        health = system::health(http, &args.url).await;
    }
    let health = health?;
    let pids = system::pids_in(&health);
    let server_sessions = health["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["sessions"].as_u64())
        .sum();
    Ok(Sample {
        t,
        rss_kib: system::rss_kib(&pids),
        fds: system::open_fds(&pids),
        processes: pids.len(),
        server_sessions,
        rolling: health["rolling"] == true,
        restart,
        totals: totals.clone(),
    })
}

/// One progress line per sample (standard error: standard output is the report).
fn print_sample(s: &Sample) {
    let t = &s.totals;
    eprintln!(
        "soak t={}s sessions={} server_sessions={} rss={:.1}MiB fds={} processes={} \
         rolling={} restart={} connects={} resumes={}/{} recovered={}/{} fanout={}/lost {} \
         reported {} http={}/err {} closes={}+{}",
        s.t,
        t.connected,
        s.server_sessions,
        s.rss_kib as f64 / 1024.0,
        s.fds,
        s.processes,
        s.rolling,
        s.restart,
        t.connects,
        t.resumes_ok,
        t.resumes_failed,
        t.recovered,
        t.not_recovered,
        t.fanout_delivered,
        t.fanout_lost,
        t.fanout_reported,
        t.http_ok,
        t.http_errors,
        t.restart_closes,
        t.other_closes,
    );
}

/// The samples as a table: time, sessions, RSS, open files.
fn print_samples(start: &Sample, samples: &[Sample], end: &Sample, closed: &Sample) {
    println!(
        "  {:>8} {:>9} {:>9} {:>7}  note",
        "t (s)", "sessions", "RSS MiB", "fds"
    );
    let rows = std::iter::once((start, "start, no sessions"))
        .chain(
            samples
                .iter()
                .map(|s| (s, if s.restart { "restart" } else { "" })),
        )
        .chain([(end, "end"), (closed, "all sessions closed")]);
    for (s, note) in rows {
        println!(
            "  {:>8} {:>9} {:>9.1} {:>7}  {note}",
            s.t,
            s.totals.connected,
            s.rss_kib as f64 / 1024.0,
            s.fds
        );
    }
}

fn report(
    args: &BenchArgs,
    churn: usize,
    start: &Sample,
    samples: &[Sample],
    end: &Sample,
    closed: &Sample,
    restarts: u32,
) -> Value {
    let warmup = (args.restart_every * 2).min(args.duration / 3).as_secs();
    let baseline = samples.iter().find(|s| s.t >= warmup).unwrap_or(end);
    let all = || samples.iter().chain([end]);
    let max_rss = all().map(|s| s.rss_kib).max().unwrap_or(0);
    let max_fds = all().map(|s| s.fds).max().unwrap_or(0);
    let t = &closed.totals;
    let rss_bounded = end.rss_kib as f64 <= RSS_TOLERANCE * baseline.rss_kib as f64;
    let fd_limit = baseline.fds + fd_slack(args.sessions, churn);
    let fds_bounded = end.fds <= fd_limit;
    let fds_released_limit = start.fds + fd_slack_closed(args.http_rate);
    let fds_released = closed.fds <= fds_released_limit;
    let ok = rss_bounded
        && fds_bounded
        && fds_released
        && t.fanout_lost == 0
        && t.resumes_failed == 0
        && t.resumes_ok > 0;
    json!({
        "scenario": "soak",
        "sessions": args.sessions,
        "duration_seconds": end.t,
        "restarts": restarts,
        "churn_per_second": churn,
        "rss_kib": {"start": start.rss_kib, "warm": baseline.rss_kib, "max": max_rss,
                    "end": end.rss_kib, "closed": closed.rss_kib},
        "fds": {"start": start.fds, "warm": baseline.fds, "max": max_fds, "end": end.fds,
                "closed": closed.fds},
        "at_restarts": samples.iter().filter(|s| s.restart)
            .map(|s| json!({"t": s.t, "rss_kib": s.rss_kib, "fds": s.fds}))
            .collect::<Vec<_>>(),
        "totals": t,
        "verdict": {
            "ok": ok,
            "warm_sample_t": baseline.t,
            "rss_bounded": rss_bounded,
            "rss_limit_kib": (RSS_TOLERANCE * baseline.rss_kib as f64) as u64,
            "fds_bounded": fds_bounded,
            "fds_limit": fd_limit,
            "fds_released": fds_released,
            "fds_released_limit": fds_released_limit,
            "no_loss": t.fanout_lost == 0,
            "resumes_good": t.resumes_failed == 0 && t.resumes_ok > 0,
        },
    })
}
