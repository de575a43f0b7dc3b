//! One websocket connection after its handshake: Rohrpost's own code, not an HTTP dispatcher.
//!
//! A [`Connection`] is a plain future (one task per connection, on the server thread that
//! accepted it) that owns the socket — TCP or TLS — and the transport's end of its session's
//! receiver. It decodes the client's frames with actix-http's websocket codec and passes text
//! messages to the session; it encodes the session's frames and writes them.
//!
//! Memory follows what is in flight: while a connection is idle it holds no buffer at all.
//! Reads go through one per-thread scratch buffer ([`READ_SCRATCH`]) and only an incomplete
//! frame is kept by the connection, until it completes. Frames the session hands over are
//! encoded into one per-thread output buffer, all that are ready at once, and written with one
//! write per wake-up; only what the socket did not take stays with the connection, which then
//! stops taking frames until it is written (so a client that does not read fills its session's
//! queue, and the session closes it with 1013), and gives the memory back once it is.
//!
//! Closing follows the websocket handshake: a close the session asks for is sent and the
//! client's is awaited for [`CLOSE_WAIT`] while its messages still reach the session (a draining
//! worker loses nothing); a close the client sends is answered and ends the connection; a
//! protocol error, a binary message or undecodable data closes it at once.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix::Recipient;
use actix_http::ws::{self, CloseCode, CloseReason, Item, OpCode, Parser, ProtocolError};
use bytes::{Buf, BytesMut};
use futures_util::Stream;
use log::debug;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Decoder, Encoder};

use super::admission::Pass;
use super::frames::{parse_client_payload, Frame, FrameKind, PayloadShape};
use super::receiver::{self, FrameStream, ReceiverKind};
use super::session::ClientMessages;
use super::websocket::{Flavour, Handover};

/// How long a closing connection waits for the client's close frame (and for the last bytes to
/// be written).
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Encoded bytes a connection may hold unwritten before it stops taking frames from its session.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Reads, and write rounds, one wake-up makes before it lets the thread's other connections run.
const ROUNDS_PER_WAKE: usize = 16;

/// Size of each server thread's read scratch buffer: one TLS record's plaintext.
const READ_SCRATCH_BYTES: usize = 16 * 1024;

thread_local! {
    /// Where every connection of this thread reads into.
    static READ_SCRATCH: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; READ_SCRATCH_BYTES].into_boxed_slice());
    /// Where every connection of this thread encodes the frames of one wake-up.
    static WRITE_SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Frames flow both ways.
    Open,
    /// Our close frame is queued or sent; the client's is awaited (its messages still count).
    Closing,
    /// Nothing more is read or taken: what is queued is written, then the socket is shut down.
    Ending,
}

/// The future serving one websocket connection; see the module documentation.
pub struct Connection<T> {
    io: T,
    codec: ws::Codec,
    /// An incomplete frame from the client (empty, and without capacity, between frames).
    read_buf: BytesMut,
    /// Encoded bytes the socket has not taken yet (empty, and without capacity, when idle).
    write_buf: BytesMut,
    /// The session's frames; `None` before a session (refused) and once the session let go.
    frames: Option<FrameStream>,
    incoming: Option<Recipient<ClientMessages>>,
    flavour: Flavour,
    id: Arc<str>,
    /// A fragmented text message being reassembled.
    pending: Option<BytesMut>,
    max: usize,
    phase: Phase,
    /// Bounds [`Phase::Closing`] and [`Phase::Ending`].
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Held for as long as the connection lives.
    _pass: Option<Pass>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    /// Takes over `io` (with what the client sent after its handshake, `early`) and starts the
    /// session, or closes at once with the refusal's code.
    pub fn start(io: T, early: BytesMut, handover: Handover) -> Self {
        let Handover {
            endpoint,
            id,
            flavour,
            opening,
            admitted,
        } = handover;
        let max = endpoint.options.max_frame_bytes;
        let mut connection = Connection {
            io,
            codec: ws::Codec::new().max_size(max),
            read_buf: early,
            write_buf: BytesMut::new(),
            frames: None,
            incoming: None,
            flavour,
            id,
            pending: None,
            max,
            phase: Phase::Open,
            deadline: None,
            _pass: None,
        };
        match admitted {
            Ok(pass) => {
                let (receiver, mut frames) = receiver::channel(ReceiverKind::Streaming);
                let handle = endpoint.start_connection(connection.id.clone(), receiver, &opening);
                frames.set_session(handle.detach.clone());
                connection.frames = Some(frames);
                connection.incoming = Some(handle.incoming);
                connection._pass = Some(pass);
            }
            Err(refusal) => {
                debug!(
                    "websocket session refused session={}: {refusal}",
                    connection.id
                );
                let frame = Frame::close(refusal.code(), &refusal.reason());
                if flavour == Flavour::Framed {
                    text(&mut connection.write_buf, &frame.body);
                }
                connection.start_closing(Some(raw_close_reason(&frame)));
            }
        }
        // What the client sent right behind its handshake.
        connection.decode();
        connection
    }

