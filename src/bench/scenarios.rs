//! The benchmark scenarios and their report (one JSON line, then a readable table).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::future::join_all;
use serde_json::{json, Value};

use super::client::{self, Gateway, Reader, Session, Tally};
use super::nchan::{self, Location};
use super::publisher::Publisher;
use super::system::{self, CpuMeter};
use super::{addresses, now_us, processes, BenchArgs, BenchError, Scenario};

/// Descriptors the bench keeps besides one per session (pooled HTTP connections, the broker).
const SPARE_FILES: u64 = 512;

/// Runs the scenario and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let deadline = Instant::now() + args.timeout;
    // With --processes the children hold the sockets, each under its own limit.
    let held = if args.processes > 1 { 0 } else { args.sessions };
    let wanted_files = held as u64 + SPARE_FILES;
    let files = crate::open_files::raise_to(wanted_files);
    if files < wanted_files {
        anyhow::bail!(
            "{} sessions need {wanted_files} open files, the limit is {files} and cannot be \
             raised here (raise the hard limit: `ulimit -Hn`, or run as root)",
            args.sessions
        );
    }
    nchan::check(&args)?;
    let clients = Clients::new(&args)?;
    if args.child {
        return Ok(child(&args, &clients, deadline).await?);
    }
    if args.processes == 0 {
        anyhow::bail!("--processes must be at least 1");
    }
    if args.processes > 1 && args.scenario != Scenario::Idle {
        anyhow::bail!("--processes splits only `idle`; the other scenarios run in one process");
    }
    let server = system::server_processes(&args, clients.first()).await?;
    let mut report = match args.scenario {
        Scenario::Idle => idle(&args, &clients, &server).await?,
        Scenario::Fanout => fanout(&args, &clients, &server, deadline).await?,
        Scenario::Inbound => super::inbound::inbound(&args, &clients, &server, deadline).await?,
        Scenario::Http => round_trips(&args, &clients, &server, deadline).await?,
        Scenario::Soak => return super::soak::soak(&args, &clients).await,
        Scenario::Recovery => super::recovery::recovery(&args, &clients, &server, deadline).await?,
        Scenario::Presence => super::presence::presence(&args, &clients, &server, deadline).await?,
    };
    report["target"] = json!(args.target.name());
    println!("{report}");
    print_table(&report);
    Ok(())
}

/// HTTP clients, one per source address (`--src-ips`), or one using the kernel's choice.
pub(super) struct Clients(Vec<awc::Client>);

impl Clients {
    fn new(args: &BenchArgs) -> Result<Clients, BenchError> {
        let tls = match &args.ca {
            Some(ca) => Some(std::sync::Arc::new(
                crate::tls::client_config_trusting(ca)
                    .map_err(|e| BenchError::Usage(format!("--ca: {e}")))?,
            )),
            None => None,
        };
        let build = |ip: Option<std::net::IpAddr>| {
            let mut connector = awc::Connector::new().limit(0);
            if let Some(tls) = &tls {
                connector = connector.rustls_0_23(tls.clone());
            }
            if let Some(ip) = ip {
                connector = connector.local_address(ip);
            }
            awc::Client::builder()
                .connector(connector)
                .timeout(Duration::from_secs(10))
                .finish()
        };
        Ok(Clients(match &args.src_ips {
            Some(spec) => addresses::parse_src_ips(spec)?
                .into_iter()
                .map(|ip| build(Some(ip)))
                .collect(),
            None => vec![build(None)],
        }))
    }

    pub(super) fn first(&self) -> &awc::Client {
        &self.0[0]
    }

    /// The client of the `i`th session (round-robin over the source addresses).
    pub(super) fn nth(&self, i: usize) -> &awc::Client {
        &self.0[i % self.0.len()]
    }
}

/// Opens `n` sessions on `gateway`, `concurrency` at a time.
pub(super) async fn open_sessions(
    args: &BenchArgs,
    clients: &Clients,
    gateway: &Gateway,
    tally: &Rc<RefCell<Tally>>,
) -> Result<(Vec<Session>, Duration), BenchError> {
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(args.sessions);
    while sessions.len() < args.sessions {
        let batch = args.concurrency.min(args.sessions - sessions.len());
        let first = sessions.len();
        let opened = join_all(
            (first..first + batch)
                .map(|i| client::open(clients.nth(i), gateway, Reader::Reading, tally.clone())),
        )
        .await;
        for session in opened {
            sessions.push(session?);
        }
    }
    Ok((sessions, started.elapsed()))
}

/// The server's figures over a measured phase: CPU use, and memory at its end.
fn server_figures(cpu: &CpuMeter, server: &[u32]) -> Value {
    json!({"cpu_percent": cpu.percent(), "rss_kib": system::rss_kib(server)})
}

