//! The [`LocalBroker`](super::LocalBroker)'s socket work outside the actor: opening a
//! connection (with its subscriptions restored before it counts as up) and the writer task.

use std::cell::Cell;
use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::subscriptions_request;
use crate::broker::local::wire::{self, Response};
use crate::broker::{BrokerError, COMMAND_TIMEOUT};
use crate::topics::Pattern;

/// A fresh connection with `applied` already confirmed by the server.
pub(super) struct Opened {
    pub frames: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    pub sink: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    pub applied: HashSet<Pattern>,
}

/// Connects to the server at `path` and restores `subscriptions` on the new connection.
pub(super) async fn open(
    path: PathBuf,
    subscriptions: Vec<Pattern>,
) -> Result<Opened, BrokerError> {
    let unavailable = |e: std::io::Error| BrokerError::Unavailable(e.to_string());
    let stream = bounded("connect", UnixStream::connect(&path)).await?;
    let (read, write) = stream.map_err(unavailable)?.into_split();
    let mut frames = FramedRead::new(read, wire::codec());
    let mut sink = FramedWrite::new(write, wire::codec());
    // Sent even when empty: a connection counts as up only once the server has answered on it
    // (a server at its client limit accepts and closes at once).
    let request = subscriptions_request(&subscriptions, &[])(0);
    let sent = bounded("subscriptions", sink.send(wire::encode(&request, b""))).await?;
    sent.map_err(unavailable)?;
    match bounded("subscriptions", frames.next()).await? {
        Some(Ok(frame)) => restored(frame)?,
        Some(Err(e)) => return Err(unavailable(e)),
        None => {
            return Err(BrokerError::Unavailable(
                "the server closed the connection".into(),
            ))
        }
    }
    Ok(Opened {
        frames,
        sink,
        applied: subscriptions.into_iter().collect(),
    })
}

/// Checks the answer to the restoring batch; a refusal is logged and counts as done, as asking
/// again would be refused again.
fn restored(frame: BytesMut) -> Result<(), BrokerError> {
    let (response, _) = wire::decode::<Response>(frame)
        .map_err(|e| BrokerError::Unavailable(format!("unreadable answer: {e}")))?;
    match response {
        Response::Done { id: 0 } => Ok(()),
        Response::Refused { id: 0, reason } => {
            log::warn!("local broker refused restoring subscriptions error={reason}");
            Ok(())
        }
        other => Err(BrokerError::Unavailable(format!(
            "unexpected answer to restoring subscriptions: {other:?}"
        ))),
    }
}

/// Awaits `step` for at most the command timeout.
async fn bounded<T>(what: &str, step: impl Future<Output = T>) -> Result<T, BrokerError> {
    tokio::time::timeout(COMMAND_TIMEOUT, step)
        .await
        .map_err(|_| {
            BrokerError::Unavailable(format!(
                "no answer to {what} within {} ms",
                COMMAND_TIMEOUT.as_millis()
            ))
        })
}

/// Writes queued requests until the queue closes, writing fails, or `stop` is cancelled.
pub(super) async fn write_requests(
    mut sink: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    mut queue: mpsc::Receiver<Bytes>,
    queued_bytes: Rc<Cell<usize>>,
    stop: CancellationToken,
) {
    let taken = |frame: Bytes| {
        queued_bytes.set(queued_bytes.get().saturating_sub(frame.len()));
        frame
    };
    let writing = async {
        while let Some(first) = queue.recv().await {
            let first = taken(first);
            let more = || queue.try_recv().ok().map(taken);
            if let Err(e) = wire::write_batch(&mut sink, first, more).await {
                log::debug!("local broker write failed error={e}");
                return;
            }
        }
    };
    tokio::select! {
        () = writing => {}
        () = stop.cancelled() => {}
    }
}
