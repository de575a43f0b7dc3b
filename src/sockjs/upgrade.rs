//! The server's upgrade path: how a websocket request leaves actix-http's HTTP/1 dispatcher.
//!
//! actix-http hands every request that asks for `Upgrade: websocket` to this service, together
//! with its connection, instead of dispatching it. The request is still answered by the
//! endpoint's routes — an [`App`](actix_web::App) of its own on each server thread, configured
//! exactly like the one serving plain requests — with a [`HandoverSlot`] in its extensions.
//! The answer is written with the HTTP/1 codec; on `101 Switching Protocols` the socket, with
//! whatever the client sent behind its handshake, is given to a [`Connection`] with what the
//! route left in the slot, and the dispatcher (its buffers, timers and task) is gone. Any other
//! answer (`400` for a bad handshake, `404`, `405`) closes the connection after it.

use std::rc::Rc;

use actix_codec::{AsyncRead, AsyncWrite, Framed};
use actix_http::body::{self, BodySize, BoxBody, MessageBody};
use actix_http::{h1, ConnectionType, HttpMessage, Request, Response, StatusCode};
use actix_service::boxed::{self, BoxService};
use actix_service::{IntoServiceFactory, Service, ServiceFactory};
use actix_web::dev::{AppConfig, ServiceResponse};
use actix_web::{web, App};
use futures_util::future::LocalBoxFuture;
use futures_util::SinkExt;

use super::connection::Connection;
use super::websocket::HandoverSlot;

/// Why an upgrade request's answer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("writing the upgrade answer failed: {0}")]
    Write(#[from] std::io::Error),
}

impl From<UpgradeError> for Response<BoxBody> {
    fn from(e: UpgradeError) -> Self {
        Response::with_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            BoxBody::new(e.to_string()),
        )
    }
}

/// The routes' service, as the upgrade path calls it.
type Routes = BoxService<Request, ServiceResponse, actix_web::Error>;

/// Makes one [`Upgrade`] service per server thread, with the routes `configure` sets up.
#[derive(Clone)]
pub struct UpgradeFactory<F> {
    configure: F,
}

impl<F> UpgradeFactory<F> {
    pub fn new(configure: F) -> Self {
        UpgradeFactory { configure }
    }
}

impl<T, F> ServiceFactory<(Request, Framed<T, h1::Codec>)> for UpgradeFactory<F>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    F: Fn(&mut web::ServiceConfig) + Clone + 'static,
{
    type Response = ();
    type Error = UpgradeError;
    type Config = ();
    type Service = Upgrade;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Upgrade, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let app = App::new().configure(self.configure.clone());
        Box::pin(async move {
            let routes = app.into_factory().new_service(AppConfig::default()).await?;
            Ok(Upgrade {
                routes: Rc::new(boxed::service(routes)),
            })
        })
    }
}

/// Answers upgrade requests and hands switched connections over; see the module documentation.
pub struct Upgrade {
    routes: Rc<Routes>,
}

impl<T> Service<(Request, Framed<T, h1::Codec>)> for Upgrade
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Response = ();
    type Error = UpgradeError;
    type Future = LocalBoxFuture<'static, Result<(), UpgradeError>>;

    actix_service::always_ready!();

    fn call(&self, (req, framed): (Request, Framed<T, h1::Codec>)) -> Self::Future {
        Box::pin(upgrade(self.routes.clone(), req, framed))
    }
}

async fn upgrade<T>(
    routes: Rc<Routes>,
    req: Request,
    mut framed: Framed<T, h1::Codec>,
) -> Result<(), UpgradeError>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let slot = HandoverSlot::default();
    req.extensions_mut().insert(slot.clone());
    let response: Response<BoxBody> = match routes.call(req).await {
        Ok(res) => res.into_parts().1.into(),
        Err(e) => e.error_response().into(),
    };
    let handover = (response.status() == StatusCode::SWITCHING_PROTOCOLS)
        .then(|| slot.take())
        .flatten();
    let (mut head, body) = response.into_parts();
    if handover.is_none() {
        head.head_mut().set_connection_type(ConnectionType::Close);
    }
    let size = body.size();
    framed.send(h1::Message::Item((head, size))).await?;
    if !matches!(size, BodySize::None) {
        let bytes = body::to_bytes(body)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        framed.send(h1::Message::Chunk(Some(bytes))).await?;
        framed.send(h1::Message::Chunk(None)).await?;
    }
    match handover {
        Some(handover) => {
            let parts = framed.into_parts();
            actix_rt::spawn(Connection::start(parts.io, parts.read_buf, handover));
        }
        None => {
            let _ = framed.close().await;
        }
    }
    Ok(())
}
