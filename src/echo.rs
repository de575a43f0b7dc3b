//! The SockJS conformance server: `rohrpost sockjs-test-server`.
//!
//! Serves the four endpoints SockJS protocol suites expect on one port: `/echo`,
//! `/disabled_websocket_echo`, `/cookie_needed_echo` and `/close`, with a 25 s heartbeat, a 5 s
//! disconnect delay and streaming responses cut after 4096 bytes. It exercises the same
//! [`crate::sockjs`] code the workers run, with trivial handlers.

use std::time::Duration;

use crate::sockjs::server::{self, ServerSettings};
use crate::sockjs::{Endpoint, SessionCtx, SessionHandler, SockjsOptions};
use crate::tls::TlsFiles;

/// A request's headers must arrive within this (actix-web's default).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends every message straight back.
pub struct Echo;

impl SessionHandler for Echo {
    fn on_message(&mut self, message: String, session: &mut SessionCtx<'_, Self>) {
        session.send(&message);
    }
}

/// Closes every session as soon as it opens.
pub struct CloseAtOnce;

impl SessionHandler for CloseAtOnce {
    fn on_open(&mut self, session: &mut SessionCtx<'_, Self>) {
        session.close(3000, "Go away!");
    }

    fn on_message(&mut self, _message: String, _session: &mut SessionCtx<'_, Self>) {}
}

/// Settings of `sockjs-test-server`.
pub struct TestServerArgs {
    pub host: String,
    pub port: u16,
    pub client_url: String,
    pub tls: Option<TlsFiles>,
}

fn options(prefix: &str, client_url: &str) -> SockjsOptions {
    SockjsOptions {
        prefix: prefix.into(),
        heartbeat: Duration::from_secs(25),
        disconnect_delay: Duration::from_secs(5),
        response_limit: 4096,
        client_url: client_url.into(),
        ..SockjsOptions::default()
    }
}

/// Runs the conformance server until it is stopped.
pub async fn run(args: TestServerArgs) -> anyhow::Result<()> {
    let echo = Endpoint::new(options("/echo", &args.client_url), |_, _| Echo);
    let no_ws = Endpoint::new(
        SockjsOptions {
            websocket: false,
            ..options("/disabled_websocket_echo", &args.client_url)
        },
        |_, _| Echo,
    );
    let cookie = Endpoint::new(
        SockjsOptions {
            cookie_needed: true,
            ..options("/cookie_needed_echo", &args.client_url)
        },
        |_, _| Echo,
    );
    let close = Endpoint::new(options("/close", &args.client_url), |_, _| CloseAtOnce);

    let settings = ServerSettings {
        threads: 1,
        header_timeout: HEADER_TIMEOUT,
        shutdown_timeout: Duration::from_secs(1),
        tls: args.tls.as_ref().map(|f| f.server_config()).transpose()?,
    };
    let scheme = if args.tls.is_some() { "https" } else { "http" };
    let server = server::bind(
        (args.host.as_str(), args.port),
        move |cfg| {
            cfg.service(echo.service())
                .service(no_ws.service())
                .service(cookie.service())
                .service(close.service());
        },
        settings,
    )?;
    log::info!(
        "sockjs-test-server listening url={scheme}://{}:{}/echo",
        args.host,
        args.port
    );
    server.await?;
    Ok(())
}
