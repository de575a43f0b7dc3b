//! A block of consecutive free ports for one supervisor: the main port, then one per worker.
//!
//! The block is taken below the kernel's ephemeral range (`ip_local_port_range`). A worker that is
//! restarted gives its port up for a moment; inside the ephemeral range, any outgoing connection
//! of the test (hundreds of websockets) could be handed that port as its source port meanwhile,
//! and the new worker would fail to bind.

use std::net::TcpListener;

/// Lowest port a block may start at.
const LOWEST: u16 = 10_000;
/// Where the ephemeral range starts when the kernel does not say.
const EPHEMERAL_START: u16 = 32_768;
/// Blocks tried before giving up.
const ATTEMPTS: usize = 200;

/// `main` and the `workers` ports after it, all free when the block was found.
#[derive(Debug, Clone, Copy)]
pub struct PortBlock {
    pub main: u16,
    pub workers: u16,
}

impl PortBlock {
    /// A free block for a supervisor of `workers` workers.
    pub fn find(workers: u16) -> PortBlock {
        let below = ephemeral_start().saturating_sub(workers + 1);
        for _ in 0..ATTEMPTS {
            let main = rand::random_range(LOWEST..below);
            let block = PortBlock { main, workers };
            if block.all().all(is_free) {
                return block;
            }
        }
        panic!("no free block of {} ports below {below}", workers + 1);
    }

    /// One free port below the ephemeral range, for a server a test stops and starts again on
    /// the same port (a private Redis), for the same reason as worker ports.
    #[allow(dead_code)] // used by test/delivery.rs
    pub fn single() -> u16 {
        PortBlock::find(0).main
    }

    /// The port of worker `index`.
    pub fn worker(&self, index: u16) -> u16 {
        assert!(index < self.workers, "worker {index} of {}", self.workers);
        self.main + 1 + index
    }

    /// Every port of the block.
    pub fn all(&self) -> impl Iterator<Item = u16> {
        self.main..=self.main + self.workers
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_START)
}
