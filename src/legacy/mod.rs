//! Rohrpost 0.x compatibility (`compat.legacy_handshake = true`): what lets pages running the
//! original server's browser client, and backends written for it, move to this server without
//! being changed first.
//!
//! What legacy mode changes, each where it belongs:
//! - **The handshake** (`crate::protocol::parse_hello`): a first message that is no JSON object
//!   names the client's session ([`id`]); the session answers `ok:<id>` instead of a welcome.
//! - **Session records** ([`record`]): the original kept each session in a Redis hash
//!   `session:<id>`. A 0.x session starts from that record when Rohrpost has none (or when a 0.x
//!   server changed it after Rohrpost last wrote it), and every time Rohrpost stores a 0.x
//!   session's record it writes that hash too, so 0.x servers sharing the Redis during a rolling
//!   migration see the session as Rohrpost left it. Only the Redis broker keeps them.
//! - **New sessions' data** is `{}`, not `null`, as the original sent it to backends.
//! - **Restarts** close 0.x sessions with [`RESTART`], the one code the 0.x client reconnects
//!   on at once, instead of `1012` (`crate::worker::control`).
//! - **`/connect`** answers `404` with [`NO_WORKER`] when no worker can take a session, instead
//!   of `503`: the 0.x client retries only on `404` (`crate::main_port`).

pub mod id;
pub mod record;

/// Close code and reason of a 0.x session whose worker drains: the original's. The 0.x client
/// reconnects at once on code 100 only (it backs off on unclean closes and gives up on other
/// clean ones); Rohrpost's own client reconnects at once on it too.
pub const RESTART: (u16, &str) = (100, "This server is terminating - please reconnect");

/// The body of `/connect`'s `404` while no worker can take a session, as the original's.
pub const NO_WORKER: &str = "No connection available";
