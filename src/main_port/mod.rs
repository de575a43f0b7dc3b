//! The main port: `/connect` load balancing, `/health`, `/metrics`, the server API and static
//! files, served by the supervisor.
//!
//! `GET {http.connect_path}` answers with the SockJS URL of the least-loaded ready worker that is
//! not draining, so browsers spread over the workers with no websocket-aware proxy in front;
//! when none can take a session, `503`, or in legacy mode the original's `404`.

mod api;
mod prometheus;
pub mod sessions;

use std::time::Duration;

use actix::prelude::*;
use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::broker::{Broker, Cluster, Directory, Withdraw};
use crate::cluster::{self, read_directory};
use crate::config::Config;
use crate::legacy;
use crate::supervisor::actor::{GetOverview, PickWorker, SlotState, Supervisor};

/// What the main port's handlers share.
pub struct MainPort {
    pub supervisor: Addr<Supervisor>,
    /// Where `/api/publish` and `/api/sessions/{id}` publish.
    pub broker: Broker,
    /// With `cluster.enabled`: the directory `/connect` picks from.
    pub cluster: Option<Cluster>,
    pub max_topic_len: usize,
    /// How long an API call's body may take to arrive (`http.body_timeout`).
    pub body_timeout: Duration,
    /// A worker with this many sessions is full: `/connect` does not hand it out.
    pub max_sessions_per_worker: usize,
    pub scheme: &'static str,
    pub host_external: String,
    pub prefix: String,
    pub api_key: Option<String>,
    /// `history.enabled`: the API publishes through the publication log.
    pub history: bool,
    /// `compat.legacy_handshake`: `/connect` answers as the original server did when no worker
    /// can take a session.
    pub legacy: bool,
}

impl MainPort {
    pub fn new(
        config: &Config,
        supervisor: Addr<Supervisor>,
        broker: Broker,
        cluster: Option<Cluster>,
    ) -> Self {
        MainPort {
            supervisor,
            broker,
            cluster,
            max_topic_len: config.limits.max_topic_len,
            body_timeout: config.http.body_timeout,
            max_sessions_per_worker: config.limits.max_sessions_per_worker,
            scheme: config.http_scheme(),
            host_external: config.http.host_external.clone(),
            prefix: config.sockjs.prefix.clone(),
            api_key: config.api.key.clone(),
            history: config.history.enabled,
            legacy: config.compat.legacy_handshake,
        }
    }
}

/// Mounts the main port's routes.
pub fn configure(config: &Config, cfg: &mut web::ServiceConfig) {
    cfg.route(&config.http.connect_path, web::get().to(connect))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/api/restart", web::post().to(api::restart))
        .route("/api/publish", web::post().to(api::publish))
        .route("/api/sessions", web::get().to(sessions::list))
        .route("/api/sessions/{id}", web::post().to(api::to_session))
        .route("/api/sessions/{id}", web::get().to(sessions::one))
        .route("/api/sessions/{id}", web::delete().to(sessions::kick));
    if let Some(dir) = &config.http.static_dir {
        // Never leave the directory: a symlink inside it that points outside is not followed.
        let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        let inside = move |path: &std::path::Path, _: &actix_web::dev::RequestHead| {
            match std::fs::canonicalize(root.join(path)) {
                Ok(real) => real.starts_with(&root),
                // Missing: let the file service answer 404.
                Err(_) => true,
            }
        };
        cfg.service(
            actix_files::Files::new("/", dir)
                .index_file("index.html")
                .path_filter(inside),
        );
    }
}

/// A worker to hand out: its URL, its index on this machine (if it is one of ours) and load.
struct Choice {
    url: String,
    worker: Option<usize>,
    sessions: usize,
}

/// The least-loaded worker of the cluster directory; stale entries are removed on the way.
async fn pick_in_cluster(cluster: &Cluster) -> Option<Choice> {
    let raw = cluster.directory.send(Directory).await.ok()?.ok()?;
    let (live, stale) = read_directory(raw, cluster::now_ms());
    if !stale.is_empty() {
        cluster.withdraw.do_send(Withdraw { urls: stale });
    }
    cluster::pick(&live).map(|e| Choice {
        url: e.url.clone(),
        worker: None,
        sessions: e.sessions,
    })
}

/// `GET /connect`: the SockJS URL of a worker, as text (or JSON with `Accept: application/json`).
/// In a cluster the whole directory is considered; if Redis cannot answer, this machine's own
/// workers are. 503 when no worker is ready, or when even the least-loaded one is full
/// (`limits.max_sessions_per_worker`, as of the workers' last reports); in legacy mode 404
/// instead, as the original answered, since the 0.x client retries on 404 only (and gives up
/// for good on anything else).
async fn connect(req: HttpRequest, port: web::Data<MainPort>) -> HttpResponse {
    let mut choice = match &port.cluster {
        Some(cluster) => pick_in_cluster(cluster).await,
        None => None,
    };
    if choice.is_none() {
        choice = port
            .supervisor
            .send(PickWorker)
            .await
            .ok()
            .flatten()
            .map(|w| Choice {
                url: format!(
                    "{}://{}:{}{}",
                    port.scheme, port.host_external, w.port, port.prefix
                ),
                worker: Some(w.index),
                sessions: w.sessions,
            });
    }
    let choice = match choice {
        Some(choice) if choice.sessions < port.max_sessions_per_worker => choice,
        other => return no_worker(&port, other.is_some()),
    };
    let mut res = HttpResponse::Ok();
    not_cached(&mut res);
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        res.json(serde_json::json!({
            "url": choice.url,
            "worker": choice.worker,
            "sessions": choice.sessions,
        }))
    } else {
        res.content_type(ContentType::plaintext()).body(choice.url)
    }
}

/// `/connect`'s answer when no worker can take a session: none is ready, or (`full`) even the
/// least-loaded one holds `limits.max_sessions_per_worker` sessions.
fn no_worker(port: &MainPort, full: bool) -> HttpResponse {
    let mut res = if port.legacy {
        HttpResponse::NotFound()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    not_cached(&mut res);
    if full {
        res.insert_header((header::RETRY_AFTER, "5"));
    }
    let body = match full {
        _ if port.legacy => legacy::NO_WORKER,
        false => "No worker is available right now; try again in a moment.\n",
        true => "Every worker is full (limits.max_sessions_per_worker); try again later.\n",
    };
    res.content_type(ContentType::plaintext()).body(body)
}

/// What every `/connect` answer carries: any page may ask, and no cache may keep the answer.
fn not_cached(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((
            header::CACHE_CONTROL,
            "no-store, no-cache, must-revalidate, max-age=0",
        ));
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
        "pid": std::process::id(),
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
        .body(prometheus::render(&overview))
}
