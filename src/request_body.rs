//! Reading a request body whole: within a size limit, and within a deadline (like the header
//! timeout), so that a body dribbled a byte at a time cannot hold a connection open for long.

use std::time::Duration;

use actix_web::web;
use bytes::Bytes;

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("Payload larger than {limit} bytes.")]
    TooLarge { limit: usize },
    #[error("Request body not received within {}s (http.body_timeout).", .after.as_secs_f64())]
    TimedOut { after: Duration },
    #[error("Request body unreadable: {0}")]
    Broken(String),
}

/// The whole body of `payload`: at most `limit` bytes, all of it within `deadline`.
pub async fn read(
    payload: web::Payload,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(deadline, payload.to_bytes_limited(limit)).await {
        Ok(Ok(Ok(body))) => Ok(body),
        Ok(Ok(Err(e))) => Err(BodyError::Broken(e.to_string())),
        Ok(Err(_)) => Err(BodyError::TooLarge { limit }),
        Err(_) => Err(BodyError::TimedOut { after: deadline }),
    }
}