    /// Reads and handles what the client sent, until the socket has nothing more for now.
    fn read(&mut self, cx: &mut Context<'_>) {
        for _ in 0..ROUNDS_PER_WAKE {
            if self.phase == Phase::Ending {
                return;
            }
            let read = READ_SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let filled = buf.filled();
                        if !filled.is_empty() {
                            self.read_buf.extend_from_slice(filled);
                        }
                        Poll::Ready(Ok(filled.len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            });
            let Poll::Ready(read) = read else {
                return;
            };
            match read {
                Ok(0) => {
                    debug!("websocket closed by the network session={}", self.id);
                    self.end();
                }
                Ok(_) => self.decode(),
                Err(e) => {
                    debug!("websocket read failed session={} error={e}", self.id);
                    self.end();
                }
            }
            if self.read_buf.is_empty() {
                // Nothing incomplete: give the memory back.
                self.read_buf = BytesMut::new();
            }
        }
        // More may be waiting: let the thread's other connections run first.
        cx.waker().wake_by_ref();
    }

    /// Handles every complete frame in the read buffer.
    fn decode(&mut self) {
        while self.phase != Phase::Ending {
            match self.codec.decode(&mut self.read_buf) {
                Ok(Some(frame)) => self.frame(frame),
                Ok(None) => return,
                Err(e) => {
                    debug!("websocket protocol error session={} error={e}", self.id);
                    let code = match e {
                        ProtocolError::Overflow => CloseCode::Size,
                        _ => CloseCode::Protocol,
                    };
                    self.close_now(code, Some(e.to_string()));
                }
            }
        }
    }

    fn frame(&mut self, frame: ws::Frame) {
        match frame {
            ws::Frame::Text(text) => self.incoming(&text),
            ws::Frame::Continuation(item) => self.continuation(item),
            ws::Frame::Ping(bytes) => {
                let _ = self
                    .codec
                    .encode(ws::Message::Pong(bytes), &mut self.write_buf);
            }
            ws::Frame::Pong(_) => {}
            ws::Frame::Binary(_) => self.close_now(
                CloseCode::Unsupported,
                Some("binary messages are not supported".into()),
            ),
            ws::Frame::Close(reason) => {
                if self.phase == Phase::Open {
                    Parser::write_close(&mut self.write_buf, reason, false);
                }
                self.end();
            }
        }
    }

    fn incoming(&mut self, text: &[u8]) {
        let Some(incoming) = &self.incoming else {
            return;
        };
        match self.flavour {
            Flavour::Raw => match std::str::from_utf8(text) {
                Ok(text) => incoming.do_send(ClientMessages(vec![text.to_string()])),
                Err(_) => self.end(),
            },
            Flavour::Framed => {
                if text.is_empty() {
                    return;
                }
                match parse_client_payload(text, PayloadShape::ArrayOrString) {
                    Ok(messages) if messages.is_empty() => {}
                    Ok(messages) => incoming.do_send(ClientMessages(messages)),
                    Err(e) => {
                        // SockJS: broken data ends the connection abruptly.
                        debug!("websocket payload rejected session={} error={e}", self.id);
                        self.end();
                    }
                }
            }
        }
    }

