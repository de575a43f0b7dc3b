//! Leases and marks in Redis ([`crate::broker::lead`]): the lease is a key holding its holder's
//! name with a time to live, taken or kept in one atomic step (`rohrpost_lead`, in the
//! `rohrpost` function library); a mark is a plain key.

use actix::prelude::*;

use crate::broker::ttl_ms;

use super::RedisBroker;
use crate::broker::lead::{GetMark, Lead, SetMark};
use crate::broker::BrokerError;

/// The lease function, appended to the `rohrpost` library.
pub(super) const LIBRARY: &str = r#"
local function lead(keys, args)
  local key, holder, ttl = keys[1], args[1], tonumber(args[2])
  if not key or not holder or not ttl then
    return redis.error_reply('ERR usage: FCALL rohrpost_lead 1 <key> <holder> <ttl_ms>')
  end
  local current = redis.call('GET', key)
  if not current then
    redis.call('SET', key, holder, 'PX', ttl)
    return 1
  end
  if current == holder then
    redis.call('PEXPIRE', key, ttl)
    return 1
  end
  return 0
end

redis.register_function('rohrpost_lead', lead)
"#;

impl Handler<Lead> for RedisBroker {
    type Result = ResponseFuture<Result<bool, BrokerError>>;

    fn handle(&mut self, msg: Lead, ctx: &mut Context<Self>) -> Self::Result {
        let ttl_ms = ttl_ms(msg.ttl);
        let mut lead = redis::cmd("FCALL");
        lead.arg("rohrpost_lead")
            .arg(1)
            .arg(&*msg.name)
            .arg(&*msg.holder)
            .arg(ttl_ms);
        let answer = self.run(
            "FCALL rohrpost_lead",
            move |mut commands| async move { lead.query_async::<i64>(&mut commands).await },
            ctx,
        );
        Box::pin(async move { Ok(answer.await? == 1) })
    }
}

impl Handler<SetMark> for RedisBroker {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: SetMark, ctx: &mut Context<Self>) -> Self::Result {
        let mut set = redis::cmd("SET");
        set.arg(&*msg.name).arg(msg.value);
        self.run(
            "SET",
            move |mut commands| async move { set.query_async::<()>(&mut commands).await },
            ctx,
        )
    }
}

impl Handler<GetMark> for RedisBroker {
    type Result = ResponseFuture<Result<Option<String>, BrokerError>>;

    fn handle(&mut self, msg: GetMark, ctx: &mut Context<Self>) -> Self::Result {
        let mut get = redis::cmd("GET");
        get.arg(&*msg.name);
        self.run(
            "GET",
            move |mut commands| async move { get.query_async::<Option<String>>(&mut commands).await },
            ctx,
        )
    }
}
