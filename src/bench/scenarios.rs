//! The benchmark scenarios and their report (one JSON line, then a readable table).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::future::join_all;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::client::{self, Session, Tally};
use super::{now_us, BenchArgs, BenchError, Scenario};

/// Runs the scenario and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let deadline = Instant::now() + args.timeout;
    let http = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .timeout(Duration::from_secs(10))
        .finish();
    let report = match args.scenario {
        Scenario::Idle => idle(&args, &http).await?,
        Scenario::Fanout => fanout(&args, &http, deadline).await?,
        Scenario::Inbound => inbound(&args, &http, deadline).await?,
        Scenario::Http => round_trips(&args, &http, deadline).await?,
    };
    println!("{report}");
    print_table(&report);
    Ok(())
}

/// Opens `n` sessions, `concurrency` at a time.
async fn open_sessions(
    args: &BenchArgs,
    http: &awc::Client,
    tally: &Rc<RefCell<Tally>>,
) -> Result<(Vec<Session>, Duration), BenchError> {
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(args.sessions);
    while sessions.len() < args.sessions {
        let batch = args.concurrency.min(args.sessions - sessions.len());
        let opened =
            join_all((0..batch).map(|_| client::open(http, &args.url, args.legacy, tally.clone())))
                .await;
        for session in opened {
            sessions.push(session?);
        }
    }
    Ok((sessions, started.elapsed()))
}

/// Resident memory (KiB) of the supervisor and its workers, from /proc.
async fn server_rss_kib(http: &awc::Client, main: &str) -> Result<u64, BenchError> {
    let mut res = http
        .get(format!("{main}/health"))
        .send()
        .await
        .map_err(|e| BenchError::Server(format!("/health: {e}")))?;
    let health: Value = res
        .json()
        .await
        .map_err(|e| BenchError::Server(format!("/health: {e}")))?;
    let mut pids: Vec<u64> = health["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["pid"].as_u64())
        .collect();
    pids.extend(health["pid"].as_u64());
    Ok(pids.iter().map(|pid| rss_kib(*pid)).sum())
}

fn rss_kib(pid: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn idle(args: &BenchArgs, http: &awc::Client) -> Result<Value, BenchError> {
    let before = server_rss_kib(http, &args.url).await?;
    let tally = Tally::new();
    let (sessions, open_time) = open_sessions(args, http, &tally).await?;
    actix_rt::time::sleep(args.hold).await;
    let after = server_rss_kib(http, &args.url).await?;
    let dropped = tally.borrow().dropped_sessions;
    for s in &sessions {
        s.close();
    }
    let per_session = (after.saturating_sub(before)) as f64 / args.sessions.max(1) as f64;
    Ok(json!({
        "scenario": "idle",
        "sessions": args.sessions,
        "open_seconds": open_time.as_secs_f64(),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_session": (per_session * 100.0).round() / 100.0,
        "sessions_lost": dropped,
    }))
}

/// Publishes one timestamped message on the topic, through Redis or the server API.
struct Publisher {
    redis: Option<redis::aio::MultiplexedConnection>,
    api_key: Option<String>,
}

impl Publisher {
    async fn new(args: &BenchArgs) -> Result<Publisher, BenchError> {
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

    async fn publish(&mut self, http: &awc::Client, args: &BenchArgs, i: i64) -> bool {
        let data = json!({"t": now_us(), "i": i});
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
    http: &awc::Client,
    deadline: Instant,
) -> Result<Value, BenchError> {
    let tally = Tally::new();
    let (_sessions, open_time) = open_sessions(args, http, &tally).await?;
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
    let started = now_us();
    let pause = args
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
    for i in 0..args.messages {
        publisher.publish(http, args, i as i64).await;
        if let Some(pause) = pause {
            actix_rt::time::sleep(pause).await;
        }
    }
    let expected = (args.messages * args.sessions) as u64;
    wait_for(&tally, expected, deadline).await;
    Ok(delivery_report(
        "fanout", args, &tally, expected, started, open_time,
    ))
}

async fn inbound(
    args: &BenchArgs,
    http: &awc::Client,
    deadline: Instant,
) -> Result<Value, BenchError> {
    let Some(url) = &args.redis else {
        return Err(BenchError::Usage(
            "inbound counts arrivals with a Redis subscriber: give --redis URL (server with \
             broker.kind = \"redis\")"
                .into(),
        ));
    };
    let tally = Tally::new();
    let (sessions, open_time) = open_sessions(args, http, &tally).await?;
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
    let arrivals = Rc::new(RefCell::new(0u64));
    let counter = arrivals.clone();
    let mut stream = pubsub.into_on_message();
    actix_rt::spawn(async move {
        while stream.next().await.is_some() {
            *counter.borrow_mut() += 1;
        }
    });
    let started = Instant::now();
    for (s, session) in sessions.iter().enumerate() {
        for i in 0..args.per_session {
            session.publish(&args.topic, &json!({"s": s, "i": i}));
        }
    }
    let expected = (args.sessions * args.per_session) as u64;
    while *arrivals.borrow() < expected && Instant::now() < deadline {
        let before = *arrivals.borrow();
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        if *arrivals.borrow() == before && started.elapsed() > Duration::from_secs(5) {
            break; // nothing more is coming
        }
    }
    let got = *arrivals.borrow();
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "scenario": "inbound",
        "sessions": args.sessions,
        "messages": expected,
        "arrived": got,
        "loss": expected.saturating_sub(got),
        "msgs_per_second": (got as f64 / seconds).round(),
        "open_seconds": open_time.as_secs_f64(),
    }))
}

async fn round_trips(
    args: &BenchArgs,
    http: &awc::Client,
    deadline: Instant,
) -> Result<Value, BenchError> {
    // The minimal backend: answers each message with its own timestamp, to that session.
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|body: web::Json<Value>| async move {
            HttpResponse::Ok().json(json!({"data": {"t": body["data"]["t"]}}))
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(&args.backend)
    .map_err(|e| BenchError::Usage(format!("--backend {}: {e}", args.backend)))?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let tally = Tally::new();
    let (sessions, open_time) = open_sessions(args, http, &tally).await?;
    // In waves: every session sends one message and the wave waits for all answers, so that at
    // most `sessions` requests are open at once (keep it under the server's http.max_in_flight).
    let started = now_us();
    for wave in 1..=args.per_session {
        for session in &sessions {
            session.publish(&args.topic, &json!({"t": now_us()}));
        }
        wait_for(&tally, (wave * args.sessions) as u64, deadline).await;
    }
    let expected = (args.sessions * args.per_session) as u64;
    handle.stop(false).await;
    Ok(delivery_report(
        "http", args, &tally, expected, started, open_time,
    ))
}

/// Waits until `expected` deliveries, the deadline, or 5 s without progress.
async fn wait_for(tally: &Rc<RefCell<Tally>>, expected: u64, deadline: Instant) {
    let mut last = (0, Instant::now());
    while tally.borrow().delivered < expected && Instant::now() < deadline {
        // Short polls: an http wave waits here between round trips.
        actix_rt::time::sleep(Duration::from_millis(1)).await;
        let now = tally.borrow().delivered;
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

fn print_table(report: &Value) {
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
