//! The local broker end to end: a real server and real clients over Unix sockets in a temporary
//! directory, all in the test's process.
//!
//! The server delivers a client's messages in publishing order, so "`x` is not delivered" is
//! shown without sleeping: publish `x`, then something that is delivered, and check that the
//! latter arrives first. Every wait is bounded.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::client::Settled;
use super::wire::{self, Request, Response, MAX_BODY, MAX_FRAME};
use super::{LocalBroker, LocalBrokerServer, LocalBrokerServerHandle, ServerLimits};
use crate::broker::{
    Broker, BrokerError, BrokerMessage, IsConnected, LoadSession, Publish, SharedSecret,
    StoreSession, Subscribe, Unsubscribe,
};
use crate::topics::{Pattern, DEFAULT_MAX_TOPIC_LEN};

mod delivery;
mod resilience;
mod store;

/// The bound on every wait for something that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(3);

fn pattern(s: &str) -> Pattern {
    Pattern::parse(s, DEFAULT_MAX_TOPIC_LEN).unwrap()
}

/// Polls `check` every 10 ms until it answers true; panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A directory for the socket, removed with everything in it when dropped.
struct SocketDir {
    dir: tempfile::TempDir,
}

impl SocketDir {
    fn new() -> SocketDir {
        let _ = env_logger::builder().is_test(true).try_init();
        SocketDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("broker.sock")
    }

    async fn serve(&self) -> LocalBrokerServerHandle {
        LocalBrokerServer::bind(&self.path()).await.unwrap()
    }

    async fn serve_with(&self, limits: ServerLimits) -> LocalBrokerServerHandle {
        LocalBrokerServer::bind_with(&self.path(), limits)
            .await
            .unwrap()
    }
}

/// Collects what the broker delivers.
struct Inbox(mpsc::UnboundedSender<BrokerMessage>);

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<BrokerMessage> for Inbox {
    type Result = ();

    fn handle(&mut self, msg: BrokerMessage, _ctx: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

/// A worker's broker client and the inbox it delivers to.
struct Harness {
    broker: Addr<LocalBroker>,
    inbox: mpsc::UnboundedReceiver<BrokerMessage>,
}

impl Harness {
    fn start(path: &Path) -> Harness {
        let (sender, inbox) = mpsc::unbounded_channel();
        let deliver = Inbox(sender).start().recipient();
        let broker = LocalBroker::start(path, deliver);
        Harness { broker, inbox }
    }

    async fn connected(path: &Path) -> Harness {
        let harness = Harness::start(path);
        harness.until_connected(true, PROMPTLY).await;
        harness
    }

    async fn is_connected(&self) -> bool {
        self.broker.send(IsConnected).await.unwrap()
    }

    async fn until_connected(&self, connected: bool, limit: Duration) {
        let what = format!("IsConnected answers {connected}");
        eventually(&what, limit, || async {
            self.is_connected().await == connected
        })
        .await;
    }

    /// Subscribes and waits until the server has confirmed it.
    async fn subscribe(&self, text: &str) -> Pattern {
        let subscription = pattern(text);
        self.broker.do_send(Subscribe(subscription.clone()));
        self.settle().await;
        subscription
    }

    async fn unsubscribe(&self, subscription: &Pattern) {
        self.broker.do_send(Unsubscribe(subscription.clone()));
        self.settle().await;
    }

    async fn settle(&self) {
        let settled = || async { self.broker.send(Settled).await.unwrap() };
        eventually("the server confirms the subscriptions", PROMPTLY, settled).await;
    }

    async fn try_publish(&self, channel: &str, payload: &[u8]) -> Result<(), BrokerError> {
        let publish = Publish {
            channel: Arc::from(channel),
            payload: Bytes::copy_from_slice(payload),
        };
        let answer = tokio::time::timeout(PROMPTLY, self.broker.send(publish)).await;
        answer.expect("Publish answers promptly").unwrap()
    }

    async fn publish(&self, channel: &str, payload: &str) {
        self.try_publish(channel, payload.as_bytes()).await.unwrap();
    }

    async fn store(&self, id: &str, record: Bytes, ttl: Duration) -> Result<(), BrokerError> {
        let id = Arc::from(id);
        self.broker
            .send(StoreSession { id, record, ttl })
            .await
            .unwrap()
    }

    async fn load(&self, id: &str) -> Result<Option<Bytes>, BrokerError> {
        self.broker
            .send(LoadSession { id: id.into() })
            .await
            .unwrap()
    }

    async fn secret(&self, proposed: &str) -> Result<String, BrokerError> {
        let proposed = proposed.into();
        self.broker.send(SharedSecret { proposed }).await.unwrap()
    }

    /// The next delivered message, which must come promptly.
    async fn next(&mut self) -> BrokerMessage {
        let next = tokio::time::timeout(PROMPTLY, self.inbox.recv()).await;
        next.expect("a message is delivered promptly").unwrap()
    }

    /// Checks that the next delivered message is `payload` on `channel` via `subscription`.
    async fn expect(&mut self, subscription: &Pattern, channel: &str, payload: &str) {
        let msg = self.next().await;
        let got = (&msg.subscription, &*msg.channel, &msg.payload[..]);
        assert_eq!(got, (subscription, channel, payload.as_bytes()));
    }
}

/// A client speaking the wire protocol by hand, to misbehave in ways `LocalBroker` never does.
struct RawClient(Framed<UnixStream, LengthDelimitedCodec>);

impl RawClient {
    async fn connect(path: &Path) -> RawClient {
        let stream = UnixStream::connect(path).await.unwrap();
        RawClient(Framed::new(stream, wire::codec()))
    }

    async fn subscribe(&mut self, channel: &str) {
        let request = Request::Subscriptions {
            id: 1,
            add: vec![channel.into()],
            remove: vec![],
        };
        self.0.send(wire::encode(&request, b"")).await.unwrap();
        let answer = tokio::time::timeout(PROMPTLY, self.0.next()).await.unwrap();
        let (response, _) = wire::decode::<Response>(answer.unwrap().unwrap()).unwrap();
        assert_eq!(response, Response::Done { id: 1 });
    }

    /// Reads until the server closes the connection; answers how many frames came first.
    async fn frames_until_closed(&mut self) -> usize {
        let mut frames = 0;
        let reading = async {
            while let Some(Ok(_)) = self.0.next().await {
                frames += 1;
            }
        };
        let closed = tokio::time::timeout(PROMPTLY, reading).await;
        closed.expect("the server closes the connection promptly");
        frames
    }
}
