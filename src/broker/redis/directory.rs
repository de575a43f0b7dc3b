//! The session directory in Redis (see [`crate::broker::directory`]): the hash
//! `rohrpost:presence` (session id → entry) and the sorted set `rohrpost:presence:leases`
//! (session id → lease end, in Redis's own clock), changed only by the functions below, each of
//! which publishes the session event of the edge it makes in the same atomic step — through
//! the publication log when history is on. They are part of the `rohrpost` function library.
//!
//! - `FCALL rohrpost_session_put 1 <id> <entry> <lease_ms> <open>`: `opened`, `refreshed` or
//!   `gone` (not `open` and not there: nothing written).
//! - `FCALL rohrpost_session_touch 0 <lease_ms> <id>...`: renews the leases of those there;
//!   answers the ids that are gone.
//! - `FCALL rohrpost_session_end 1 <id> <closing>`: 1 if the entry was there (and is removed,
//!   `session.closed` published), else 0.
//! - `FCALL rohrpost_session_reap 0 <max>`: removes up to `max` entries whose lease ended,
//!   publishing `session.closed` with reason `expired` for each; answers how many.
//!
//! Every process with a Redis broker reaps, [`REAP_EVERY`]; a lease is reaped once, by
//! whichever comes first.

use std::sync::Arc;

use actix::prelude::*;

use crate::broker::ttl_ms;
use bytes::Bytes;

use super::{Link, RedisBroker};
use crate::broker::directory::{
    EndEntry, GetEntry, ListEntries, Put, PutEntry, TouchEntries, REAP_BATCH, REAP_EVERY,
};
use crate::broker::BrokerError;

/// The hash of entries.
const ENTRIES: &str = "rohrpost:presence";
/// The most ids one touch call carries (a call is one atomic step: keep it short).
const TOUCH_CHUNK: usize = 1000;

/// The directory's functions, appended to the publication log's library (they use its
/// `publish`).
pub(super) const LIBRARY: &str = r#"
local DIR, LEASES, EVENTS, LOGGED = 'rohrpost:presence', 'rohrpost:presence:leases', 'rohrpost.events', @LOGGED@

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function session_event(kind, extra, entry)
  local body = string.match(entry, '^%s*{(.*)$') or '}'
  local head = '{"event":"' .. kind .. '",'
  if extra ~= '' then head = head .. extra .. ',' end
  head = head .. '"time":' .. string.format('%.0f', now_ms())
  if string.match(body, '^%s*}%s*$') then return head .. body end
  return head .. ',' .. body
end

local function emit(payload)
  if LOGGED == 1 then
    publish({EVENTS}, {payload})
  else
    redis.call('PUBLISH', EVENTS, payload)
  end
end

local function session_put(keys, args)
  local id, entry, lease, open = keys[1], args[1], tonumber(args[2]), args[3] == '1'
  if not id or not entry or not lease then
    return redis.error_reply('ERR usage: FCALL rohrpost_session_put 1 <id> <entry> <lease_ms> <open>')
  end
  local there = redis.call('HEXISTS', DIR, id) == 1
  if not there and not open then return 'gone' end
  redis.call('HSET', DIR, id, entry)
  redis.call('ZADD', LEASES, now_ms() + lease, id)
  if there then return 'refreshed' end
  emit(session_event('session.opened', '', entry))
  return 'opened'
end

local function session_touch(keys, args)
  local lease = tonumber(args[1])
  if not lease then
    return redis.error_reply('ERR usage: FCALL rohrpost_session_touch 0 <lease_ms> <id>...')
  end
  local until_ms = now_ms() + lease
  local gone = {}
  for i = 2, #args do
    if redis.call('HEXISTS', DIR, args[i]) == 1 then
      redis.call('ZADD', LEASES, until_ms, args[i])
    else
      gone[#gone + 1] = args[i]
    end
  end
  return gone
end

local function session_end(keys, args)
  local id, closing = keys[1], args[1] or '"reason":"closed"'
  local entry = redis.call('HGET', DIR, id)
  if not entry then return 0 end
  redis.call('HDEL', DIR, id)
  redis.call('ZREM', LEASES, id)
  emit(session_event('session.closed', closing, entry))
  return 1
end

local function session_reap(keys, args)
  local due = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now_ms(), 'LIMIT', 0, tonumber(args[1] or '100'))
  for _, id in ipairs(due) do
    redis.call('ZREM', LEASES, id)
    local entry = redis.call('HGET', DIR, id)
    if entry then
      redis.call('HDEL', DIR, id)
      emit(session_event('session.closed', '"reason":"expired"', entry))
    end
  end
  return #due
end

redis.register_function('rohrpost_session_put', session_put)
redis.register_function('rohrpost_session_touch', session_touch)
redis.register_function('rohrpost_session_end', session_end)
redis.register_function('rohrpost_session_reap', session_reap)
"#;

