//! A TCP proxy on 127.0.0.1 that breaks the network between a worker and Redis on command.
//!
//! [`Proxy::start`] listens on a free port and forwards every connection to one upstream
//! address. [`Proxy::set`] switches what the network does, for live and new connections alike:
//!
//! - [`Fault::None`]: bytes pass as they come;
//! - [`Fault::Delay`]: every chunk is passed on that much later (in both directions);
//! - [`Fault::BlackHole`]: nothing passes and nothing is answered, but nothing is closed either,
//!   as when a route disappears: bytes wait in the kernel's buffers, new connections are accepted
//!   but not connected upstream. When the fault ends the streams carry on where they stopped,
//!   as TCP does once the route is back;
//! - [`Fault::Reset`]: every live connection is reset (RST to both ends) and new connections
//!   are reset as soon as they are accepted, as when the far end's host restarts.
//!
//! The proxy runs on a thread and runtime of its own, so that a test that blocks its own thread
//! for a moment cannot stall the network it is watching.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// What the network between the proxy's clients and the upstream does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    Delay(Duration),
    BlackHole,
    Reset,
}

/// A running proxy; stopped (every connection closed) on drop.
pub struct Proxy {
    port: u16,
    fault: watch::Sender<Fault>,
    accepted: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` (a loopback address) that passes everything.
    pub fn start(upstream: SocketAddr) -> Proxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only forwards to loopback"
        );
        let listener =
            StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy's listener");
        listener
            .set_nonblocking(true)
            .expect("make the proxy's listener non-blocking");
        let port = listener.local_addr().expect("proxy address").port();
        let (fault, watched) = watch::channel(Fault::None);
        let (stop, stopped) = oneshot::channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the proxy's runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("the proxy's listener");
                tokio::select! {
                    _ = stopped => {}
                    () = accept_loop(listener, upstream, watched, counter) => {}
                }
            });
        });
        Proxy {
            port,
            fault,
            accepted,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `redis://127.0.0.1:<port>/`: where a worker finds Redis through the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Switches the network to `fault`, for live and new connections.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Connections accepted so far (including those reset or held at once).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Receiver<Fault>,
    accepted: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or the like: try again in a moment, not in a busy loop.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(client, upstream, fault.clone()));
    }
}

/// One proxied connection: held while the network is a black hole, then connected upstream and
/// pumped both ways until either end closes or the network resets it.
async fn connection(client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::Reset => return reset(&client),
            Fault::BlackHole => {
                if fault.changed().await.is_err() {
                    return;
                }
            }
            Fault::None | Fault::Delay(_) => break,
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return reset(&client);
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, fault.clone()),
        pump(server_read, client_write, fault),
    );
}

/// Passes bytes from `from` to `to` as the network allows, until end of stream or a reset: a
/// reader puts each chunk on a delay line with the time it is due, a writer passes it on then.
/// A delay is latency, not a throughput limit.
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf, fault: watch::Receiver<Fault>) {
    let (line, due) = mpsc::unbounded_channel();
    tokio::join!(
        read_side(from, line, fault.clone()),
        write_side(due, to, fault)
    );
}

async fn read_side(
    mut from: OwnedReadHalf,
    line: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
    mut fault: watch::Receiver<Fault>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let now = *fault.borrow_and_update();
        let delay = match now {
            Fault::Reset => return reset(from.as_ref()),
            Fault::BlackHole => {
                if fault.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Fault::None => Duration::ZERO,
            Fault::Delay(delay) => delay,
        };
        tokio::select! {
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return, // dropping `line` ends the writer
                Ok(n) => {
                    if line.send((Instant::now() + delay, buffer[..n].to_vec())).is_err() {
                        return;
                    }
                }
            },
        }
    }
}

async fn write_side(
    mut due: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut to: OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
) {
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::Reset => return reset(to.as_ref()),
            Fault::BlackHole => {
                if fault.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Fault::None | Fault::Delay(_) => {}
        }
        tokio::select! {
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            chunk = due.recv() => {
                let Some((at, bytes)) = chunk else {
                    if *fault.borrow() == Fault::Reset {
                        return reset(to.as_ref());
                    }
                    let _ = to.shutdown().await;
                    return;
                };
                tokio::time::sleep_until(at).await;
                if to.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Makes `stream` close with an RST instead of a FIN once it is dropped.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}
