//! A complete SockJS 0.3.3 server, independent of what sessions do.
//!
//! An [`Endpoint`] serves every SockJS URL below one prefix: the greeting, `/info`, the iframe
//! page, raw and framed websockets, and the HTTP transports (`xhr`, `xhr_streaming`,
//! `eventsource`, `htmlfile`, `jsonp`, with `xhr_send` and `jsonp_send`). Whatever the transport,
//! each SockJS session is one [`Session`] actor running a [`SessionHandler`] — the application.
//!
//! Module map: [`frames`] (frame encoding and escaping), [`session`] (the session actor and
//! handler interface), [`receiver`] (how transports attach), [`registry`] (session ids to actors),
//! [`admission`] (how many sessions the endpoint and each client address may hold),
//! [`opening`] (the request that opened a session, handed to its handler), [`routes`]
//! (URL parsing and dispatch), [`headers`] (CORS, caching, cookies), [`info`] (greeting,
//! `/info`, iframe), [`body`] (HTTP receiving responses), and one file per transport family:
//! [`xhr`], [`streaming`], [`jsonp`], [`websocket`]. A websocket leaves actix-http after its
//! handshake: [`server`] builds the HTTP(S) server with actix-http's upgrade path set,
//! [`upgrade`] answers upgrade requests through the same routes and hands switched sockets
//! over, and [`connection`] serves each one.

pub mod admission;
pub mod body;
pub mod connection;
pub mod frames;
pub mod headers;
pub mod info;
pub mod jsonp;
pub mod opening;
pub mod options;
pub mod receiver;
pub mod registry;
pub mod routes;
pub mod server;
pub mod session;
pub mod streaming;
pub mod upgrade;
pub mod websocket;
pub mod xhr;

use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use actix_web::{web, Scope};

pub use opening::Opening;
pub use options::SockjsOptions;
pub use session::{CloseCause, Session, SessionCtx, SessionHandle, SessionHandler};

use receiver::Receiver;
use registry::{Registry, SessionFactory};
use session::Lifetime;

/// Starts a websocket-bound session with its one receiver; it reports its end to the registry.
pub type ConnectionFactory = Arc<
    dyn Fn(Arc<str>, Receiver, Recipient<session::SessionGone>, u64, &Opening) -> SessionHandle
        + Send
        + Sync,
>;

/// One SockJS endpoint: its options, its session registry and how to make session handlers.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

/// What the transports of an endpoint share.
pub struct EndpointInner {
    pub options: Arc<SockjsOptions>,
    iframe: info::IframePage,
    registry: OnceLock<Addr<Registry>>,
    admission: Arc<admission::Admission>,
    factory: SessionFactory,
    connection_factory: ConnectionFactory,
}

impl EndpointInner {
    /// Starts a websocket session (opened by `opening`) and has the registry track it.
    fn start_connection(&self, id: Arc<str>, first: Receiver, opening: &Opening) -> SessionHandle {
        let registry = self.registry();
        let token = registry::next_token();
        let gone = registry.clone().recipient();
        let handle = (self.connection_factory)(id, first, gone, token, opening);
        registry.do_send(registry::TrackConnection {
            token,
            handle: handle.clone(),
        });
        handle
    }

    /// The registry actor, started on first use on the thread that first needs it (with the
    /// default of one server thread, the thread every session lives on).
    fn registry(&self) -> Addr<Registry> {
        self.registry
            .get_or_init(|| Registry::new(self.factory.clone(), self.admission.clone()).start())
            .clone()
    }
}

impl Endpoint {
    /// An endpoint whose sessions run handlers made by `make_handler` (given the session id and
    /// the request that opened the session).
    pub fn new<H, F>(options: SockjsOptions, make_handler: F) -> Self
    where
        H: SessionHandler,
        F: Fn(&str, &Opening) -> H + Send + Sync + 'static,
    {
        let options = Arc::new(options);
        let make_handler = Arc::new(make_handler);

        let opts = options.clone();
        let make = make_handler.clone();
        let factory: SessionFactory = Arc::new(move |id, first, gone, token, opening| {
            let handler = make(&id, opening);
            let addr = Session::start(
                id,
                opts.clone(),
                Lifetime::Detachable,
                first,
                handler,
                Some((gone, token)),
            );
            SessionHandle::from(&addr)
        });

        let opts = options.clone();
        let connection_factory: ConnectionFactory =
            Arc::new(move |id, first, gone, token, opening| {
                let handler = make_handler(&id, opening);
                let addr = Session::start(
                    id,
                    opts.clone(),
                    Lifetime::Connection,
                    first,
                    handler,
                    Some((gone, token)),
                );
                SessionHandle::from(&addr)
            });

        Endpoint {
            inner: Arc::new(EndpointInner {
                iframe: info::IframePage::new(&options.client_url),
                admission: admission::Admission::new(
                    options.max_sessions,
                    options.max_sessions_per_address,
                ),
                options,
                registry: OnceLock::new(),
                factory,
                connection_factory,
            }),
        }
    }

    /// The actix-web scope serving this endpoint at its prefix.
    pub fn service(&self) -> Scope {
        web::scope(&self.inner.options.prefix)
            .app_data(web::Data::from(self.inner.clone()))
            .default_service(web::to(routes::entry))
    }

    pub fn options(&self) -> &SockjsOptions {
        &self.inner.options
    }

    /// Number of open sessions, whatever their transport.
    pub async fn session_count(&self) -> usize {
        self.inner
            .registry()
            .send(registry::Count)
            .await
            .unwrap_or(0)
    }

    /// Stops admitting sessions (new ones are refused with `drain.refuse`), then closes every
    /// open one with `drain.close` (or the close its handler names instead); returns how many
    /// were told.
    pub async fn drain(&self, drain: Drain) -> usize {
        self.inner.admission.drain(drain.refuse);
        let (code, reason) = drain.close;
        let close = registry::CloseAll {
            code,
            reason: reason.to_string(),
        };
        self.inner.registry().send(close).await.unwrap_or(0)
    }
}

/// How an endpoint drains ([`Endpoint::drain`]): the close frames its clients get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// What every open session is closed with, unless its handler names another
    /// ([`SessionHandler::drain_close`]).
    pub close: (u16, &'static str),
    /// What every new session is refused with from now on, before any handler has seen it.
    pub refuse: (u16, &'static str),
}
