//! The embedded broker, hosted by the test: its server, and the crate's own broker client for
//! the test to act as the backend with.
//!
//! In production the supervisor binds a [`LocalBrokerServer`] and its workers reach it over the
//! Unix socket named in `[broker] socket`. Here the test binds it ([`LocalServer`]) on the
//! test's own actix system, in a temporary directory of its own, before it starts any worker;
//! stopping it (dropping the server's handle) and binding it again on the same path is the
//! embedded broker's restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use rohrpost::broker::local::{LocalBroker, LocalBrokerServer, LocalBrokerServerHandle};
use rohrpost::broker::{Broker, BrokerMessage, IsConnected, Publish, Subscribe};
use rohrpost::topics::Pattern;
use tempfile::TempDir;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::common::WAIT;

/// How often a new subscription is probed until it is live.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long a probe's late copies are waited for once one came back.
const PROBE_DRAIN: Duration = Duration::from_millis(50);

/// An embedded broker server on `<temporary directory>/broker.sock`, shut down on drop.
pub struct LocalServer {
    /// `None` while stopped. Declared before `dir`: the server removes its socket file before
    /// the directory goes.
    handle: Option<LocalBrokerServerHandle>,
    dir: TempDir,
}

impl LocalServer {
    /// Binds a server in a fresh temporary directory.
    pub async fn start() -> LocalServer {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let mut server = LocalServer { handle: None, dir };
        server.restart().await;
        server
    }

    /// The socket workers and the test connect to.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("broker.sock")
    }

    /// Shuts the server down: every client is disconnected, the socket file removed, and the
    /// subscriptions and session records are gone.
    pub fn stop(&mut self) {
        self.handle = None;
    }

    /// Binds the server (again) on its socket.
    pub async fn restart(&mut self) {
        self.stop();
        let handle = LocalBrokerServer::bind(&self.socket())
            .await
            .unwrap_or_else(|e| panic!("bind the embedded broker on {:?}: {e}", self.socket()));
        self.handle = Some(handle);
    }
}

/// A broker client of the crate on the embedded broker at `socket`, delivering what its
/// subscriptions receive to `deliver`; connected on return (bounded by [`WAIT`]).
pub async fn connect<A>(socket: &Path, deliver: A) -> Broker
where
    A: Actor<Context = Context<A>> + Handler<BrokerMessage>,
{
    let addr = LocalBroker::start(socket, deliver.start().recipient());
    let broker = Broker::of(&addr);
    let deadline = Instant::now() + WAIT;
    while !broker.connected.send(IsConnected).await.unwrap_or(false) {
        assert!(
            Instant::now() < deadline,
            "no connection to the embedded broker at {socket:?} within {WAIT:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    broker
}

/// What an embedded broker subscription receives, in order.
pub struct Payloads {
    rx: UnboundedReceiver<Bytes>,
    /// Holds the broker client, and so its subscription, as long as the payloads are read.
    _broker: Broker,
}

impl Payloads {
    /// The next payload as text; `None` when nothing arrives within `window`.
    pub async fn next(&mut self, window: Duration) -> Option<String> {
        let bytes = actix_rt::time::timeout(window, self.rx.recv())
            .await
            .ok()??;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Subscribes to `channel` with a broker client of its own.
///
/// The client confirms nothing, so the subscription counts as live once a probe published on
/// `channel` comes back to it. Probes are marked `fromClient`, so no session ever receives
/// them, and they are dropped here: what is read afterwards is what others published.
pub async fn subscribe(socket: &Path, channel: &str) -> Payloads {
    let (tx, mut rx) = unbounded_channel();
    let broker = connect(socket, Collector(tx)).await;
    let pattern = Pattern::parse(channel, usize::MAX).expect("a valid channel");
    broker.subscribe.do_send(Subscribe(pattern));
    let probe = format!(
        "{{\"fromClient\":true,\"probe\":{}}}",
        rand::random::<u64>()
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let publish = Publish {
            channel: Arc::from(channel),
            payload: Bytes::from(probe.clone()),
        };
        let _ = broker.publish.send(publish).await;
        let got = actix_rt::time::timeout(PROBE_EVERY, rx.recv()).await;
        if let Ok(Some(got)) = got {
            assert_eq!(got, probe.as_bytes(), "only the probe is published yet");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "subscription to {channel} on the embedded broker not live within {WAIT:?}"
        );
    }
    // Later copies of the probe, published before the first came back.
    while let Ok(Some(got)) = actix_rt::time::timeout(PROBE_DRAIN, rx.recv()).await {
        assert_eq!(got, probe.as_bytes(), "only the probe is published yet");
    }
    Payloads {
        rx,
        _broker: broker,
    }
}

/// Forwards what a subscription receives into a channel the test reads.
struct Collector(UnboundedSender<Bytes>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<BrokerMessage> for Collector {
    type Result = ();

    fn handle(&mut self, msg: BrokerMessage, _ctx: &mut Context<Self>) {
        let _ = self.0.send(msg.payload);
    }
}