impl RedisBroker {
    /// Starts reaping expired entries while connected.
    pub(super) fn reap_expired(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(REAP_EVERY, |act, ctx| {
            if !matches!(act.link, Link::Up(_)) {
                return;
            }
            let mut reap = redis::cmd("FCALL");
            reap.arg("rohrpost_session_reap").arg(0).arg(REAP_BATCH);
            let reaped = act.run(
                "FCALL rohrpost_session_reap",
                move |mut commands| async move { reap.query_async::<u64>(&mut commands).await },
                ctx,
            );
            actix_rt::spawn(async move {
                match reaped.await {
                    Ok(0) => {}
                    Ok(n) => log::debug!("redis sessions expired={n}"),
                    Err(e) => log::debug!("expired sessions not reaped error={e}"),
                }
            });
        });
    }
}

impl Handler<PutEntry> for RedisBroker {
    type Result = ResponseFuture<Result<Put, BrokerError>>;

    fn handle(&mut self, msg: PutEntry, ctx: &mut Context<Self>) -> Self::Result {
        let mut put = redis::cmd("FCALL");
        put.arg("rohrpost_session_put")
            .arg(1)
            .arg(&*msg.id)
            .arg(&msg.entry[..])
            .arg(ttl_ms(msg.lease))
            .arg(if msg.open { "1" } else { "0" });
        let answer = self.run(
            "FCALL rohrpost_session_put",
            move |mut commands| async move { put.query_async::<String>(&mut commands).await },
            ctx,
        );
        Box::pin(async move {
            match answer.await?.as_str() {
                "opened" => Ok(Put::Opened),
                "refreshed" => Ok(Put::Refreshed),
                "gone" => Ok(Put::Gone),
                other => Err(BrokerError::Server(format!(
                    "rohrpost_session_put answered {other:?}"
                ))),
            }
        })
    }
}

impl Handler<TouchEntries> for RedisBroker {
    type Result = ResponseFuture<Result<Vec<Arc<str>>, BrokerError>>;

    fn handle(&mut self, msg: TouchEntries, ctx: &mut Context<Self>) -> Self::Result {
        let lease = ttl_ms(msg.lease);
        let calls: Vec<_> = (msg.ids.chunks(TOUCH_CHUNK))
            .map(|chunk| {
                let mut touch = redis::cmd("FCALL");
                touch.arg("rohrpost_session_touch").arg(0).arg(lease);
                for id in chunk {
                    touch.arg(&**id);
                }
                self.run(
                    "FCALL rohrpost_session_touch",
                    move |mut commands| async move {
                        touch.query_async::<Vec<String>>(&mut commands).await
                    },
                    ctx,
                )
            })
            .collect();
        Box::pin(async move {
            let mut gone = Vec::new();
            for call in calls {
                gone.extend(call.await?.into_iter().map(Arc::from));
            }
            Ok(gone)
        })
    }
}

impl Handler<EndEntry> for RedisBroker {
    type Result = ResponseFuture<Result<bool, BrokerError>>;

    fn handle(&mut self, msg: EndEntry, ctx: &mut Context<Self>) -> Self::Result {
        let mut end = redis::cmd("FCALL");
        end.arg("rohrpost_session_end")
            .arg(1)
            .arg(&*msg.id)
            .arg(&msg.closing);
        let answer = self.run(
            "FCALL rohrpost_session_end",
            move |mut commands| async move { end.query_async::<i64>(&mut commands).await },
            ctx,
        );
        Box::pin(async move { Ok(answer.await? == 1) })
    }
}

impl Handler<ListEntries> for RedisBroker {
    type Result = ResponseFuture<Result<Vec<Bytes>, BrokerError>>;

    fn handle(&mut self, _msg: ListEntries, ctx: &mut Context<Self>) -> Self::Result {
        let mut list = redis::cmd("HVALS");
        list.arg(ENTRIES);
        self.run(
            "HVALS",
            move |mut commands| async move {
                let entries: Vec<Vec<u8>> = list.query_async(&mut commands).await?;
                Ok(entries.into_iter().map(Bytes::from).collect())
            },
            ctx,
        )
    }
}

impl Handler<GetEntry> for RedisBroker {
    type Result = ResponseFuture<Result<Option<Bytes>, BrokerError>>;

    fn handle(&mut self, msg: GetEntry, ctx: &mut Context<Self>) -> Self::Result {
        let mut get = redis::cmd("HGET");
        get.arg(ENTRIES).arg(&*msg.id);
        self.run(
            "HGET",
            move |mut commands| async move {
                let entry: Option<Vec<u8>> = get.query_async(&mut commands).await?;
                Ok(entry.map(Bytes::from))
            },
            ctx,
        )
    }
}