async fn idle(args: &BenchArgs, clients: &Clients, server: &[u32]) -> Result<Value, BenchError> {
    let before = system::rss_kib(server);
    let pss_before = system::pss_kib(server);
    let tally = Tally::new();
    let cpu = CpuMeter::start(server);
    let mut children = None;
    let mut sessions = Vec::new();
    let open_time = if args.processes > 1 {
        let (opened, took) = processes::Children::open(args, args.processes).await?;
        children = Some(opened);
        took
    } else {
        let gateway = nchan::gateway(args, Location::Subscriber);
        let (opened, took) = open_sessions(args, clients, &gateway, &tally).await?;
        sessions = opened;
        took
    };
    let open_cpu = cpu.percent();
    actix_rt::time::sleep(args.hold).await;
    let after = system::rss_kib(server);
    let pss_after = system::pss_kib(server);
    let dropped = match children {
        Some(children) => children.release().await?,
        None => tally.borrow().dropped_sessions,
    };
    for s in &sessions {
        s.close();
    }
    let per_session = |before: u64, after: u64| {
        let kib = after.saturating_sub(before) as f64 / args.sessions.max(1) as f64;
        (kib * 100.0).round() / 100.0
    };
    Ok(json!({
        "scenario": "idle",
        "sessions": args.sessions,
        "processes": args.processes,
        "open_seconds": open_time.as_secs_f64(),
        "opened_per_second": (args.sessions as f64 / open_time.as_secs_f64().max(1e-9)).round(),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_session": per_session(before, after),
        "pss_before_kib": pss_before,
        "pss_after_kib": pss_after,
        "pss_kib_per_session": per_session(pss_before, pss_after),
        "sessions_lost": dropped,
        "server": {"cpu_percent_while_opening": open_cpu, "rss_kib": after, "pss_kib": pss_after},
    }))
}

/// `--child`: open this process's share, report, hold until released, report what was lost.
async fn child(args: &BenchArgs, clients: &Clients, deadline: Instant) -> Result<(), BenchError> {
    let tally = Tally::new();
    let gateway = nchan::gateway(args, Location::Subscriber);
    let (sessions, _) = open_sessions(args, clients, &gateway, &tally).await?;
    processes::hold_as_child(sessions.len(), deadline).await;
    println!(
        "{}",
        json!({"sessions_lost": tally.borrow().dropped_sessions})
    );
    for s in &sessions {
        s.close();
    }
    Ok(())
}