    fn continuation(&mut self, item: Item) {
        match item {
            Item::FirstText(bytes) => self.pending = Some(BytesMut::from(&bytes[..])),
            Item::FirstBinary(_) => self.close_now(CloseCode::Unsupported, None),
            Item::Continue(_) | Item::Last(_) if self.pending.is_none() => {
                self.close_now(CloseCode::Protocol, None);
            }
            Item::Continue(bytes) => self.extend_pending(&bytes),
            Item::Last(bytes) => {
                self.extend_pending(&bytes);
                if let Some(whole) = self.pending.take() {
                    self.incoming(&whole);
                }
            }
        }
    }

    fn extend_pending(&mut self, bytes: &[u8]) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if pending.len() + bytes.len() > self.max {
            let reason = format!("message larger than {} bytes", self.max);
            self.pending = None;
            self.close_now(CloseCode::Size, Some(reason));
            return;
        }
        pending.extend_from_slice(bytes);
    }

    /// Takes every frame the session has ready and encodes it into `out`.
    fn take_frames(&mut self, out: &mut BytesMut, cx: &mut Context<'_>) {
        while out.len() < WRITE_HIGH_WATER && self.phase != Phase::Ending {
            let Some(frames) = self.frames.as_mut() else {
                return;
            };
            match Pin::new(frames).poll_next(cx) {
                Poll::Ready(Some(frame)) => self.outgoing(frame, out),
                Poll::Ready(None) => {
                    // The session ended and let go of us: write what is left and go.
                    self.frames = None;
                    self.end();
                }
                Poll::Pending => return,
            }
        }
    }

    fn outgoing(&mut self, frame: Frame, out: &mut BytesMut) {
        match (self.flavour, frame.kind) {
            (Flavour::Framed, FrameKind::Close) => {
                text(out, &frame.body);
                Parser::write_close(out, Some(CloseCode::Normal.into()), false);
                self.closing();
            }
            (Flavour::Framed, _) => text(out, &frame.body),
            (Flavour::Raw, FrameKind::Open) => {}
            (Flavour::Raw, FrameKind::Heartbeat) => {
                Parser::write_message(out, b"", OpCode::Ping, true, false);
            }
            (Flavour::Raw, FrameKind::Messages) => {
                let array = frame.body.get(1..).unwrap_or_default();
                match serde_json::from_slice::<Vec<String>>(array) {
                    Ok(messages) => messages.iter().for_each(|m| text(out, m.as_bytes())),
                    Err(e) => log::error!("undecodable message frame for raw websocket: {e}"),
                }
            }
            (Flavour::Raw, FrameKind::Close) => {
                Parser::write_close(out, Some(raw_close_reason(&frame)), false);
                self.closing();
            }
        }
    }

    /// Writes `out` as far as the socket takes it now; false if the socket failed.
    fn write(&mut self, out: &mut BytesMut, cx: &mut Context<'_>) -> bool {
        while !out.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, out) {
                Poll::Ready(Ok(0)) => return false,
                Poll::Ready(Ok(n)) => out.advance(n),
                Poll::Ready(Err(e)) => {
                    debug!("websocket write failed session={} error={e}", self.id);
                    return false;
                }
                Poll::Pending => return true,
            }
        }
        !matches!(Pin::new(&mut self.io).poll_flush(cx), Poll::Ready(Err(_)))
    }

    /// Takes the session's ready frames and writes them, with what was left unwritten before,
    /// until the socket or the session has nothing more for now. False if the socket failed.
    fn send(&mut self, cx: &mut Context<'_>) -> bool {
        for _ in 0..ROUNDS_PER_WAKE {
            let (ok, more) = self.send_once(cx);
            if !ok || !more {
                return ok;
            }
        }
        cx.waker().wake_by_ref();
        true
    }

    /// One [`round`](Self::round) of [`send`](Self::send): on the connection's own buffer when it
    /// holds unwritten bytes (they go first), else on the thread's scratch buffer.
    fn send_once(&mut self, cx: &mut Context<'_>) -> (bool, bool) {
        if !self.write_buf.is_empty() {
            let mut out = std::mem::take(&mut self.write_buf);
            let result = self.round(&mut out, cx);
            self.keep_unwritten(out);
            return result;
        }
        WRITE_SCRATCH.with(|scratch| {
            let mut out = scratch.borrow_mut();
            out.clear();
            let result = self.round(&mut out, cx);
            if !out.is_empty() {
                self.write_buf.extend_from_slice(&out);
                out.clear();
            }
            if out.capacity() > 4 * WRITE_HIGH_WATER {
                // One burst made it large: do not keep that for the thread's lifetime.
                *out = BytesMut::new();
            }
            result
        })
    }

    /// Takes the session's ready frames into `out` and writes it: whether the socket is fine,
    /// and whether frames were left behind although the socket took everything.
    fn round(&mut self, out: &mut BytesMut, cx: &mut Context<'_>) -> (bool, bool) {
        self.take_frames(out, cx);
        let full = out.len() >= WRITE_HIGH_WATER;
        let ok = self.write(out, cx);
        (ok, full && out.is_empty())
    }

    /// Keeps what the socket did not take; an empty buffer gives its memory back.
    fn keep_unwritten(&mut self, out: BytesMut) {
        self.write_buf = if out.is_empty() { BytesMut::new() } else { out };
    }

    /// Starts the closing handshake (our close frame is in the output).
    fn closing(&mut self) {
        if self.phase == Phase::Open {
            self.phase = Phase::Closing;
            self.deadline = Some(Box::pin(tokio::time::sleep(CLOSE_WAIT)));
        }
    }

    /// Queues a close frame and starts the closing handshake.
    fn start_closing(&mut self, reason: Option<CloseReason>) {
        Parser::write_close(&mut self.write_buf, reason, false);
        self.closing();
    }

    /// Closes at once with `code`: the close frame is written, nothing more is read.
    fn close_now(&mut self, code: CloseCode, description: Option<String>) {
        if self.phase == Phase::Open {
            let reason = CloseReason { code, description };
            Parser::write_close(&mut self.write_buf, Some(reason), false);
        }
        self.end();
    }

    /// Stops reading and lets the session go; what is queued is still written.
    fn end(&mut self) {
        if self.phase != Phase::Ending {
            self.phase = Phase::Ending;
            self.frames = None;
            self.incoming = None;
            self.deadline = Some(Box::pin(tokio::time::sleep(CLOSE_WAIT)));
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Connection<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.read(cx);
        if !this.send(cx) {
            return Poll::Ready(());
        }
        if this.phase == Phase::Ending && this.write_buf.is_empty() {
            // Everything is written: shut the socket down (TLS says close_notify) and go.
            return match Pin::new(&mut this.io).poll_shutdown(cx) {
                Poll::Pending => this.wait_deadline(cx),
                Poll::Ready(_) => Poll::Ready(()),
            };
        }
        this.wait_deadline(cx)
    }
}

