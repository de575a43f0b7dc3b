//! One worker process: an HTTP(S) server on one port serving the SockJS endpoint.
//!
//! A worker runs one actix system; with `workers.threads = 1` (the default) every session actor
//! of the worker lives on its one server thread. Scale comes from running one worker process per
//! core (the supervisor's job).
//!
//! The sessions of this endpoint run the echo handler until the messaging core (topics,
//! whitelists, backends) is hung on the session actor.

use actix_web::{App, HttpServer};

use crate::config::Config;
use crate::echo::Echo;
use crate::sockjs::{Endpoint, SockjsOptions};

/// Runs a worker on `port` until it is stopped (SIGINT/SIGTERM stop it gracefully).
pub async fn run(config: Config, port: u16) -> anyhow::Result<()> {
    let endpoint = Endpoint::new(SockjsOptions::from_config(&config), |_| Echo);
    let server = HttpServer::new(move || App::new().service(endpoint.service()))
        .workers(config.workers.threads)
        .h1_allow_half_closed(false);
    let addr = (config.http.host.as_str(), port);
    let server = match config.tls_files() {
        Some(files) => server.bind_rustls_0_23(addr, files.server_config()?)?,
        None => server.bind(addr)?,
    };
    log::info!(
        "worker listening url={}://{}:{}{} threads={}",
        config.http_scheme(),
        config.http.host,
        port,
        config.sockjs.prefix,
        config.workers.threads
    );
    server.run().await?;
    Ok(())
}
