//! The supervisor's side of a running server: the handle, the accept loop, and the socket
//! file's life (stale ones replaced, ours removed on shutdown).

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::{check_body, check_name, LocalBrokerServer, PublishFromSupervisor, Stop};
use crate::broker::local::connection;
use crate::broker::log::Position;
use crate::broker::BrokerError;

/// The pause after a failed `accept` (out of file descriptors, say) before the next one.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The supervisor's hold on a running local broker server; dropping it shuts the server down.
pub struct LocalBrokerServerHandle {
    pub(super) path: PathBuf,
    pub(super) server: Addr<LocalBrokerServer>,
    /// Cancelled on shutdown: ends the accept loop and, through child tokens, every connection.
    pub(super) stop: CancellationToken,
    /// (device, inode) of the socket file bound, so that shutting down never removes a socket
    /// file that another server has bound at the same path since.
    pub(super) socket_file: (u64, u64),
}

impl LocalBrokerServerHandle {
    /// Where the socket is: what workers connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Publishes `payload` on `channel` as if a client had (for the supervisor's HTTP API),
    /// through the publication log when `logged` (and history is enabled); answers the
    /// position it got, if logged.
    pub async fn publish(
        &self,
        channel: &str,
        payload: Bytes,
        logged: bool,
    ) -> Result<Option<Position>, BrokerError> {
        if let Err(reason) = check_name("channel", channel).and_then(|()| check_body(&payload)) {
            return Err(BrokerError::Server(reason));
        }
        let publish = PublishFromSupervisor {
            channel: Arc::from(channel),
            payload,
            logged,
        };
        (self.server.send(publish).await)
            .map_err(|_| BrokerError::Unavailable("the local broker server stopped".into()))?
            .map_err(BrokerError::Server)
    }

    /// Stops the server: no more connections, every client disconnected, the actor stopped,
    /// the socket file removed. The same as dropping the handle; this names the intent.
    pub fn shutdown(self) {}
}

impl Drop for LocalBrokerServerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
        self.server.do_send(Stop);
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|file| (file.dev(), file.ino()) == self.socket_file);
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                log::warn!(
                    "local broker socket not removed path={} error={e}",
                    self.path.display()
                );
            }
        }
        log::info!("local broker shutting down path={}", self.path.display());
    }
}

/// Removes a socket file at `path` that no server listens on any more.
pub(super) fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let file = match fs::symlink_metadata(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let shown = path.display();
    if !file.file_type().is_socket() {
        let e = format!("{shown} exists and is not a socket; not replacing it");
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, e));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        let e = format!("another local broker server is listening on {shown}");
        return Err(io::Error::new(io::ErrorKind::AddrInUse, e));
    }
    log::info!("local broker removing stale socket path={shown}");
    fs::remove_file(path)
}

/// Accepts connections until `stop` is cancelled, each served by a task of its own.
pub(super) async fn accept(
    listener: UnixListener,
    server: Addr<LocalBrokerServer>,
    stop: CancellationToken,
    queue_bytes: usize,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let serving =
                    connection::serve(stream, server.clone(), stop.child_token(), queue_bytes);
                actix_rt::spawn(serving);
            }
            Err(e) => {
                log::warn!("local broker accept failed error={e}");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_PAUSE) => {}
                }
            }
        }
    }
}
