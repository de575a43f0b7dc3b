//! The control channel between the supervisor and its workers.
//!
//! The supervisor starts each worker with its standard input and output as pipes. The worker
//! writes one JSON [`WorkerEvent`] per line to stdout (its logs go to stderr); the supervisor
//! writes one JSON [`Command`] per line to the worker's stdin. When the supervisor dies, the
//! worker reads end-of-file on stdin and drains and exits by itself: never an orphan.

use serde::{Deserialize, Serialize};

use crate::metrics::Snapshot;

/// What a worker tells its supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Listening and serving.
    Ready { port: u16, version: String },
    /// Periodic status: open sessions and counters.
    Status {
        sessions: usize,
        draining: bool,
        metrics: Snapshot,
    },
    /// Draining: sessions were told to reconnect elsewhere; the worker exits when they are gone.
    Draining { sessions: usize },
}

/// What the supervisor tells a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Close every session with the restart code and exit once they are gone.
    Drain,
}

/// One line of the channel.
pub fn encode<T: Serialize>(message: &T) -> String {
    let mut line = serde_json::to_string(message).unwrap_or_default();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_tagged_json_lines() {
        let event = WorkerEvent::Status {
            sessions: 3,
            draining: false,
            metrics: Snapshot::default(),
        };
        let line = encode(&event);
        assert!(line.starts_with("{\"event\":\"status\""));
        assert!(line.ends_with('\n'));
        let back: WorkerEvent = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(back, event);
        let drain: Command = serde_json::from_str(r#"{"command":"drain"}"#).unwrap();
        assert_eq!(drain, Command::Drain);
    }
}
