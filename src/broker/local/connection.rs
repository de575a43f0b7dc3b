//! One client connection on the server side: a task that reads the client's requests and hands
//! them to the [`LocalBrokerServer`] actor one at a time, and writes what the actor queued for
//! the client.
//!
//! Reading and writing are two futures raced in one task, so the connection ends — and the
//! socket closes — as soon as either ends, or when the actor or the server's shutdown cancels
//! the connection's token. A request is handed over with `send(..).await`, so a client that
//! floods requests waits on the actor's mailbox rather than growing it.
//!
//! What the actor queues for a client ([`Outbound`]) is bounded in bytes: a frame is only
//! queued with a permit for its length from the client's budget, handed back when the frame is
//! taken off the queue to be written. A client that stops reading fills its socket buffer, then
//! its budget, and the actor disconnects it; nobody else ever waits for it.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::server::{FromClient, Join, Leave, LocalBrokerServer};
use super::subscriptions::ClientId;
use super::wire::{self, Request, WireError};

/// Why a connection ended other than by the client closing it.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    /// Reading or writing failed, or a frame was longer than the limit.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("the broker server stopped")]
    ServerStopped,
}

/// A frame waiting to be written, holding its share of the client's byte budget.
struct Queued {
    frame: Bytes,
    _permit: OwnedSemaphorePermit,
}

/// The actor's end of a client's outbound queue; see the module docs.
pub(super) struct Outbound {
    frames: mpsc::UnboundedSender<Queued>,
    budget: Arc<Semaphore>,
    max_bytes: usize,
}

impl Outbound {
    /// Queues `frame` for the client; false when its budget is spent (it is not reading) or the
    /// connection is gone.
    pub(super) fn push(&self, frame: Bytes) -> bool {
        let Ok(len) = u32::try_from(frame.len()) else {
            return false;
        };
        let Ok(permit) = self.budget.clone().try_acquire_many_owned(len) else {
            return false;
        };
        let queued = Queued {
            frame,
            _permit: permit,
        };
        self.frames.send(queued).is_ok()
    }

    /// Bytes queued and not yet taken to be written, for logs.
    pub(super) fn queued_bytes(&self) -> usize {
        self.max_bytes - self.budget.available_permits()
    }
}

/// Serves one accepted connection until it ends; see the module docs.
pub(super) async fn serve(
    stream: UnixStream,
    hub: Addr<LocalBrokerServer>,
    stop: CancellationToken,
    max_queued_bytes: usize,
) {
    let (frames, mut queue) = mpsc::unbounded_channel();
    let outbound = Outbound {
        frames,
        budget: Arc::new(Semaphore::new(max_queued_bytes)),
        max_bytes: max_queued_bytes,
    };
    let joined = hub.send(Join {
        outbound,
        stop: stop.clone(),
    });
    // `None`: turned away (the actor said why), or the server is stopping.
    let Ok(Some(client)) = joined.await else {
        return;
    };
    let (read, write) = stream.into_split();
    let mut requests = FramedRead::new(read, wire::codec());
    let mut sink = FramedWrite::new(write, wire::codec());
    let ended = tokio::select! {
        ended = read_requests(&mut requests, client, &hub) => ended,
        ended = write_frames(&mut sink, &mut queue) => ended,
        () = stop.cancelled() => Ok("disconnected by server"),
    };
    hub.do_send(Leave { client });
    match ended {
        Ok(reason) => log::info!("local broker client left client={client} reason={reason:?}"),
        Err(ConnectionError::Io(e)) if closed_by_peer(&e) => {
            log::info!("local broker client left client={client} reason=\"closed by client\"")
        }
        Err(e) => log::warn!("local broker client dropped client={client} error={e}"),
    }
}

/// Whether `e` only says that the client went away while frames were on their way to it.
fn closed_by_peer(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    matches!(e.kind(), BrokenPipe | ConnectionReset)
}

/// Hands the client's requests to the actor in order, each once the previous one is taken.
async fn read_requests(
    requests: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    client: ClientId,
    hub: &Addr<LocalBrokerServer>,
) -> Result<&'static str, ConnectionError> {
    while let Some(frame) = requests.next().await {
        let (request, body) = wire::decode::<Request>(frame?)?;
        let handed = hub.send(FromClient {
            client,
            request,
            body,
        });
        handed.await.map_err(|_| ConnectionError::ServerStopped)?;
    }
    Ok("closed by client")
}

/// Writes what the actor queues, in order, until the actor drops the queue.
async fn write_frames(
    sink: &mut FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    queue: &mut mpsc::UnboundedReceiver<Queued>,
) -> Result<&'static str, ConnectionError> {
    while let Some(first) = queue.recv().await {
        let more = || queue.try_recv().ok().map(|queued| queued.frame);
        wire::write_batch(sink, first.frame, more).await?;
    }
    Ok("disconnected by server")
}
