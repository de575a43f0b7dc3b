//! A private `redis-server`, for the tests that stop the broker: the shared Redis on
//! 127.0.0.1:6379 is never stopped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BrokerClient;
use crate::common::{free_port, WAIT};

/// A `redis-server` on its own port, without persistence, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub async fn start() -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients); whatever it held is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut redis) = BrokerClient::try_connect(&self.url()).await {
                if redis
                    .try_publish_raw("rohrpost-test.ready", "1")
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within {WAIT:?}",
                self.port
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
