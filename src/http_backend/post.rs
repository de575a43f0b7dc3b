//! A plain JSON POST on the worker's HTTP client, for Rohrpost's own hooks.
//!
//! An [`HttpCall`](super::HttpCall) is a client message for an `[[http_topics]]` rule and only
//! wants 2xx JSON objects; a hook (the connect hook, `hooks.connect_url`) reads the status and
//! body of every answer itself. Both go through the one [`HttpBackend`] of the worker: the same
//! keep-alive pool, the same `http.max_in_flight` bound (one more is
//! [`HttpBackendError::Busy`] at once), the same TLS trust and the same error mapping. The
//! answer body is read up to [`MAX_ANSWER_BYTES`], the whole exchange within the post's
//! `timeout`.

use std::future::ready;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use awc::http::header;
use bytes::Bytes;

use super::{
    payload_error, send_error, HttpBackend, HttpBackendError, Slot, MAX_ANSWER_BYTES, USER_AGENT,
};

/// POST `body` (JSON) to `url` and answer with whatever status and body came back.
///
/// Sent by hooks to their worker's [`HttpBackend`]; only a transport failure (no connection,
/// no complete answer in `timeout`, busy) is an error.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Reply, HttpBackendError>")]
pub struct Post {
    pub url: Arc<str>,
    pub body: Bytes,
    pub timeout: Duration,
}

/// An answer to a [`Post`], any status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Handler<Post> for HttpBackend {
    type Result = ResponseFuture<Result<Reply, HttpBackendError>>;

    fn handle(&mut self, post: Post, _ctx: &mut Self::Context) -> Self::Result {
        let Some(slot) = Slot::take(&self.in_flight, self.max_in_flight) else {
            let limit = self.max_in_flight;
            return Box::pin(ready(Err(HttpBackendError::Busy { limit })));
        };
        let timeout = post.timeout;
        let request = self
            .client
            .post(&*post.url)
            .timeout(timeout)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::USER_AGENT, USER_AGENT));
        Box::pin(async move {
            let _slot = slot;
            let exchange = async {
                let mut response = request
                    .send_body(post.body)
                    .await
                    .map_err(|e| send_error(e, timeout))?;
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .limit(MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| payload_error(e, timeout))?;
                Ok(Reply { status, body })
            };
            actix_rt::time::timeout(timeout, exchange)
                .await
                .unwrap_or(Err(HttpBackendError::Timeout(timeout)))
        })
    }
}
