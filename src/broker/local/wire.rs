//! The local broker's wire protocol, shared by the server (in the supervisor) and the client
//! (in each worker).
//!
//! # Framing
//! A Unix stream carries length-delimited frames (tokio-util's [`LengthDelimitedCodec`]: a
//! 4-byte big-endian length, then that many bytes, at most [`MAX_FRAME`]). Inside a frame:
//!
//! ```text
//! header length: u32 big-endian | header: JSON | body: raw bytes to the end of the frame
//! ```
//!
//! The header is a [`Request`] (client → server) or a [`Response`] (server → client); the body
//! carries the one binary value a frame may have (a published payload, a session record) as it
//! is, so any bytes round-trip without escaping, and a message delivered to many clients is
//! encoded once and its frame shared.
//!
//! # Requests and replies
//! Every request carries an `id` chosen by the client; the server answers each request exactly
//! once, in the order the requests arrived, with a response carrying the same id. Messages on
//! subscriptions ([`Response::Message`]) answer no request and are interleaved with the replies
//! in the order the server produced them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use tokio_util::codec::{FramedWrite, LengthDelimitedCodec};

/// The largest frame either side sends or accepts.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// The largest body (payload or session record): the frame less room for any header.
pub const MAX_BODY: usize = MAX_FRAME - 1024 * 1024;
/// The longest channel, pattern, session id or secret, in bytes (the configuration allows
/// topics of up to 64 KiB). Two such names, even fully JSON-escaped, fit the header room.
pub const MAX_NAME: usize = 64 * 1024;

/// A request from a worker's broker client to the server.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Drops the subscriptions `remove` and adds `add` (pattern texts; exact or wildcard),
    /// all or nothing. Answered by `Done`, or `Refused` with nothing changed.
    Subscriptions {
        id: u64,
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// Publishes the body on `channel`. Answered by `Done` once every delivery is queued.
    Publish { id: u64, channel: String },
    /// Stores the body as the session record `session` for `ttl_ms`. Answered by `Done`.
    Store {
        id: u64,
        session: String,
        ttl_ms: u64,
    },
    /// Loads the session record `session`. Answered by `Record`.
    Load { id: u64, session: String },
    /// Stores `proposed` as the shared secret unless one is stored. Answered by `Secret`.
    Secret { id: u64, proposed: String },
    /// Checks that the server still answers. Answered by `Done`.
    Ping { id: u64 },
    /// Publishes the body on `channel` through the publication log. Answered by `Logged`.
    PublishLogged { id: u64, channel: String },
    /// Reads the log after `after` (`epoch`, `seq`), or only its epoch and head. Answered by
    /// `Log`.
    ReadLog {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<(String, u64)>,
    },
    /// Stores the body as the directory entry of `session` with a lease of `lease_ms`; a new
    /// entry only with `open` (publishing `session.opened`). Answered by `Put`.
    PutEntry {
        id: u64,
        session: String,
        lease_ms: u64,
        open: bool,
    },
    /// Renews the leases of the entries of `sessions`. Answered by `Gone` (those not there).
    TouchEntries {
        id: u64,
        sessions: Vec<String>,
        lease_ms: u64,
    },
    /// Removes the entry of `session`, publishing `session.closed` with the `closing` members.
    /// Answered by `Ended`.
    EndEntry {
        id: u64,
        session: String,
        closing: String,
    },
    /// Every directory entry. Answered by `Entries`.
    ListEntries { id: u64 },
    /// The directory entry of `session`. Answered by `Record`.
    GetEntry { id: u64, session: String },
}

impl Request {
    /// The id the answer to this request will carry.
    pub fn id(&self) -> u64 {
        match self {
            Request::Subscriptions { id, .. }
            | Request::Publish { id, .. }
            | Request::Store { id, .. }
            | Request::Load { id, .. }
            | Request::Secret { id, .. }
            | Request::Ping { id }
            | Request::PublishLogged { id, .. }
            | Request::ReadLog { id, .. }
            | Request::PutEntry { id, .. }
            | Request::TouchEntries { id, .. }
            | Request::EndEntry { id, .. }
            | Request::ListEntries { id }
            | Request::GetEntry { id, .. } => *id,
        }
    }
}

/// What the server sends a client: replies to its requests and messages on its subscriptions.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Response {
    /// The request succeeded and has no value.
    Done { id: u64 },
    /// A session record: the body when `found`, else none was stored or it expired.
    Record { id: u64, found: bool },
    /// The shared secret.
    Secret { id: u64, secret: String },
    /// The server refused the request (a limit, a malformed name); the reason is for logs.
    Refused { id: u64, reason: String },
    /// A message published on `channel`, delivered because it matches the client's
    /// subscription `subscription`; the body is the payload. Answers no request. A logged
    /// publish carries its position in the log.
    Message {
        subscription: String,
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logged: Option<(String, u64)>,
    },
    /// The position a logged publish got.
    Logged { id: u64, epoch: String, seq: u64 },
    /// A read of the log: `entries` are (seq, channel, payload length), the payloads follow
    /// one another in the body.
    Log {
        id: u64,
        epoch: String,
        head: u64,
        complete: bool,
        entries: Vec<(u64, String, usize)>,
    },
    /// What a `PutEntry` did.
    Put { id: u64, outcome: PutOutcome },
    /// The sessions of a `TouchEntries` whose entries are gone.
    Gone { id: u64, sessions: Vec<String> },
    /// Whether an `EndEntry` removed the entry.
    Ended { id: u64, ended: bool },
    /// Every directory entry: their lengths here, the entries one after another in the body.
    Entries { id: u64, lengths: Vec<usize> },
}