impl<T> Connection<T> {
    /// Ends the connection when its closing or ending took longer than [`CLOSE_WAIT`].
    fn wait_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.deadline.as_mut() {
            Some(deadline) => {
                ready!(deadline.as_mut().poll(cx));
                debug!("websocket close not completed in time session={}", self.id);
                Poll::Ready(())
            }
            None => Poll::Pending,
        }
    }
}

/// Encodes one text message.
fn text(out: &mut BytesMut, payload: &[u8]) {
    Parser::write_message(out, payload, OpCode::Text, true, false);
}

/// The websocket close reason for a raw connection, from a SockJS close frame. Codes a websocket
/// may not carry become 1000 (SockJS's 2010, say), except Rohrpost 0.x's restart code 100,
/// which becomes the websocket code that says the same, 1012.
fn raw_close_reason(frame: &Frame) -> CloseReason {
    let parsed: Option<(u16, String)> = frame
        .body
        .get(1..)
        .and_then(|b| serde_json::from_slice(b).ok());
    let (code, reason) = parsed.unwrap_or((1000, String::new()));
    let code = if (3000..=4999).contains(&code) || (1000..=1014).contains(&code) {
        CloseCode::from(code)
    } else if code == crate::legacy::RESTART.0 {
        CloseCode::Restart
    } else {
        CloseCode::Normal
    };
    CloseReason {
        code,
        description: Some(reason),
    }
}
