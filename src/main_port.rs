//! The main port: `/connect` load balancing, `/health`, `/metrics`, the server API and static
//! files, served by the supervisor.
//!
//! `GET {http.connect_path}` answers with the SockJS URL of the least-loaded ready worker that is
//! not draining, so browsers spread over the workers with no websocket-aware proxy in front.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use actix::prelude::*;
use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpRequest, HttpResponse};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::metrics::Snapshot;
use crate::supervisor::actor::{
    GetOverview, Overview, PickWorker, SlotState, StartRoll, Supervisor,
};

/// What the main port's handlers share.
pub struct MainPort {
    pub supervisor: Addr<Supervisor>,
    pub scheme: &'static str,
    pub host_external: String,
    pub prefix: String,
    pub api_key: Option<String>,
}

impl MainPort {
    pub fn new(config: &Config, supervisor: Addr<Supervisor>) -> Self {
        MainPort {
            supervisor,
            scheme: config.http_scheme(),
            host_external: config.http.host_external.clone(),
            prefix: config.sockjs.prefix.clone(),
            api_key: config.api.key.clone(),
        }
    }
}

/// Mounts the main port's routes.
pub fn configure(config: &Config, cfg: &mut web::ServiceConfig) {
    cfg.route(&config.http.connect_path, web::get().to(connect))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/api/restart", web::post().to(restart));
    if let Some(dir) = &config.http.static_dir {
        cfg.service(actix_files::Files::new("/", dir).index_file("index.html"));
    }
}

/// `GET /connect`: the SockJS URL of a worker, as text (or JSON with `Accept: application/json`).
async fn connect(req: HttpRequest, port: web::Data<MainPort>) -> HttpResponse {
    let picked = port.supervisor.send(PickWorker).await.ok().flatten();
    let mut res = match picked {
        None => HttpResponse::ServiceUnavailable(),
        Some(_) => HttpResponse::Ok(),
    };
    res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((
            header::CACHE_CONTROL,
            "no-store, no-cache, must-revalidate, max-age=0",
        ));
    let Some(worker) = picked else {
        return res
            .content_type(ContentType::plaintext())
            .body("No worker is available right now; try again in a moment.\n");
    };
    let url = format!(
        "{}://{}:{}{}",
        port.scheme, port.host_external, worker.port, port.prefix
    );
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        res.json(serde_json::json!({
            "url": url,
            "worker": worker.index,
            "sessions": worker.sessions,
        }))
    } else {
        res.content_type(ContentType::plaintext()).body(url)
    }
}

/// `GET /health`: 200 while at least one worker is ready.
async fn health(port: web::Data<MainPort>) -> HttpResponse {
    let Ok(overview) = port.supervisor.send(GetOverview).await else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let ready = overview
        .workers
        .iter()
        .filter(|w| w.state == SlotState::Ready)
        .count();
    let mut res = if ready > 0 {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.json(serde_json::json!({
        "status": if ready > 0 { "ok" } else { "unavailable" },
        "version": env!("CARGO_PKG_VERSION"),
        "ready_workers": ready,
        "workers": overview.workers,
        "counters": overview.counters,
        "rolling": overview.rolling,
    }))
}

/// `GET /metrics`: Prometheus text format, summed over the workers' reports.
async fn metrics(port: web::Data<MainPort>) -> HttpResponse {
    let Ok(overview) = port.supervisor.send(GetOverview).await else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render_metrics(&overview))
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition text: a few families, summed over the workers' last reports.
pub fn render_metrics(o: &Overview) -> String {
    let sum = |f: fn(&Snapshot) -> u64| -> u64 { o.workers.iter().map(|w| f(&w.metrics)).sum() };
    let mut out = String::new();

    family(
        &mut out,
        "rohrpost_worker_sessions",
        "gauge",
        "Open sessions per worker.",
    );
    for w in &o.workers {
        let _ = writeln!(
            out,
            "rohrpost_worker_sessions{{worker=\"{}\",port=\"{}\"}} {}",
            w.index, w.port, w.sessions
        );
    }
    family(
        &mut out,
        "rohrpost_messages_in_total",
        "counter",
        "Backend messages received, by path.",
    );
    let _ = writeln!(
        out,
        "rohrpost_messages_in_total{{path=\"broker\"}} {}",
        sum(|m| m.messages_in_broker)
    );
    let _ = writeln!(
        out,
        "rohrpost_messages_in_total{{path=\"http\"}} {}",
        sum(|m| m.messages_in_http)
    );
    family(
        &mut out,
        "rohrpost_messages_out_total",
        "counter",
        "Client messages passed to backends, by path.",
    );
    let _ = writeln!(
        out,
        "rohrpost_messages_out_total{{path=\"broker\"}} {}",
        sum(|m| m.messages_out_broker)
    );
    let _ = writeln!(
        out,
        "rohrpost_messages_out_total{{path=\"http\"}} {}",
        sum(|m| m.messages_out_http)
    );
    family(
        &mut out,
        "rohrpost_delivered_total",
        "counter",
        "Messages handed to client sessions.",
    );
    let _ = writeln!(out, "rohrpost_delivered_total {}", sum(|m| m.delivered));
    family(
        &mut out,
        "rohrpost_backend_errors_total",
        "counter",
        "Backend requests that failed.",
    );
    let _ = writeln!(
        out,
        "rohrpost_backend_errors_total {}",
        sum(|m| m.backend_errors)
    );

    family(
        &mut out,
        "rohrpost_dropped_total",
        "counter",
        "Messages not delivered, by reason.",
    );
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for w in &o.workers {
        for (reason, n) in &w.metrics.drops {
            *totals.entry(reason).or_default() += n;
        }
    }
    for (reason, total) in totals {
        let _ = writeln!(out, "rohrpost_dropped_total{{reason=\"{reason}\"}} {total}");
    }

    for (name, help, value) in [
        (
            "rohrpost_worker_restarts_total",
            "Workers started again (crash and staged restarts).",
            o.counters.restarts,
        ),
        (
            "rohrpost_worker_crashes_total",
            "Workers that exited without being told to.",
            o.counters.crashes,
        ),
        (
            "rohrpost_worker_drains_total",
            "Workers told to drain.",
            o.counters.drains,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// `POST /api/restart`: starts a staged restart (needs `api.key`).
async fn restart(req: HttpRequest, port: web::Data<MainPort>) -> HttpResponse {
    if let Some(refusal) = refuse_unauthorized(&req, &port) {
        return refusal;
    }
    let started = port.supervisor.send(StartRoll).await.unwrap_or(false);
    HttpResponse::Accepted().json(serde_json::json!({ "started": started }))
}

/// Checks the bearer token against `api.key` in constant time; the refusal when it does not match.
fn refuse_unauthorized(req: &HttpRequest, port: &MainPort) -> Option<HttpResponse> {
    let Some(key) = &port.api_key else {
        return Some(
            HttpResponse::NotFound()
                .content_type(ContentType::plaintext())
                .body("The server API is disabled: set api.key to enable it.\n"),
        );
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
        None
    } else {
        Some(
            HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .content_type(ContentType::plaintext())
                .body("Missing or wrong bearer token.\n"),
        )
    }
}
