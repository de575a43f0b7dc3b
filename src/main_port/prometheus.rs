//! `/metrics` in the Prometheus text exposition format.
//!
//! A handful of families summed over the workers' last status reports; small enough that the
//! format is written out directly rather than through a metrics registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::metrics::Snapshot;
use crate::supervisor::actor::Overview;

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition text: a few families, summed over the workers' last reports.
pub fn render(o: &Overview) -> String {
    let sum = |f: fn(&Snapshot) -> u64| -> u64 { o.workers.iter().map(|w| f(&w.metrics)).sum() };
    let mut out = String::new();

    family(
        &mut out,
        "rohrpost_worker_sessions",
        "gauge",
        "Open sessions per worker.",
    );
    for w in &o.workers {
        let _ = writeln!(
            out,
            "rohrpost_worker_sessions{{worker=\"{}\",port=\"{}\"}} {}",
            w.index, w.port, w.sessions
        );
    }
    family(
        &mut out,
        "rohrpost_messages_in_total",
        "counter",
        "Backend messages received, by path.",
    );
    let _ = writeln!(
        out,
        "rohrpost_messages_in_total{{path=\"broker\"}} {}",
        sum(|m| m.messages_in_broker)
    );
    let _ = writeln!(
        out,
        "rohrpost_messages_in_total{{path=\"http\"}} {}",
        sum(|m| m.messages_in_http)
    );
    family(
        &mut out,
        "rohrpost_messages_out_total",
        "counter",
        "Client messages passed to backends, by path.",
    );
    let _ = writeln!(
        out,
        "rohrpost_messages_out_total{{path=\"broker\"}} {}",
        sum(|m| m.messages_out_broker)
    );
    let _ = writeln!(
        out,
        "rohrpost_messages_out_total{{path=\"http\"}} {}",
        sum(|m| m.messages_out_http)
    );
    family(
        &mut out,
        "rohrpost_delivered_total",
        "counter",
        "Messages handed to client sessions.",
    );
    let _ = writeln!(out, "rohrpost_delivered_total {}", sum(|m| m.delivered));
    family(
        &mut out,
        "rohrpost_backend_errors_total",
        "counter",
        "Backend requests that failed.",
    );
    let _ = writeln!(
        out,
        "rohrpost_backend_errors_total {}",
        sum(|m| m.backend_errors)
    );

    family(
        &mut out,
        "rohrpost_dropped_total",
        "counter",
        "Messages not delivered, by reason.",
    );
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for w in &o.workers {
        for (reason, n) in &w.metrics.drops {
            *totals.entry(reason).or_default() += n;
        }
    }
    for (reason, total) in totals {
        let _ = writeln!(out, "rohrpost_dropped_total{{reason=\"{reason}\"}} {total}");
    }

    for (name, help, value) in [
        (
            "rohrpost_worker_restarts_total",
            "Workers started again (crash and staged restarts).",
            o.counters.restarts,
        ),
        (
            "rohrpost_worker_crashes_total",
            "Workers that exited without being told to.",
            o.counters.crashes,
        ),
        (
            "rohrpost_worker_drains_total",
            "Workers told to drain.",
            o.counters.drains,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}
