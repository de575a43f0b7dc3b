//! `presence`: `-n` sessions come and go while the bench is the server's event hook; how fast
//! their `session.opened` and `session.closed` reach the hook (events/s the hook path
//! sustains, end to end: welcome or goodbye → directory → log → supervisor → POST), and how
//! long the server API's presence queries take with all of them listed.
//!
//! The server's `hooks.events_url` must be `http://<--backend>/events`; `--api-key` is needed
//! for the queries. Every session's two events must arrive, or the run fails.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

use super::client::Tally;
use super::scenarios::{open_sessions, wait_for, Clients};
use super::system::CpuMeter;
use super::{BenchArgs, BenchError};

/// Runs of each presence query; the report gives their median.
const QUERY_RUNS: usize = 5;

/// What the hook has received.
#[derive(Default)]
struct Arrivals {
    opened: u64,
    closed: u64,
    posts: u64,
    last_opened: Option<Instant>,
    last_closed: Option<Instant>,
}

fn serve_hook(
    addr: &str,
    arrivals: Arc<Mutex<Arrivals>>,
) -> Result<actix_web::dev::ServerHandle, BenchError> {
    let state = web::Data::from(arrivals);
    let hook = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::JsonConfig::default().limit(1 << 24))
            .route("/events", web::post().to(take))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .map_err(|e| BenchError::Usage(format!("--backend {addr}: {e}")))?
    .run();
    let handle = hook.handle();
    actix_rt::spawn(hook);
    Ok(handle)
}

async fn take(body: web::Json<Value>, arrivals: web::Data<Mutex<Arrivals>>) -> HttpResponse {
    let now = Instant::now();
    let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    a.posts += 1;
    for event in body["events"].as_array().into_iter().flatten() {
        match event["event"].as_str() {
            Some("session.opened") => {
                a.opened += 1;
                a.last_opened = Some(now);
            }
            Some("session.closed") => {
                a.closed += 1;
                a.last_closed = Some(now);
            }
            _ => {}
        }
    }
    HttpResponse::NoContent().finish()
}

/// Waits (see [`wait_for`]) until `count` of the arrivals reaches `want`; answers the count.
async fn arrived(
    arrivals: &Mutex<Arrivals>,
    count: fn(&Arrivals) -> u64,
    want: u64,
    deadline: Instant,
) -> u64 {
    let now = || count(&arrivals.lock().unwrap_or_else(|e| e.into_inner()));
    wait_for(now, want, deadline).await;
    now()
}

/// The median time of [`QUERY_RUNS`] GETs of `path` on the server API, and the last answer.
async fn time_query(
    args: &BenchArgs,
    http: &awc::Client,
    path: &str,
) -> Result<(f64, Value), BenchError> {
    let key = args.api_key.as_deref().ok_or_else(|| {
        BenchError::Usage("presence needs --api-key (the server's api.key)".into())
    })?;
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let mut times = Vec::with_capacity(QUERY_RUNS);
    let mut answer = Value::Null;
    for _ in 0..QUERY_RUNS {
        let started = Instant::now();
        let mut res = http
            .get(&url)
            .insert_header(("Authorization", format!("Bearer {key}")))
            .send()
            .await
            .map_err(|e| BenchError::Server(format!("GET {url}: {e}")))?;
        let body = res
            .body()
            .limit(1 << 28)
            .await
            .map_err(|e| BenchError::Server(format!("GET {url}: {e}")))?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if !res.status().is_success() {
            return Err(BenchError::Server(format!("GET {url}: {}", res.status())));
        }
        answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[QUERY_RUNS / 2], answer))
}

fn per_second(count: u64, from: Instant, to: Option<Instant>) -> f64 {
    let seconds = to.map_or(0.0, |t| t.duration_since(from).as_secs_f64());
    if seconds > 0.0 {
        (count as f64 / seconds).round()
    } else {
        0.0
    }
}

pub(super) async fn presence(
    args: &BenchArgs,
    clients: &Clients,
    server: &[u32],
    deadline: Instant,
) -> Result<Value, BenchError> {
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let hook = serve_hook(&args.backend, arrivals.clone())?;
    let want = args.sessions as u64;
    let tally = Tally::new();
    let cpu = CpuMeter::start(server);
    let opening = Instant::now();
    let gateway = super::nchan::gateway(args, super::nchan::Location::Subscriber);
    let (sessions, open_time) = open_sessions(args, clients, &gateway, &tally).await?;
    let opened = arrived(&arrivals, |a| a.opened, want, deadline).await;
    let last_opened = arrivals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last_opened;
    let topic = &args.topic;
    let (count_ms, counted) = time_query(
        args,
        clients.first(),
        &format!("/api/sessions?topic={topic}&count=1"),
    )
    .await?;
    let (list_ms, listed) = time_query(
        args,
        clients.first(),
        &format!("/api/sessions?topic={topic}"),
    )
    .await?;
    let listed = listed["sessions"].as_array().map_or(0, Vec::len);
    // Sessions that ended before their goodbye (their goodbye closes the rest).
    let lost = tally.borrow().dropped_sessions;
    let closing = Instant::now();
    for session in &sessions {
        session.bye();
    }
    let closed = arrived(&arrivals, |a| a.closed, want, deadline).await;
    let cpu_percent = cpu.percent();
    hook.stop(false).await;
    let a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    if opened < want || closed < want || counted["count"] != json!(want) || listed as u64 != want {
        return Err(BenchError::Server(format!(
            "{want} sessions: {opened} opened and {closed} closed events arrived, presence counted {} and listed {listed}",
            counted["count"]
        )));
    }
    Ok(json!({
        "scenario": "presence",
        "sessions": args.sessions,
        "open_seconds": open_time.as_secs_f64(),
        "opened_events_per_second": per_second(opened, opening, last_opened),
        "closed_events_per_second": per_second(closed, closing, a.last_closed),
        "hook_posts": a.posts,
        "count_query_ms": (count_ms * 100.0).round() / 100.0,
        "list_query_ms": (list_ms * 100.0).round() / 100.0,
        "sessions_lost": lost,
        "server": {"cpu_percent": cpu_percent, "rss_kib": super::system::rss_kib(server)},
    }))
}
