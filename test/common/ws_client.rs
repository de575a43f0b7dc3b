//! A websocket client for tests: [`WsClient`] over what `awc` connects, every receive bounded.

use awc::error::WsProtocolError;
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};

use super::WAIT;

/// What a websocket client sees next.
#[derive(Debug, PartialEq)]
pub enum WsEvent {
    Text(String),
    /// A close frame, the end of the stream or a broken connection.
    Closed,
}

/// What `awc` hands back for a websocket: a stream of frames and a sink of messages.
pub trait WsTransport:
    Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}

impl<T> WsTransport for T where
    T: Stream<Item = Result<Frame, WsProtocolError>>
        + Sink<Message, Error = WsProtocolError>
        + Unpin
{
}

/// A websocket connection whose receives are bounded by [`WAIT`].
pub struct WsClient<T> {
    framed: T,
}

impl<T: WsTransport> WsClient<T> {
    pub(super) fn new(framed: T) -> Self {
        WsClient { framed }
    }

    /// The next text message or the end of the connection; pings and pongs are skipped.
    pub async fn recv(&mut self) -> WsEvent {
        loop {
            let next = actix_rt::time::timeout(WAIT, self.framed.next())
                .await
                .unwrap_or_else(|_| panic!("websocket: nothing received within {WAIT:?}"));
            match next {
                Some(Ok(Frame::Text(text))) => {
                    let text = String::from_utf8(text.to_vec()).expect("text frame is UTF-8");
                    return WsEvent::Text(text);
                }
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
                Some(Ok(Frame::Close(_)) | Err(_)) | None => return WsEvent::Closed,
                Some(Ok(unexpected)) => panic!("websocket: unexpected frame {unexpected:?}"),
            }
        }
    }

    /// Asserts that the next message is exactly `expected`.
    pub async fn expect_text(&mut self, expected: &str) {
        assert_eq!(self.recv().await, WsEvent::Text(expected.to_owned()));
    }

    /// Asserts that the server ends the connection next, without sending another message.
    pub async fn expect_closed(&mut self) {
        assert_eq!(self.recv().await, WsEvent::Closed);
    }

    pub async fn send_text(&mut self, text: &str) {
        actix_rt::time::timeout(
            WAIT,
            self.framed.send(Message::Text(text.to_owned().into())),
        )
        .await
        .expect("websocket send within the time limit")
        .expect("websocket send");
    }

    /// Starts the closing handshake from the client side.
    pub async fn close(mut self) {
        let _ = actix_rt::time::timeout(WAIT, self.framed.send(Message::Close(None))).await;
    }
}
