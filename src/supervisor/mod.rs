//! The supervisor: `rohrpost` with no subcommand, the process operators start, stop and upgrade.
//!
//! It spawns `workers.count` worker processes (this same executable, `rohrpost worker`), worker i
//! on `http.worker_base_port + i`, keeps a control channel to each ([`crate::control`]), restarts
//! them when they crash and one at a time when asked to ([`actor`]), and serves the main port
//! ([`crate::main_port`]).
//!
//! Signals: SIGTERM/SIGINT drain every worker and exit when they are gone (a second one exits at
//! once); SIGHUP starts a staged restart, which also picks up a replaced executable.

pub mod actor;
pub mod process;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};
use log::info;
use tokio::signal::unix::{signal, SignalKind};

use crate::broker::directory::EVENTS_CHANNEL;
use crate::broker::lead::Leadership;
use crate::broker::local::{LocalBroker, LocalBrokerServer, LocalBrokerServerHandle, ServerLimits};
use crate::broker::log::HistorySettings;
use crate::broker::redis::RedisBroker;
use crate::broker::{Broker, Cluster, Discard, Subscribe};
use crate::config::{BrokerKind, Config};
use crate::event_hook::{EventHook, EventHookSettings};
use crate::http_backend::HttpBackend;
use crate::main_port::{self, MainPort};
use crate::topics::Pattern;
use actor::{Shutdown, StartRoll, Supervisor};

/// Runs the supervisor until it is stopped; the system's exit code says how it ended.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // The executable file on disk, taken now: a staged restart starts what is there then.
    let exe = std::env::current_exe()?;
    // The embedded broker is up before any worker starts; it lives as long as the supervisor.
    let embedded = match config.broker.kind {
        BrokerKind::Local => Some(start_embedded_broker(&config).await?),
        BrokerKind::Redis => None,
    };
    let supervisor = Supervisor::new(config.clone(), exe, embedded).start();
    // The server API publishes through a broker client of its own; with `hooks.events_url`,
    // the event hook takes the session events that arrive on it.
    let hook = config
        .hooks
        .events_url
        .as_ref()
        .map(|_| Context::<EventHook>::new());
    let deliver = match &hook {
        Some(ctx) => ctx.address().recipient(),
        None => Discard.start().recipient(),
    };
    let (broker, cluster, leadership) = match config.broker.kind {
        BrokerKind::Redis => {
            let history = HistorySettings::of(&config.history);
            let redis = RedisBroker::start(&config.broker.redis_url, history, deliver)?;
            let leadership = Leadership::of(&redis);
            (
                Broker::of(&redis),
                Some(Cluster::of(&redis)),
                Some(leadership),
            )
        }
        BrokerKind::Local => (
            Broker::of(&LocalBroker::start(&config.broker.socket, deliver)),
            None,
            None,
        ),
    };
    if let (Some(ctx), Some(url)) = (hook, &config.hooks.events_url) {
        let settings = EventHookSettings {
            url: Arc::from(url.as_str()),
            timeout: config.hooks.events_timeout,
            attempts: config.hooks.events_attempts,
        };
        let http = HttpBackend::for_hook(url, config.http.max_in_flight).start();
        let read_log = broker.read_log.clone();
        ctx.run(EventHook::new(settings, http, leadership, read_log));
        broker.subscribe.do_send(Subscribe(
            Pattern::literal(EVENTS_CHANNEL, usize::MAX).expect("a printable name"),
        ));
        info!("session events go to the hook url={url}");
    }

    let cluster = cluster.filter(|_| config.cluster.enabled);

    let state = web::Data::new(MainPort::new(&config, supervisor.clone(), broker, cluster));
    let routes = config.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(|cfg| main_port::configure(&routes, cfg))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .client_request_timeout(config.http.header_timeout)
    .tls_handshake_timeout(config.http.header_timeout);
    let addr = (config.http.host.as_str(), config.http.main_port);
    let server = match config.tls_files() {
        Some(files) => server.bind_rustls_0_23(addr, files.server_config()?)?,
        None => server.bind(addr)?,
    };
    info!(
        "supervisor listening url={}://{}:{}{} workers={} base_port={}",
        config.http_scheme(),
        config.http.host,
        config.http.main_port,
        config.http.connect_path,
        config.workers.count,
        config.http.worker_base_port
    );
    actix_rt::spawn(server.run());
    watch_signals(supervisor)?;
    Ok(())
}

/// Binds the embedded broker's socket in a directory only this user may enter.
async fn start_embedded_broker(config: &Config) -> anyhow::Result<LocalBrokerServerHandle> {
    let socket = config.broker.socket.as_path();
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let limits = ServerLimits {
        history: HistorySettings::of(&config.history),
        ..ServerLimits::default()
    };
    let handle = LocalBrokerServer::bind_with(socket, limits)
        .await
        .map_err(|e| anyhow::anyhow!("embedded broker socket {}: {e}", socket.display()))?;
    info!("embedded broker listening socket={}", socket.display());
    Ok(handle)
}

fn watch_signals(supervisor: Addr<Supervisor>) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    actix_rt::spawn(async move {
        let mut stopping = false;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {
                    info!("SIGHUP: staged restart");
                    supervisor.do_send(StartRoll);
                    continue;
                }
            }
            supervisor.do_send(Shutdown {
                immediate: stopping,
            });
            stopping = true;
        }
    });
    Ok(())
}
