//! The worker's side of the control channel (see [`crate::control`]).
//!
//! Reports `ready` once, then a `status` line every second; reads commands from stdin. A `drain`
//! command, or end-of-file on stdin (the supervisor is gone), drains the worker: every session is
//! closed with `1012 Service Restart` (in legacy mode 0.x sessions with their own code, see
//! [`drain_closes`]) so that clients reconnect at once through `/connect`, and the worker exits
//! when its sessions are gone or after `workers.drain_timeout`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use bytes::Bytes;
use log::{info, warn};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::broker::{Announce, Cluster, Withdraw};
use crate::cluster::{self, WorkerEntry};
use crate::control::{encode, Command, WorkerEvent};
use crate::http_backend::{HttpBackend, InFlight};
use crate::legacy;
use crate::metrics;
use crate::pending;
use crate::router::{Router, ShareProgress};
use crate::sockjs::{Drain, Endpoint};

/// Close code and reason telling clients to reconnect at once, elsewhere.
pub const SERVICE_RESTART: (u16, &str) = (1012, "Service Restart");

/// How a worker's endpoint drains. Every session is closed with [`SERVICE_RESTART`], except
/// that in legacy mode 0.x sessions, and sessions that have not said yet which client they
/// are, get [`legacy::RESTART`] (the session decides: `RohrpostSession`'s `drain_close`). New
/// sessions arriving meanwhile are refused before they say anything, so in legacy mode they
/// get `legacy::RESTART` too: 0.x clients on sockjs-client 1.x would take 1012 for a clean
/// close and give up for good, and every client Rohrpost ships reconnects at once on 100 too.
pub fn drain_closes(legacy_handshake: bool) -> Drain {
    Drain {
        close: SERVICE_RESTART,
        refuse: if legacy_handshake {
            legacy::RESTART
        } else {
            SERVICE_RESTART
        },
    }
}
/// Interval of status reports.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Pause before a drained worker exits, for the broker connection to send what it was given.
const BROKER_FLUSH: Duration = Duration::from_millis(200);
/// Interval of session counts while draining.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Starts the control tasks on the current thread. With `announce`, the worker also keeps its
/// entry in the cluster directory under its URL; `drain` says how its sessions are closed.
#[allow(clippy::too_many_arguments)]
pub fn start(
    endpoint: Endpoint,
    drain: Drain,
    http: actix::Addr<HttpBackend>,
    router: actix::Addr<Router>,
    server: ServerHandle,
    port: u16,
    drain_timeout: Duration,
    announce: Option<(Cluster, String)>,
) {
    let (lines, mut outbox) = mpsc::unbounded_channel::<String>();
    // One writer, so lines never interleave.
    actix_rt::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = outbox.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let _ = lines.send(encode(&WorkerEvent::Ready {
        port,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }));

    let (drain_tx, mut drain_rx) = mpsc::channel::<&'static str>(1);
    let reader_drain = drain_tx.clone();
    actix_rt::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        loop {
            match stdin.next_line().await {
                Ok(Some(line)) => match serde_json::from_str::<Command>(&line) {
                    Ok(Command::Drain) => {
                        let _ = reader_drain.send("drain command").await;
                    }
                    Err(e) => warn!("control: unknown command line={line:?} error={e}"),
                },
                Ok(None) | Err(_) => {
                    let _ = reader_drain.send("supervisor gone").await;
                    return;
                }
            }
        }
    });

    actix_rt::spawn(async move {
        let mut draining = false;
        let mut status = tokio::time::interval(STATUS_EVERY);
        loop {
            tokio::select! {
                _ = status.tick() => {
                    let sessions = endpoint.session_count().await;
                    let _ = lines.send(encode(&WorkerEvent::Status {
                        sessions,
                        draining,
                        metrics: metrics::snapshot(),
                    }));
                    if let Some((cluster, url)) = &announce {
                        let entry = WorkerEntry {
                            url: url.clone(),
                            sessions,
                            draining,
                            seen_ms: cluster::now_ms(),
                        };
                        cluster.announce.do_send(Announce {
                            url: Arc::from(url.as_str()),
                            entry: Bytes::from(serde_json::to_vec(&entry).unwrap_or_default()),
                        });
                    }
                }
                Some(why) = drain_rx.recv(), if !draining => {
                    draining = true;
                    // Every session tells its client how far it is caught up, before the close.
                    let _ = router.send(ShareProgress).await;
                    let told = endpoint.drain(drain).await;
                    info!("worker draining reason={why:?} sessions={told}");
                    let _ = lines.send(encode(&WorkerEvent::Draining { sessions: told }));
                    let endpoint = endpoint.clone();
                    let server = server.clone();
                    let announce = announce.clone();
                    let http = http.clone();
                    actix_rt::spawn(async move {
                        let deadline = tokio::time::Instant::now() + drain_timeout;
                        loop {
                            let left = endpoint.session_count().await;
                            // Requests the last sessions started still finish before the exit,
                            // and so do the publishes of their messages and answers.
                            let open = http.send(InFlight).await.unwrap_or(0) + pending::count();
                            if (left == 0 && open == 0) || tokio::time::Instant::now() >= deadline {
                                // Let the broker write out the last publishes.
                                tokio::time::sleep(BROKER_FLUSH).await;
                                info!("worker drained sessions_left={left} http_in_flight={open}");
                                if let Some((cluster, url)) = &announce {
                                    let withdraw = Withdraw { urls: vec![url.clone()] };
                                    let _ = cluster.withdraw.send(withdraw).await;
                                }
                                break;
                            }
                            tokio::time::sleep(DRAIN_POLL).await;
                        }
                        server.stop(true).await;
                    });
                }
            }
        }
    });
    drop(drain_tx);
}
