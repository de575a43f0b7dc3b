//! One worker process: an HTTP(S) server on one port serving the SockJS endpoint, with the
//! actors every session of the worker shares.
//!
//! A worker runs one actix system. Its shared actors — the broker connection, the topic router
//! and the HTTP backend — run on the system's main thread; the HTTP server runs
//! `workers.threads` threads (1 by default), and each session actor lives on the server thread
//! that created it. Scale comes from running one worker process per core.
//!
//! Run by the supervisor, a worker also speaks the control channel ([`control`]): it reports
//! ready, its sessions and counters, and drains when told to or when the supervisor goes away.

pub mod control;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{info, warn};

use crate::broker::local::LocalBroker;
use crate::broker::log::HistorySettings;
use crate::broker::redis::RedisBroker;
use crate::broker::{Broker, Cluster, IsConnected, LegacyStore, SharedSecret, WatchRestored};
use crate::config::{BrokerKind, Config};
use crate::http_backend::HttpBackend;
use crate::leases::Leases;
use crate::recovery::Recovery;
use crate::resume::{new_secret, TokenKey};
use crate::router::{ProgressEvery, Router};
use crate::session::{RohrpostSession, Services, SessionSettings};
use crate::sockjs::server::{self, ServerSettings};
use crate::sockjs::{Endpoint, SockjsOptions};

/// How long a stopping worker's server waits for requests in flight.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a starting worker waits for the broker to agree on the shared secret.
const SECRET_WAIT: Duration = Duration::from_secs(5);

/// Starts the shared actors of a worker on the current thread.
/// `worker` names this worker in session entries (its SockJS URL).
pub async fn start_services(config: &Config, worker: &str) -> anyhow::Result<Arc<Services>> {
    // The router needs the broker and the broker delivers to the router: start the router's
    // context first and hand its address to the broker.
    let mut ctx = Context::<Router>::new();
    // Sessions wait on the router's answers (join, grants) under a deadline: a full mailbox
    // must never hold their messages back until the deadline drops them.
    ctx.set_mailbox_capacity(1 << 20);
    let deliver = ctx.address().recipient();
    let restored = WatchRestored(ctx.address().recipient());
    let (broker, cluster) = match config.broker.kind {
        BrokerKind::Redis => {
            let history = HistorySettings::of(&config.history);
            let redis = RedisBroker::start(&config.broker.redis_url, history, deliver)?;
            redis.do_send(restored);
            let broker = Broker::of(&redis).with_legacy(LegacyStore::of(&redis));
            (broker, Some(Cluster::of(&redis)))
        }
        BrokerKind::Local => {
            let local = LocalBroker::start(&config.broker.socket, deliver);
            local.do_send(restored);
            (Broker::of(&local), None)
        }
    };
    let router = ctx.run(Router::new(broker.clone(), progress_every(config)));
    let recovery = Recovery::new(broker.read_log.clone()).start();
    let leases = Leases::new(broker.directory.clone(), config.sessions.resume_grace).start();
    wait_connected(&broker).await;
    let tokens = TokenKey::new(&shared_secret(config, &broker).await);
    let rules = Arc::new(config.http_topics.clone());
    let max_in_flight = config.http.max_in_flight;
    let http = HttpBackend::create(move |ctx| {
        // Every session may have a request queued: never park one in a full mailbox.
        ctx.set_mailbox_capacity(1 << 16);
        HttpBackend::new(rules, max_in_flight)
    });
    Ok(Arc::new(Services {
        router,
        broker,
        cluster,
        http,
        recovery,
        leases,
        worker: Arc::from(worker),
        settings: SessionSettings::from_config(config, tokens),
    }))
}

/// How often sessions are told how far they are caught up: often enough that a quiet session's
/// position stays within the history (a quarter of its age and of its size).
fn progress_every(config: &Config) -> ProgressEvery {
    ProgressEvery {
        interval: (config.history.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        messages: (config.history.size as u64 / 4).max(1),
    }
}

/// Waits a little for the broker to connect, so that a worker is ready with a working broker
/// when one is there; without one it starts anyway (sessions then get `backend_unavailable`
/// until the broker is back).
async fn wait_connected(broker: &Broker) {
    let deadline = tokio::time::Instant::now() + SECRET_WAIT;
    while tokio::time::Instant::now() < deadline {
        if let Ok(true) = broker.connected.send(IsConnected).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    warn!("broker not connected after {SECRET_WAIT:?}; starting anyway");
}

/// The resume-token secret: configured, or agreed through the broker so that every worker and
/// machine issues tokens the others accept. Without a broker answer in time, a secret of this
/// worker's own is used (tokens then only resume on this worker) and a warning says so.
async fn shared_secret(config: &Config, broker: &Broker) -> String {
    if let Some(secret) = &config.sessions.secret {
        return secret.clone();
    }
    let proposed = new_secret();
    let deadline = tokio::time::Instant::now() + SECRET_WAIT;
    loop {
        let ask = broker.secret.send(SharedSecret {
            proposed: proposed.clone(),
        });
        match tokio::time::timeout_at(deadline, ask).await {
            Ok(Ok(Ok(secret))) => return secret,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => {
                warn!(
                    "broker did not share a session secret in time; resume tokens of this \
                     worker will not be accepted by others (set sessions.secret to avoid this)"
                );
                return proposed;
            }
        }
    }
}

/// Runs a worker on `port` until it is stopped (SIGINT/SIGTERM stop it gracefully). With
/// `supervised`, the control channel runs on stdin/stdout.
pub async fn run(config: Config, port: u16, supervised: bool) -> anyhow::Result<()> {
    let services = start_services(&config, &config.worker_url(port)).await?;
    let http = services.http.clone();
    let router = services.router.clone();
    let announce = services
        .cluster
        .clone()
        .filter(|_| config.cluster.enabled)
        .map(|cluster| (cluster, config.worker_url(port)));
    let endpoint = Endpoint::new(SockjsOptions::from_config(&config), move |_, opening| {
        RohrpostSession::new(services.clone(), opening)
    });
    let served = endpoint.clone();
    let settings = ServerSettings {
        threads: config.workers.threads,
        header_timeout: config.http.header_timeout,
        shutdown_timeout: SHUTDOWN_TIMEOUT,
        tls: config.tls_files().map(|f| f.server_config()).transpose()?,
    };
    let addr = (config.http.host.as_str(), port);
    let server = server::bind(
        addr,
        move |cfg| {
            cfg.service(served.service());
        },
        settings,
    )?;
    info!(
        "worker listening url={}://{}:{}{} threads={} broker={:?} supervised={supervised}",
        config.http_scheme(),
        config.http.host,
        port,
        config.sockjs.prefix,
        config.workers.threads,
        config.broker.kind
    );
    if supervised {
        control::start(
            endpoint,
            control::drain_closes(config.compat.legacy_handshake),
            http,
            router,
            server.handle(),
            port,
            config.workers.drain_timeout,
            announce,
        );
    }
    server.await?;
    if supervised {
        // The control channel's stdin reader sits in a blocking read that would keep the runtime
        // from finishing until the supervisor closes the pipe: the worker is done, so leave now.
        info!("worker exits port={port}");
        std::process::exit(0);
    }
    Ok(())
}