async fn fanout(
    args: &BenchArgs,
    clients: &Clients,
    server: &[u32],
    deadline: Instant,
) -> Result<Value, BenchError> {
    let http = clients.first();
    let tally = Tally::new();
    let gateway = nchan::gateway(args, Location::Subscriber);
    let (_sessions, open_time) = open_sessions(args, clients, &gateway, &tally).await?;
    let mut stalled = Vec::with_capacity(args.stalled);
    for i in 0..args.stalled {
        let client = clients.nth(args.sessions + i);
        let opened = client::open(client, &gateway, Reader::Stalled, tally.clone());
        stalled.push(opened.await?);
    }
    let closes_before = if args.stalled > 0 {
        slow_consumer_closes(http, &args.url).await
    } else {
        0
    };
    let mut publisher = Publisher::new(args).await?;
    // Warm up until every session receives: the workers' subscriptions are live.
    let want = args.sessions as u64;
    while tally.borrow().delivered < want {
        if Instant::now() > deadline {
            return Err(BenchError::Server("sessions never all received".into()));
        }
        tally.borrow_mut().delivered = 0;
        publisher.publish(http, args, -1).await;
        actix_rt::time::sleep(Duration::from_millis(300)).await;
    }
    *tally.borrow_mut() = Rc::try_unwrap(Tally::new())
        .map(RefCell::into_inner)
        .unwrap_or_else(|_| unreachable!());
    let cpu = CpuMeter::start(server);
    let started = now_us();
    let start = Instant::now();
    for i in 0..args.messages {
        if let Some(rate) = args.rate {
            // On a schedule, not a pause after each: the publish's own time does not add up.
            let due = start + Duration::from_secs_f64(i as f64 / rate.max(0.001));
            actix_rt::time::sleep_until(due.into()).await;
        }
        publisher.publish(http, args, i as i64).await;
    }
    let expected = (args.messages * args.sessions) as u64;
    wait_for(|| tally.borrow().delivered, expected, deadline).await;
    let mut report = delivery_report("fanout", args, &tally, expected, started, open_time);
    report["publish_rate"] = json!(args.rate);
    report["server"] = server_figures(&cpu, server);
    let delivered = tally.borrow().delivered;
    if delivered > 0 {
        let us = cpu.used_seconds() * 1e6 / delivered as f64;
        report["server"]["cpu_us_per_delivery"] = json!((us * 100.0).round() / 100.0);
    }
    if args.stalled > 0 {
        report["stalled_sessions"] = json!(args.stalled);
        // The server closes a stalled session once its queue is full; give it the time to.
        let wait_until = Instant::now() + Duration::from_secs(10);
        let mut closed = 0;
        while Instant::now() < wait_until {
            closed = slow_consumer_closes(http, &args.url).await - closes_before;
            if closed >= args.stalled as u64 {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        report["slow_consumer_closes"] = json!(closed);
    }
    drop(stalled);
    Ok(report)
}

/// The server's count of sessions closed as slow consumers (main port `/metrics`), or 0.
async fn slow_consumer_closes(http: &awc::Client, main: &str) -> u64 {
    let Ok(mut res) = http.get(format!("{main}/metrics")).send().await else {
        return 0;
    };
    let body = res.body().limit(1 << 20).await.unwrap_or_default();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("rohrpost_forced_closes_total{reason=\"slow_consumer\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn round_trips(
    args: &BenchArgs,
    clients: &Clients,
    server: &[u32],
    deadline: Instant,
) -> Result<Value, BenchError> {
    let handle = serve_backend(&args.backend)?;
    let tally = Tally::new();
    let gateway = nchan::gateway(args, Location::Subscriber);
    let (sessions, open_time) = open_sessions(args, clients, &gateway, &tally).await?;
    // In waves: every session sends one message and the wave waits for all answers, so that at
    // most `sessions` requests are open at once (keep it under the server's http.max_in_flight).
    let cpu = CpuMeter::start(server);
    let started = now_us();
    for wave in 1..=args.per_session {
        for session in &sessions {
            session.publish(&args.topic, &json!({"t": now_us()}));
        }
        wait_for(
            || tally.borrow().delivered,
            (wave * args.sessions) as u64,
            deadline,
        )
        .await;
    }
    let expected = (args.sessions * args.per_session) as u64;
    let mut report = delivery_report("http", args, &tally, expected, started, open_time);
    report["server"] = server_figures(&cpu, server);
    handle.stop(false).await;
    Ok(report)
}

/// Starts the minimal HTTP backend on `addr`: it answers each message with its own timestamp
/// (`{"data": {"t": …}}`), which the server delivers to the session that sent it.
pub(super) fn serve_backend(addr: &str) -> Result<actix_web::dev::ServerHandle, BenchError> {
    let backend = HttpServer::new(|| {
        App::new().default_service(web::to(|body: web::Json<Value>| async move {
            HttpResponse::Ok().json(json!({"data": {"t": body["data"]["t"]}}))
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .map_err(|e| BenchError::Usage(format!("--backend {addr}: {e}")))?
    .run();
    let handle = backend.handle();
    actix_rt::spawn(backend);
    Ok(handle)
}

/// Waits until `count()` reaches `expected`, the deadline, or 5 s without progress.
pub(super) async fn wait_for(count: impl Fn() -> u64, expected: u64, deadline: Instant) {
    let mut last = (0, Instant::now());
    while count() < expected && Instant::now() < deadline {
        // Short polls: an http wave waits here between round trips.
        actix_rt::time::sleep(Duration::from_millis(1)).await;
        let now = count();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
}

fn delivery_report(
    scenario: &str,
    args: &BenchArgs,
    tally: &Rc<RefCell<Tally>>,
    expected: u64,
    started_us: u64,
    open_time: Duration,
) -> Value {
    let t = tally.borrow();
    let seconds = (t.last_us.saturating_sub(started_us)) as f64 / 1e6;
    let ms = |q: f64| t.latency.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "scenario": scenario,
        "sessions": args.sessions,
        "expected": expected,
        "delivered": t.delivered,
        "delivered_ratio": if expected == 0 { 0.0 } else { t.delivered as f64 / expected as f64 },
        "per_second": if seconds > 0.0 { (t.delivered as f64 / seconds).round() } else { 0.0 },
        "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "p99_9": ms(0.999), "max": t.latency.max() as f64 / 1000.0},
        "open_seconds": open_time.as_secs_f64(),
        "sessions_lost": t.dropped_sessions,
    })
}

pub(super) fn print_table(report: &Value) {
    let Some(fields) = report.as_object() else {
        return;
    };
    for (key, value) in fields {
        match value {
            Value::Object(inner) => {
                for (k, v) in inner {
                    println!("  {:<24} {v}", format!("{key}.{k}"));
                }
            }
            other => println!("  {key:<24} {other}"),
        }
    }
}