/// [`crate::broker::directory::Put`] on the wire.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PutOutcome {
    Opened,
    Refreshed,
    Gone,
}

impl Response {
    /// The request this answers; `None` for a message on a subscription.
    pub fn id(&self) -> Option<u64> {
        match self {
            Response::Done { id }
            | Response::Record { id, .. }
            | Response::Secret { id, .. }
            | Response::Refused { id, .. }
            | Response::Logged { id, .. }
            | Response::Log { id, .. }
            | Response::Put { id, .. }
            | Response::Gone { id, .. }
            | Response::Ended { id, .. }
            | Response::Entries { id, .. } => Some(*id),
            Response::Message { .. } => None,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes is shorter than its header length says")]
    Truncated { len: usize },
    #[error("frame header is not valid: {0}")]
    Header(#[from] serde_json::Error),
}

/// The frame codec both sides use, bounded by [`MAX_FRAME`] both ways.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Encodes one frame: `header` and then `body`.
pub fn encode<H: Serialize>(header: &H, body: &[u8]) -> Bytes {
    // Headers are plain structs of strings and integers, which always serialise.
    let header = serde_json::to_vec(header).expect("wire headers serialise to JSON");
    let mut frame = BytesMut::with_capacity(4 + header.len() + body.len());
    frame.put_u32(header.len() as u32);
    frame.put_slice(&header);
    frame.put_slice(body);
    frame.freeze()
}

/// Decodes one frame into its header and body; the body shares the frame's memory.
pub fn decode<H: DeserializeOwned>(mut frame: BytesMut) -> Result<(H, Bytes), WireError> {
    let len = frame.len();
    if len < 4 {
        return Err(WireError::Truncated { len });
    }
    let header_len = frame.get_u32() as usize;
    if header_len > frame.len() {
        return Err(WireError::Truncated { len });
    }
    let header = frame.split_to(header_len);
    let header = serde_json::from_slice(&header)?;
    Ok((header, frame.freeze()))
}

/// Writes `first` and then every frame `more` has ready, and flushes once: one system call for
/// a burst of frames instead of one per frame.
pub async fn write_batch<W: AsyncWrite + Unpin>(
    sink: &mut FramedWrite<W, LengthDelimitedCodec>,
    first: Bytes,
    mut more: impl FnMut() -> Option<Bytes>,
) -> std::io::Result<()> {
    sink.feed(first).await?;
    while let Some(frame) = more() {
        sink.feed(frame).await?;
    }
    SinkExt::<Bytes>::flush(sink).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<H: Serialize + DeserializeOwned>(header: &H, body: &[u8]) -> (H, Bytes) {
        decode(BytesMut::from(&encode(header, body)[..])).unwrap()
    }

    #[test]
    fn binary_bodies_round_trip_unchanged() {
        let body: Vec<u8> = (0..=255).chain([0, 0xff, b'"', b'\\']).collect();
        let publish = Request::Publish {
            id: 7,
            channel: "chat.\"quoted\"\\".into(),
        };
        let (header, got) = round_trip(&publish, &body);
        assert_eq!(header, publish);
        assert_eq!(&got[..], &body[..]);
    }

    #[test]
    fn empty_bodies_and_every_request_round_trip() {
        let requests = [
            Request::Subscriptions {
                id: 1,
                add: vec!["a?b".into(), "x.*".into()],
                remove: vec!["a[bc]".into()],
            },
            Request::Store {
                id: 2,
                session: "s".into(),
                ttl_ms: 5,
            },
            Request::Load {
                id: 3,
                session: "s".into(),
            },
            Request::Secret {
                id: 4,
                proposed: "p".into(),
            },
            Request::Ping { id: 5 },
            Request::PutEntry {
                id: 6,
                session: "s".into(),
                lease_ms: 10,
                open: true,
            },
            Request::TouchEntries {
                id: 7,
                sessions: vec!["s".into(), "t".into()],
                lease_ms: 10,
            },
            Request::EndEntry {
                id: 8,
                session: "s".into(),
                closing: "\"reason\":\"kicked\"".into(),
            },
            Request::ListEntries { id: 9 },
            Request::GetEntry {
                id: 10,
                session: "s".into(),
            },
        ];
        for request in requests {
            assert_eq!(round_trip(&request, b""), (request, Bytes::new()));
        }
    }

    #[test]
    fn messages_answer_no_request() {
        let message = Response::Message {
            subscription: "x.*".into(),
            channel: "x.y".into(),
            logged: Some(("e".into(), 3)),
        };
        assert_eq!(message.id(), None);
        assert_eq!(Response::Done { id: 9 }.id(), Some(9));
        assert_eq!(round_trip(&message, b"{}").0, message);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(matches!(
            decode::<Request>(BytesMut::from(&[0u8, 0][..])),
            Err(WireError::Truncated { len: 2 })
        ));
        assert!(matches!(
            decode::<Request>(BytesMut::from(&[0u8, 0, 0, 9, b'{'][..])),
            Err(WireError::Truncated { len: 5 })
        ));
        let not_a_request = encode(&serde_json::json!({"op": "explode"}), b"");
        assert!(matches!(
            decode::<Request>(BytesMut::from(&not_a_request[..])),
            Err(WireError::Header(_))
        ));
    }
}
