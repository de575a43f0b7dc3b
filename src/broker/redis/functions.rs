//! The publication log in Redis: a Redis function library that Rohrpost loads on every
//! connection, so that appending to the log and publishing are one atomic step and the log's
//! order is the order in which every worker receives the messages.
//!
//! - `FCALL rohrpost_publish 1 <channel> <payload>` (also for backends): the payload must be a
//!   JSON object. It takes the next sequence number (`rohrpost:log:seq`), appends the entry to the
//!   stream `rohrpost:log` (id `0-<seq>`, at most `history.size` entries, older than
//!   `history.ttl` dropped a few per publish), and publishes the payload on the channel with
//!   `"rohrpostPos": "<epoch>:<seq>"` spliced in as its first member; every few publishes a
//!   payload-less head beacon follows on `rohrpost.log.head`. Answers the position.
//! - `FCALL rohrpost_read 0 <epoch> <after>`: the epoch, the head, whether the entries after
//!   `after` (all entries, for another epoch; none, for an empty epoch) are complete, and those
//!   entries flattened as seq, channel, payload.
//!
//! The epoch (`rohrpost:log:epoch`, from the server's clock) is made by the first call after the
//! keys are gone, so a Redis that restarted without its data starts a new one.

use std::sync::Arc;

use bytes::Bytes;

use crate::broker::log::{
    beacon_every, HistorySettings, LogEntry, LogRead, Position, HEAD_CHANNEL,
};
use crate::broker::BrokerError;

/// The member a logged publish carries its position in, first in the object.
const STAMP: &[u8] = b"{\"rohrpostPos\":\"";

/// The function library, with this configuration's bounds.
pub(super) fn library(history: &HistorySettings) -> String {
    let ttl_ms = u64::try_from(history.ttl.as_millis()).unwrap_or(u64::MAX);
    [LIBRARY, super::directory::LIBRARY, super::lead::LIBRARY]
        .concat()
        .replace("@LOGGED@", if history.enabled { "1" } else { "0" })
        .replace("@SIZE@", &history.size.max(1).to_string())
        .replace("@TTL_MS@", &ttl_ms.to_string())
        .replace("@BEACON@", &beacon_every(history.size).to_string())
        .replace("@HEAD@", HEAD_CHANNEL)
}

const LIBRARY: &str = r#"#!lua name=rohrpost
-- Rohrpost's publication log; loaded by every Rohrpost process (see its README).
local LOG, SEQ, EPOCH = 'rohrpost:log', 'rohrpost:log:seq', 'rohrpost:log:epoch'
local SIZE, TTL_MS, BEACON, HEAD = @SIZE@, @TTL_MS@, @BEACON@, '@HEAD@'

local function epoch()
  local e = redis.call('GET', EPOCH)
  if not e then
    local t = redis.call('TIME')
    e = string.format('%08x%05x', tonumber(t[1]), tonumber(t[2]))
    redis.call('SET', EPOCH, e)
  end
  return e
end

local function publish(keys, args)
  local channel, payload = keys[1], args[1]
  if not channel or not payload then
    return redis.error_reply('ERR usage: FCALL rohrpost_publish 1 <channel> <payload>')
  end
  local body = string.match(payload, '^%s*{(.*)$')
  if not body then
    return redis.error_reply('ERR rohrpost_publish: the payload must be a JSON object')
  end
  local e = epoch()
  local seq = redis.call('INCR', SEQ)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local added = redis.pcall('XADD', LOG, 'MAXLEN', SIZE, '0-' .. seq, 'c', channel, 'p', payload, 't', ms)
  if type(added) == 'table' and added.err then
    -- The stream is ahead of the counter (its key was changed by hand): start it again.
    redis.call('DEL', LOG)
    redis.call('XADD', LOG, 'MAXLEN', SIZE, '0-' .. seq, 'c', channel, 'p', payload, 't', ms)
  end
  -- Expired entries go a few at a time, and only the oldest one is read when none has expired.
  local oldest = redis.call('XRANGE', LOG, '-', '+', 'COUNT', 1)
  if oldest[1] and tonumber(oldest[1][2][6]) < ms - TTL_MS then
    for _, entry in ipairs(redis.call('XRANGE', LOG, '-', '+', 'COUNT', 16)) do
      if tonumber(entry[2][6]) < ms - TTL_MS then
        redis.call('XDEL', LOG, entry[1])
      else
        break
      end
    end
  end
  local pos = e .. ':' .. seq
  local stamped
  if string.match(body, '^%s*}%s*$') then
    stamped = '{"rohrpostPos":"' .. pos .. '"}'
  else
    stamped = '{"rohrpostPos":"' .. pos .. '",' .. body
  end
  redis.call('PUBLISH', channel, stamped)
  if seq % BEACON == 0 then
    redis.call('PUBLISH', HEAD, '{"rohrpostPos":"' .. pos .. '"}')
  end
  return pos
