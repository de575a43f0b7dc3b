//! A private `redis-server`, for the tests that stop the broker: the shared Redis on
//! 127.0.0.1:6379 is never stopped.
//!
//! It needs nothing of the suite that includes it but [`crate::common`], so that a suite with
//! clients of its own (the delivery suite) can run one too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, WAIT};

/// The file a server with a data directory saves to and loads from.
const DUMP: &str = "dump.rdb";

/// A `redis-server` on its own port, killed on drop. It never saves by itself; one with a data
/// directory saves when told to ([`RedisServer::save`]) and loads that when it starts again.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: Option<PathBuf>,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl RedisServer {
    /// Starts a server without persistence on a free port and waits until it answers.
    pub async fn start() -> RedisServer {
        Self::start_on(free_port(), None).await
    }

    /// Starts a server on `port` and waits until it answers; with `dir`, it keeps what
    /// [`RedisServer::save`] saves there across restarts.
    #[allow(dead_code)] // used by test/delivery.rs
    pub async fn start_on(port: u16, dir: Option<&Path>) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port,
            dir: dir.map(Path::to_owned),
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients, no last save); whatever it held and
    /// had not saved is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SAVE`: writes everything the server holds to its data directory, at once.
    #[allow(dead_code)] // used by test/delivery.rs
    pub async fn save(&self) {
        assert!(self.dir.is_some(), "a server without a data directory");
        let client = redis::Client::open(self.url()).expect("the Redis URL parses");
        let mut conn = actix_rt::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .expect("a connection to the private Redis within the wait")
            .expect("a connection to the private Redis");
        let save = redis::cmd("SAVE");
        actix_rt::time::timeout(WAIT, save.query_async::<String>(&mut conn))
            .await
            .expect("SAVE within the wait")
            .expect("SAVE");
    }

    /// Starts the server (again) on its port and waits until it answers (with its saved data
    /// loaded, if it has a data directory).
    pub async fn restart(&mut self) {
        self.stop();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]);
        if let Some(dir) = &self.dir {
            command.arg("--dir").arg(dir).args(["--dbfilename", DUMP]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !answers(&self.url()).await {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within {WAIT:?}",
                self.port
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether the Redis at `url` answers `PING` (not while it is still loading its data).
async fn answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let connecting = client.get_multiplexed_async_connection();
    let Ok(Ok(mut conn)) = actix_rt::time::timeout(WAIT, connecting).await else {
        return false;
    };
    let ping = redis::cmd("PING");
    let pong = actix_rt::time::timeout(WAIT, ping.query_async::<String>(&mut conn));
    matches!(pong.await, Ok(Ok(_)))
}
