//! The fan-out's publisher: one timestamped message on the bench topic per call, through the
//! server API (`/api/publish`), Redis `PUBLISH`, or (`--target nchan`) nchan's HTTP publisher
//! location. The recovery and soak scenarios publish through it too.

use serde_json::json;

use super::{nchan, now_us, BenchArgs, BenchError, Target};

/// Publishes one timestamped message on the topic.
pub(super) struct Publisher {
    route: Route,
}

/// The way a [`Publisher`]'s messages go to the server.
enum Route {
    /// `PUBLISH` on Redis, which the server's broker relays.
    Redis(redis::aio::MultiplexedConnection),
    /// `POST /api/publish` with the API key.
    Api(String),
    /// `POST {url}/pub/{topic}` on nginx, the message as the body.
    Nchan,
}

impl Publisher {
    pub(super) async fn new(args: &BenchArgs) -> Result<Publisher, BenchError> {
        let route =
            match (&args.redis, &args.api_key) {
                _ if args.target == Target::Nchan => Route::Nchan,
                (Some(url), _) => Route::Redis(
                    redis::Client::open(url.as_str())
                        .map_err(|e| BenchError::Usage(format!("--redis: {e}")))?
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(|e| BenchError::Server(format!("redis: {e}")))?,
                ),
                (None, Some(key)) => Route::Api(key.clone()),
                (None, None) => return Err(BenchError::Usage(
                    "fanout publishes through the server API (--api-key or ROHRPOST__API__KEY) \
                     or Redis (--redis URL)"
                        .into(),
                )),
            };
        Ok(Publisher { route })
    }

    pub(super) async fn publish(&mut self, http: &awc::Client, args: &BenchArgs, i: i64) -> bool {
        let mut data = json!({"t": now_us(), "i": i});
        if args.payload > 0 {
            data["pad"] = json!("x".repeat(args.payload));
        }
        match &mut self.route {
            Route::Redis(conn) => {
                let payload = json!({"data": data}).to_string();
                redis::cmd("PUBLISH")
                    .arg(&args.topic)
                    .arg(payload)
                    .query_async::<i64>(conn)
                    .await
                    .is_ok()
            }
            Route::Api(key) => http
                .post(format!("{}/api/publish", args.url))
                .insert_header(("Authorization", format!("Bearer {key}")))
                .send_json(&json!({"topic": args.topic, "data": data}))
                .await
                .is_ok_and(|r| r.status().is_success()),
            // The body is the envelope a Rohrpost session receives, so both deliver the same.
            Route::Nchan => http
                .post(nchan::publisher_url(&args.url, &args.topic))
                .send_json(&json!({"topic": args.topic, "data": data}))
                .await
                .is_ok_and(|r| r.status().is_success()),
        }
    }
}
