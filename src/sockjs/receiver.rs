//! Receivers: how a transport attaches to a session to get frames out of it.
//!
//! A receiver is the sending half of a small bounded channel of [`Frame`]s, held by the session;
//! the transport holds the other half as a [`FrameStream`]. When the transport goes away (the
//! HTTP response ended, the client hung up, the websocket closed) the stream is dropped and tells
//! the session with a [`Detach`] message, saying whether the transport ended normally or was
//! interrupted by the network.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use actix::{Message, Recipient};
use futures_util::Stream;
use tokio::sync::mpsc;

use super::frames::Frame;

/// Identifies one attached transport, unique within the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReceiverId(u64);

impl ReceiverId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ReceiverId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// How a transport consumes frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverKind {
    /// One frame per request (`xhr`, `jsonp`): detached by the session after one frame.
    Polling,
    /// Many frames per request or connection (`xhr_streaming`, `eventsource`, `htmlfile`,
    /// websockets).
    Streaming,
}

/// The session's handle on an attached transport.
#[derive(Debug)]
pub struct Receiver {
    pub id: ReceiverId,
    pub kind: ReceiverKind,
    pub tx: mpsc::Sender<Frame>,
}

/// Sent by a [`FrameStream`] when it is dropped.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Detach {
    pub id: ReceiverId,
    /// True when the transport did not end by itself: the client went away mid-response.
    pub interrupted: bool,
}

/// Frames a streaming receiver may have in flight before the session holds back and coalesces.
const STREAMING_CAPACITY: usize = 16;

/// Makes a receiver and the stream of frames the transport reads.
pub fn channel(kind: ReceiverKind) -> (Receiver, FrameStream) {
    let capacity = match kind {
        ReceiverKind::Polling => 1,
        ReceiverKind::Streaming => STREAMING_CAPACITY,
    };
    let (tx, rx) = mpsc::channel(capacity);
    let id = ReceiverId::next();
    (
        Receiver { id, kind, tx },
        FrameStream {
            id,
            rx,
            detach: None,
            finished: false,
        },
    )
}

/// The transport's end of a receiver: a stream of frames that detaches itself when dropped.
pub struct FrameStream {
    id: ReceiverId,
    rx: mpsc::Receiver<Frame>,
    detach: Option<Recipient<Detach>>,
    finished: bool,
}

impl FrameStream {
    /// Where to report the drop: the session this stream is attached to.
    pub fn set_session(&mut self, session: Recipient<Detach>) {
        self.detach = Some(session);
    }

    /// Marks the transport as ended normally (response limit, close frame, polling answer), so
    /// that the drop is not taken as a network interruption.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    pub fn id(&self) -> ReceiverId {
        self.id
    }
}

impl Stream for FrameStream {
    type Item = Frame;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(None) = polled {
            // The session let go of us: nothing was interrupted.
            self.finished = true;
        }
        polled
    }
}

impl Drop for FrameStream {
    fn drop(&mut self) {
        if let Some(session) = self.detach.take() {
            session.do_send(Detach {
                id: self.id,
                interrupted: !self.finished,
            });
        }
    }
}