end

local function read(keys, args)
  local e = epoch()
  local head = tonumber(redis.call('GET', SEQ) or '0')
  local wanted, after = args[1], tonumber(args[2] or '0')
  local out = {}
  if not wanted or wanted == '' then
    return {e, head, 1, out}
  end
  local start = 0
  if wanted == e then start = after end
  local complete = 1
  if start < head then
    local entries = redis.call('XRANGE', LOG, '0-' .. (start + 1), '+', 'COUNT', SIZE)
    if not entries[1] or entries[1][1] ~= '0-' .. (start + 1) then complete = 0 end
    for _, entry in ipairs(entries) do
      out[#out + 1] = string.sub(entry[1], 3)
      out[#out + 1] = entry[2][2]
      out[#out + 1] = entry[2][4]
    end
  elseif start > head then
    complete = 0
  end
  return {e, head, complete, out}
end

redis.register_function('rohrpost_publish', publish)
redis.register_function('rohrpost_read', read)
"#;

/// The position a logged publish's payload carries, if it is one (see [`STAMP`]).
pub(super) fn stamp(payload: &[u8]) -> Option<Position> {
    let rest = payload.strip_prefix(STAMP)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    Position::parse(std::str::from_utf8(&rest[..end]).ok()?)
}

/// Parses `rohrpost_read`'s answer.
pub(super) fn parse_read(
    (epoch, head, complete, flat): (String, u64, i64, Vec<Vec<u8>>),
) -> Result<LogRead, BrokerError> {
    let malformed = || BrokerError::Server("rohrpost_read answered in an unknown form".into());
    if flat.len() % 3 != 0 {
        return Err(malformed());
    }
    let mut entries = Vec::with_capacity(flat.len() / 3);
    let mut fields = flat.into_iter();
    while let (Some(seq), Some(channel), Some(payload)) =
        (fields.next(), fields.next(), fields.next())
    {
        let seq = (std::str::from_utf8(&seq).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(malformed)?;
        let channel = String::from_utf8(channel).map_err(|_| malformed())?;
        entries.push(LogEntry {
            seq,
            channel: Arc::from(channel),
            payload: Bytes::from(payload),
        });
    }
    Ok(LogRead {
        epoch: Arc::from(epoch),
        head,
        entries,
        complete: complete == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_read_only_in_their_own_place() {
        let p = stamp(br#"{"rohrpostPos":"ab12:7","data":1}"#).unwrap();
        assert_eq!(p.to_string(), "ab12:7");
        assert_eq!(stamp(br#"{"data":1,"rohrpostPos":"ab12:7"}"#), None);
        assert_eq!(stamp(br#"{"rohrpostPos":"ab12"}"#), None);
        assert_eq!(stamp(b"plain"), None);
    }

    #[test]
    fn the_library_carries_the_configured_bounds() {
        let history = HistorySettings {
            enabled: true,
            size: 42,
            ttl: std::time::Duration::from_secs(3),
        };
        let code = library(&history);
        assert!(
            code.contains("local SIZE, TTL_MS, BEACON, HEAD = 42, 3000, 10, 'rohrpost.log.head'")
        );
        assert!(!code.contains('@'));
    }
}
