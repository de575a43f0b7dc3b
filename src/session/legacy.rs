//! The 0.x side of a Rohrpost session (legacy mode): which client a session speaks to when a
//! drain asks.

use super::{Phase, RohrpostSession};

impl RohrpostSession {
    /// Whether the session's client is a 0.x one, or may be one: in legacy mode, a client that
    /// has not said hello yet.
    pub(super) fn speaks_legacy(&self) -> bool {
        match &self.phase {
            Phase::AwaitingHello => self.settings().legacy_handshake,
            Phase::Resuming { legacy, .. } => *legacy,
            Phase::Joining { start, .. } => start.legacy,
            Phase::Established(session) => session.legacy,
            Phase::Closed => false,
        }
    }
}
