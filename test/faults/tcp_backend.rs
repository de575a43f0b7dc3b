//! An HTTP backend that misbehaves at the TCP level, where a well-behaved HTTP server (like the
//! messaging suite's `Backend`) cannot: it accepts a request and never answers, closes the
//! connection without a word, or resets it. It counts the connections open at once, so a test
//! can check that a worker never holds more than `http.max_in_flight` of them.
//!
//! It runs on a thread and runtime of its own, like the proxy, and listens on 127.0.0.1.

use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// Longest request head read.
const MAX_HEAD: usize = 64 * 1024;

/// What the backend does with the next connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads the request and never answers; holds the connection until the client closes it.
    Hang,
    /// Closes the connection as soon as it is accepted (a FIN, nothing read).
    Close,
    /// Reads the request, then resets the connection (an RST).
    Reset,
    /// Reads the request and answers `200 {"data": "ok"}`, then closes.
    Answer,
}

/// Counters of what the backend saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests whose head was read.
    requests: AtomicUsize,
    /// Connections open right now.
    open: AtomicUsize,
    /// The most connections ever open at once.
    max_open: AtomicUsize,
}

/// A running backend; stopped (every connection closed) on drop.
pub struct TcpBackend {
    port: u16,
    behaviour: watch::Sender<Behaviour>,
    stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl TcpBackend {
    pub fn start(behaviour: Behaviour) -> TcpBackend {
        let listener =
            StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the backend's listener");
        listener
            .set_nonblocking(true)
            .expect("make the backend's listener non-blocking");
        let port = listener.local_addr().expect("backend address").port();
        let (behaviour, watched) = watch::channel(behaviour);
        let (stop, stopped) = oneshot::channel();
        let stats = Arc::new(Stats::default());
        let counters = stats.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the backend's runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("the backend's listener");
                tokio::select! {
                    _ = stopped => {}
                    () = serve(listener, watched, counters) => {}
                }
            });
        });
        TcpBackend {
            port,
            behaviour,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The URL for a rule: requests go to `<url>/<topic>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.behaviour.send_replace(behaviour);
    }

    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }

    pub fn max_open(&self) -> usize {
        self.stats.max_open.load(Ordering::SeqCst)
    }
}

async fn serve(listener: TcpListener, behaviour: watch::Receiver<Behaviour>, stats: Arc<Stats>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let now = *behaviour.borrow();
        tokio::spawn(connection(stream, now, stats.clone()));
    }
}

/// Counts a connection as open while it lives.
struct Open(Arc<Stats>);

impl Open {
    fn new(stats: Arc<Stats>) -> Open {
        let now = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_open.fetch_max(now, Ordering::SeqCst);
        Open(stats)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn connection(mut stream: TcpStream, behaviour: Behaviour, stats: Arc<Stats>) {
    let open = Open::new(stats);
    if behaviour == Behaviour::Close {
        return;
    }
    let Some(body_length) = read_head(&mut stream).await else {
        return;
    };
    open.0.requests.fetch_add(1, Ordering::SeqCst);
    match behaviour {
        Behaviour::Close => {}
        Behaviour::Reset => {
            let _ = stream.set_zero_linger();
        }
        Behaviour::Hang => {
            // Until the client gives up and closes.
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Behaviour::Answer => {
            let mut body = vec![0u8; body_length];
            if stream.read_exact(&mut body).await.is_err() {
                return;
            }
            let answer = r#"{"data": "ok"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Reads a request head (what follows it stays unread); returns its `Content-Length`.
async fn read_head(stream: &mut TcpStream) -> Option<usize> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || !matches!(stream.read(&mut byte).await, Ok(1)) {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    Some(length)
}
