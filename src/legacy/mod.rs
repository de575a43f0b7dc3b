//! Rohrpost 0.x compatibility (`compat.legacy_handshake = true`): what lets pages running the
//! original server's browser client, and backends written for it, move to this server without
//! being changed first.
//!
//! What legacy mode changes, each where it belongs:
//! - **The handshake** (`crate::protocol::parse_hello`): a first message that is no JSON object
//!   names the client's session ([`id`]); the session answers `ok:<id>` instead of a welcome.

pub mod id;
