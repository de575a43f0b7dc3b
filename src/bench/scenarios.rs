//! The benchmark scenarios and their report (one JSON line, then a readable table).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler};
use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::future::join_all;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::client::{self, Reader, Session, Tally};
use super::system::{self, CpuMeter};
use super::{addresses, now_us, processes, BenchArgs, BenchError, Scenario};
use crate::broker::local::LocalBroker;
use crate::broker::{BrokerMessage, Subscribe};
use crate::topics::Pattern;

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
    let server = system::server_pids(clients.first(), &args.url).await?;
    let report = match args.scenario {
        Scenario::Idle => idle(&args, &clients, &server).await?,
        Scenario::Fanout => fanout(&args, &clients, &server, deadline).await?,
        Scenario::Inbound => inbound(&args, &clients, &server, deadline).await?,
        Scenario::Http => round_trips(&args, &clients, &server, deadline).await?,
        Scenario::Soak => return super::soak::soak(&args, &clients).await,
        Scenario::Recovery => super::recovery::recovery(&args, &clients, &server, deadline).await?,
        Scenario::Presence => super::presence::presence(&args, &clients, &server, deadline).await?,
    };
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

/// Opens `n` sessions, `concurrency` at a time.
pub(super) async fn open_sessions(
    args: &BenchArgs,
    clients: &Clients,
    tally: &Rc<RefCell<Tally>>,
) -> Result<(Vec<Session>, Duration), BenchError> {
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(args.sessions);
    while sessions.len() < args.sessions {
        let batch = args.concurrency.min(args.sessions - sessions.len());
        let first = sessions.len();
        let opened = join_all((first..first + batch).map(|i| {
            client::open(
                clients.nth(i),
                &args.url,
                args.legacy,
                Reader::Reading,
                tally.clone(),
            )
        }))
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
    let tally = Tally::new();
    let cpu = CpuMeter::start(server);
    let mut children = None;
    let mut sessions = Vec::new();
    let open_time = if args.processes > 1 {
        let (opened, took) = processes::Children::open(args, args.processes).await?;
        children = Some(opened);
        took
    } else {
        let (opened, took) = open_sessions(args, clients, &tally).await?;
        sessions = opened;
        took
    };
    let open_cpu = cpu.percent();
    actix_rt::time::sleep(args.hold).await;
    let after = system::rss_kib(server);
    let dropped = match children {
        Some(children) => children.release().await?,
        None => tally.borrow().dropped_sessions,
    };
    for s in &sessions {
        s.close();
    }
    let per_session = (after.saturating_sub(before)) as f64 / args.sessions.max(1) as f64;
    Ok(json!({
        "scenario": "idle",
        "sessions": args.sessions,
        "processes": args.processes,
        "open_seconds": open_time.as_secs_f64(),
        "opened_per_second": (args.sessions as f64 / open_time.as_secs_f64().max(1e-9)).round(),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_session": (per_session * 100.0).round() / 100.0,
        "sessions_lost": dropped,
        "server": {"cpu_percent_while_opening": open_cpu, "rss_kib": after},
    }))
}

/// `--child`: open this process's share, report, hold until released, report what was lost.
async fn child(args: &BenchArgs, clients: &Clients, deadline: Instant) -> Result<(), BenchError> {
    let tally = Tally::new();
    let (sessions, _) = open_sessions(args, clients, &tally).await?;
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

/// Publishes one timestamped message on the topic, through Redis or the server API.
pub(super) struct Publisher {
    redis: Option<redis::aio::MultiplexedConnection>,
    api_key: Option<String>,
}

impl Publisher {
    pub(super) async fn new(args: &BenchArgs) -> Result<Publisher, BenchError> {
        let redis = match &args.redis {
            Some(url) => Some(
                redis::Client::open(url.as_str())
                    .map_err(|e| BenchError::Usage(format!("--redis: {e}")))?
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| BenchError::Server(format!("redis: {e}")))?,
            ),
            None => None,
        };
        if redis.is_none() && args.api_key.is_none() {
            return Err(BenchError::Usage(
                "fanout publishes through the server API (--api-key or ROHRPOST__API__KEY) or \
                 Redis (--redis URL)"
                    .into(),
            ));
        }
        Ok(Publisher {
            redis,
            api_key: args.api_key.clone(),
        })
    }

    pub(super) async fn publish(&mut self, http: &awc::Client, args: &BenchArgs, i: i64) -> bool {
        let mut data = json!({"t": now_us(), "i": i});
        if args.payload > 0 {
            data["pad"] = json!("x".repeat(args.payload));
        }
        match &mut self.redis {
            Some(conn) => {
                let payload = json!({"data": data}).to_string();
                redis::cmd("PUBLISH")
                    .arg(&args.topic)
                    .arg(payload)
                    .query_async::<i64>(conn)
                    .await
                    .is_ok()
            }
            None => http
                .post(format!("{}/api/publish", args.url))
                .insert_header((
                    "Authorization",
                    format!("Bearer {}", self.api_key.as_deref().unwrap_or("")),
                ))
                .send_json(&json!({"topic": args.topic, "data": data}))
                .await
                .is_ok_and(|r| r.status().is_success()),
        }
    }
}

async fn fanout(
    args: &BenchArgs,
    clients: &Clients,
    server: &[u32],
    deadline: Instant,
) -> Result<Value, BenchError> {
    let http = clients.first();
    let tally = Tally::new();
    let (_sessions, open_time) = open_sessions(args, clients, &tally).await?;
    let mut stalled = Vec::with_capacity(args.stalled);
    for i in 0..args.stalled {
        let client = clients.nth(args.sessions + i);
        let opened = client::open(
            client,
            &args.url,
            args.legacy,
            Reader::Stalled,
            tally.clone(),
        );
        stalled.push(opened.await?);
    }
    let closes_before = slow_consumer_closes(http, &args.url).await;
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

/// Counts the messages a broker subscription delivers, and when the last one came.
struct ArrivalCounter(Rc<Arrivals>);

#[derive(Default)]
struct Arrivals {
    count: Cell<u64>,
    last: Cell<Option<Instant>>,
}

impl Arrivals {
    fn arrived(&self) {
        self.count.set(self.count.get() + 1);
        self.last.set(Some(Instant::now()));
    }

    fn reset(&self) {
        self.count.set(0);
        self.last.set(None);
    }
}

impl Actor for ArrivalCounter {
    type Context = Context<Self>;
}

impl Handler<BrokerMessage> for ArrivalCounter {
    type Result = ();

    fn handle(&mut self, _msg: BrokerMessage, _ctx: &mut Context<Self>) {
        self.0.arrived();
    }
}

/// Subscribes to the bench topic on Redis or the embedded broker; arrivals are counted. The
/// embedded broker's client actor comes back too: it lives as long as its address is held.
async fn count_arrivals(
    args: &BenchArgs,
) -> Result<(Rc<Arrivals>, Option<actix::Addr<LocalBroker>>), BenchError> {
    let arrivals = Rc::new(Arrivals::default());
    let mut local = None;
    if let Some(url) = &args.redis {
        let client = redis::Client::open(url.as_str())
            .map_err(|e| BenchError::Usage(format!("--redis: {e}")))?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| BenchError::Server(format!("redis: {e}")))?;
        pubsub
            .subscribe(&args.topic)
            .await
            .map_err(|e| BenchError::Server(format!("redis: {e}")))?;
        let counter = arrivals.clone();
        let mut stream = pubsub.into_on_message();
        actix_rt::spawn(async move {
            while stream.next().await.is_some() {
                counter.arrived();
            }
        });
    } else if let Some(path) = &args.local_broker {
        let pattern = Pattern::parse(&args.topic, 1024)
            .map_err(|e| BenchError::Usage(format!("--topic: {e}")))?;
        let counter = ArrivalCounter(arrivals.clone()).start();
        let broker = LocalBroker::start(path, counter.recipient());
        broker.do_send(Subscribe(pattern));
        local = Some(broker);
    } else {
        return Err(BenchError::Usage(
            "inbound counts arrivals with a broker subscriber: give --redis URL (server with \
             broker.kind = \"redis\") or --local-broker SOCKET (the server's broker.socket)"
                .into(),
        ));
    }
    Ok((arrivals, local))
}

async fn inbound(
    args: &BenchArgs,
    clients: &Clients,
    server: &[u32],
    deadline: Instant,
) -> Result<Value, BenchError> {
    let (arrivals, _local_broker) = count_arrivals(args).await?;
    let tally = Tally::new();
    let (sessions, open_time) = open_sessions(args, clients, &tally).await?;
    // Warm up: one session publishes until the subscriber sees it.
    while arrivals.count.get() == 0 {
        if Instant::now() > deadline {
            return Err(BenchError::Server(
                "the subscriber never saw a message (is the topic on the default whitelist, \
                 and --redis / --local-broker the server's broker?)"
                    .into(),
            ));
        }
        sessions[0].publish(&args.topic, &json!({"warm": true}));
        actix_rt::time::sleep(Duration::from_millis(300)).await;
    }
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    arrivals.reset();
    let cpu = CpuMeter::start(server);
    let started = Instant::now();
    for (s, session) in sessions.iter().enumerate() {
        for i in 0..args.per_session {
            session.publish(&args.topic, &json!({"s": s, "i": i}));
        }
    }
    let expected = (args.sessions * args.per_session) as u64;
    wait_for(|| arrivals.count.get(), expected, deadline).await;
    let cpu_percent = cpu.percent();
    let got = arrivals.count.get();
    let seconds = arrivals
        .last
        .get()
        .map_or(0.0, |last| last.duration_since(started).as_secs_f64());
    Ok(json!({
        "scenario": "inbound",
        "sessions": args.sessions,
        "messages": expected,
        "arrived": got,
        "loss": expected.saturating_sub(got),
        "msgs_per_second": if seconds > 0.0 { (got as f64 / seconds).round() } else { 0.0 },
        "seconds": seconds,
        "open_seconds": open_time.as_secs_f64(),
        "sessions_lost": tally.borrow().dropped_sessions,
        "server": {"cpu_percent": cpu_percent, "rss_kib": system::rss_kib(server)},
    }))
}

async fn round_trips(
    args: &BenchArgs,
    clients: &Clients,
    server: &[u32],
    deadline: Instant,
) -> Result<Value, BenchError> {
    let handle = serve_backend(&args.backend)?;
    let tally = Tally::new();
    let (sessions, open_time) = open_sessions(args, clients, &tally).await?;
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
