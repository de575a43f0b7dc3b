//! The original 0.x server's session records in Redis: hashes `session:<id>`
//! ([`LegacyRecord`]), read when a 0.x session starts and replaced whenever Rohrpost stores one.

use actix::prelude::*;

use crate::broker::ttl_ms;

use super::RedisBroker;
use crate::broker::{BrokerError, LoadLegacySession, StoreLegacySession};
use crate::legacy::record::LegacyRecord;

impl Handler<LoadLegacySession> for RedisBroker {
    type Result = ResponseFuture<Result<Option<LegacyRecord>, BrokerError>>;

    fn handle(&mut self, msg: LoadLegacySession, ctx: &mut Context<Self>) -> Self::Result {
        let mut read = redis::cmd("HGETALL");
        read.arg(LegacyRecord::key(&msg.id));
        self.run(
            "HGETALL",
            move |mut commands| async move {
                // The original wrote whatever its backends sent: read it leniently.
                let fields: Vec<(Vec<u8>, Vec<u8>)> = read.query_async(&mut commands).await?;
                let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
                Ok(LegacyRecord::from_fields(
                    fields.into_iter().map(|(f, v)| (text(f), text(v))),
                ))
            },
            ctx,
        )
    }
}

impl Handler<StoreLegacySession> for RedisBroker {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: StoreLegacySession, ctx: &mut Context<Self>) -> Self::Result {
        let key = LegacyRecord::key(&msg.id);
        let ttl_ms = ttl_ms(msg.ttl);
        // Replaced as a whole, in one transaction: fields of data entries that are gone go too
        // (the original only ever added fields), and no reader sees half a record.
        let mut replace = redis::pipe();
        replace.atomic();
        replace.cmd("DEL").arg(&key).ignore();
        replace.cmd("HSET").arg(&key);
        for (field, value) in msg.record.fields() {
            replace.arg(field).arg(value);
        }
        replace.ignore();
        replace.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        self.run(
            "MULTI DEL/HSET/PEXPIRE",
            move |mut commands| async move { replace.query_async::<()>(&mut commands).await },
            ctx,
        )
    }
}
