//! The original 0.x server's session store in the shared Redis, as a 0.x server reads and
//! writes it: a hash `session:<id>` per session (`whitelist` joined by `|`, `created` in ms,
//! `data_<key>` per data entry).

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::common::WAIT;
use crate::process::{POLL, REDIS_URL};

/// A command connection to the shared Redis.
pub struct OriginalStore {
    conn: MultiplexedConnection,
}

impl OriginalStore {
    pub async fn connect() -> OriginalStore {
        let client = redis::Client::open(REDIS_URL).expect("Redis URL");
        let conn = actix_rt::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .expect("a Redis connection within the wait")
            .expect("a Redis connection");
        OriginalStore { conn }
    }

    /// `HSET session:<id> field value ...` with a TTL of 600 s, as a 0.x server saves a session.
    pub async fn save(&mut self, id: &str, fields: &[(&str, &str)]) {
        let key = format!("session:{id}");
        let mut save = redis::pipe();
        save.cmd("HSET").arg(&key);
        for (field, value) in fields {
            save.arg(field).arg(value);
        }
        save.ignore().cmd("EXPIRE").arg(&key).arg(600).ignore();
        actix_rt::time::timeout(WAIT, save.query_async::<()>(&mut self.conn))
            .await
            .expect("HSET within the wait")
            .expect("HSET");
    }

    /// `HGETALL session:<id>`.
    pub async fn read(&mut self, id: &str) -> BTreeMap<String, String> {
        let read = redis::cmd("HGETALL").arg(format!("session:{id}")).clone();
        actix_rt::time::timeout(WAIT, read.query_async(&mut self.conn))
            .await
            .expect("HGETALL within the wait")
            .expect("HGETALL")
    }

    /// `PTTL session:<id>`: ms left, -1 without a TTL, -2 without the key.
    pub async fn ttl_ms(&mut self, id: &str) -> i64 {
        let ttl = redis::cmd("PTTL").arg(format!("session:{id}")).clone();
        actix_rt::time::timeout(WAIT, ttl.query_async(&mut self.conn))
            .await
            .expect("PTTL within the wait")
            .expect("PTTL")
    }

    /// Reads `session:<id>` until `done` holds for it, for at most `within`; the hash then.
    pub async fn wait_for(
        &mut self,
        id: &str,
        within: Duration,
        what: &str,
        done: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> BTreeMap<String, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let hash = self.read(id).await;
            if done(&hash) {
                return hash;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session:{id} not {what} within {within:?}: {hash:?}"
            );
            actix_rt::time::sleep(POLL).await;
        }
    }
}
