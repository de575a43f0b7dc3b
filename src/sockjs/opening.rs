//! The request that opened a session, as its handler may want to see it.
//!
//! SockJS sessions are opened by one HTTP request: the websocket upgrade, or for HTTP transports
//! the first receiving request (`xhr`, `xhr_streaming`, `eventsource`, `htmlfile`, `jsonp`).
//! Its peer address, headers and query string are handed to the handler factory once, when the
//! session starts, so that the application can look at cookies or an `Authorization` header
//! (Rohrpost's connect hook does); the handler keeps what it needs, the rest is dropped.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;

/// What the request opening a session showed.
#[derive(Debug, Clone, Default)]
pub struct Opening {
    /// The client's address as the worker sees it (a proxy's, behind one).
    pub address: Option<IpAddr>,
    pub headers: HeaderMap,
    /// The query string, without the `?`.
    pub query: String,
}

impl Opening {
    pub fn of(req: &HttpRequest) -> Opening {
        Opening {
            address: req.peer_addr().map(|a| a.ip()),
            headers: req.headers().clone(),
            query: req.query_string().to_owned(),
        }
    }
}
