//! The HTTP(S) server of one or more endpoints: actix-web for requests, the connection after a
//! websocket upgrade for Rohrpost's own code ([`upgrade`](super::upgrade)).
//!
//! This is what `actix_web::HttpServer` builds, with one difference: actix-http's upgrade
//! path is set, so that a websocket does not keep an HTTP/1 dispatcher (and its 8 KiB read and
//! 8 KiB write buffers) for its whole life.

use std::net::ToSocketAddrs;
use std::time::Duration;

use actix_http::{HttpService, TlsAcceptorConfig};
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::{web, App};

use super::upgrade::UpgradeFactory;

/// How a server is run.
pub struct ServerSettings {
    /// Server threads (each runs its own sessions).
    pub threads: usize,
    /// A request's headers, and a TLS handshake, must arrive within this (slowloris).
    pub header_timeout: Duration,
    /// How long a stopping server waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// Serve HTTPS with this configuration.
    pub tls: Option<rustls::ServerConfig>,
}

/// Connections waiting to be accepted: a staged restart moves thousands of sessions at once.
const BACKLOG: u32 = 4096;

/// Binds `addr` and returns the server, ready to run; `configure` sets up each server thread's
/// routes (it is called for the plain requests' app and for the upgrade path's).
pub fn bind<F>(
    addr: impl ToSocketAddrs,
    configure: F,
    settings: ServerSettings,
) -> std::io::Result<actix_server::Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let timeout = settings.header_timeout;
    let builder = actix_server::Server::build()
        .workers(settings.threads)
        .backlog(BACKLOG)
        .shutdown_timeout(settings.shutdown_timeout.as_secs());
    // One HTTP service per thread, with the upgrade path beside the app.
    macro_rules! http_service {
        () => {{
            let app = App::new()
                .configure(configure.clone())
                .into_factory()
                .map_err(|e| e.error_response());
            HttpService::build()
                .client_request_timeout(timeout)
                .h1_allow_half_closed(false)
                .tcp_nodelay(true)
                .upgrade(UpgradeFactory::new(configure.clone()))
                .finish(map_config(app, |_| AppConfig::default()))
        }};
    }
    let builder = match settings.tls {
        Some(tls) => builder.bind("rohrpost-https", addr, move || {
            let acceptor = TlsAcceptorConfig::default().handshake_timeout(timeout);
            http_service!().rustls_0_23_with_config(tls.clone(), acceptor)
        })?,
        None => builder.bind("rohrpost-http", addr, move || http_service!().tcp())?,
    };
    Ok(builder.run())
}
