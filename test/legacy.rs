//! Legacy mode (`compat.legacy_handshake = true`): Rohrpost 0.x clients and backends on the real
//! supervisor and workers, with the shared Redis on 127.0.0.1:6379 as broker, backend and the
//! original server's session store.
//!
//! The 0.x client ([`client_0x`]) speaks as the original's browser client does over
//! sockjs-client (framed SockJS websocket, its own session id, `ok:<id>`); modern clients are the
//! supervisor suite's. The behaviours:
//! - [`connect`]: `/connect` while no worker can take a session;
//! - [`restarts`]: restarts and drains;
//! - [`sessions`]: 0.x sessions' ids, their data, and the original's session records ([`store`]).

#[path = "common/mod.rs"]
#[allow(unused_imports)]
mod common;

#[path = "supervisor/backend.rs"]
#[allow(dead_code)]
mod backend;
#[path = "supervisor/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "supervisor/main_port.rs"]
#[allow(dead_code)]
mod main_port;
#[path = "supervisor/ports.rs"]
#[allow(dead_code)]
mod ports;
#[path = "supervisor/process.rs"]
#[allow(dead_code)]
mod process;

#[path = "legacy/client_0x.rs"]
#[allow(dead_code)]
mod client_0x;
#[path = "legacy/store.rs"]
mod store;

#[path = "legacy/connect.rs"]
mod connect;
#[path = "legacy/restarts.rs"]
mod restarts;
#[path = "legacy/sessions.rs"]
mod sessions;

/// The configuration that turns legacy mode on.
const LEGACY: &str = "[compat]\nlegacy_handshake = true\n";

/// The close code and reason a 0.x session gets when its worker restarts (the original's).
const RESTART_100: (u16, &str) = (100, "This server is terminating - please reconnect");

/// A fresh session id of the kind the 0.x client makes up (`Math.random().toString(36)`).
fn client_id() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..12)
        .map(|_| char::from(DIGITS[rand::random_range(0..DIGITS.len())]))
        .collect()
}

/// Options of a supervisor of one worker in legacy mode.
fn legacy() -> process::Options {
    process::Options {
        extra_config: LEGACY.to_owned(),
        ..process::Options::default()
    }
}
