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

/// A counter family with a `reason` label, each reason summed over the workers.
fn by_reason(
    out: &mut String,
    o: &Overview,
    name: &str,
    help: &str,
    counts: fn(&Snapshot) -> &BTreeMap<String, u64>,
) {
    family(out, name, "counter", help);
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for w in &o.workers {
        for (reason, n) in counts(&w.metrics) {
            *totals.entry(reason).or_default() += n;
        }
    }
    for (reason, total) in totals {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {total}");
    }
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

    by_reason(
        &mut out,
        o,
        "rohrpost_dropped_total",
        "Messages not delivered, by reason.",
        |m| &m.drops,
    );
    by_reason(
        &mut out,
        o,
        "rohrpost_forced_closes_total",
        "Sessions the server closed itself, by reason (rate_limit: 1008, slow_consumer: 1013).",
        |m| &m.forced_closes,
    );
    by_reason(
        &mut out,
        o,
        "rohrpost_refused_sessions_total",
        "New sessions refused with close 1013, by reason (worker_full: limits.max_sessions_per_worker, address_full: limits.max_sessions_per_ip; draining: close 1012, or 100 in legacy mode, from a worker about to restart).",
        |m| &m.refused_sessions,
    );

    family(
        &mut out,
        "rohrpost_http_backend_latency_seconds",
        "histogram",
        "Time from a client message to its HTTP backend answer (or failure).",
    );
    let mut buckets = [0u64; crate::metrics::HTTP_LATENCY_BUCKETS.len() + 1];
    for w in &o.workers {
        for (total, n) in buckets.iter_mut().zip(&w.metrics.http_latency_buckets) {
            *total += n;
        }
    }
    let mut cumulative = 0;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let le = crate::metrics::HTTP_LATENCY_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "rohrpost_http_backend_latency_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "rohrpost_http_backend_latency_seconds_sum {}",
        sum(|m| m.http_latency_sum_us) as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "rohrpost_http_backend_latency_seconds_count {}",
        sum(|m| m.http_latency_count)
    );

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::actor::{SlotState, SupervisorCounters, WorkerStatus};

    fn worker(index: usize, sessions: usize, delivered: u64, latency: Vec<u64>) -> WorkerStatus {
        WorkerStatus {
            index,
            port: 3001 + index as u16,
            state: SlotState::Ready,
            sessions,
            pid: None,
            generation: 1,
            metrics: Snapshot {
                delivered,
                drops: [("not_whitelisted".to_string(), 2)].into_iter().collect(),
                http_latency_buckets: latency,
                http_latency_sum_us: 1500,
                http_latency_count: 2,
                ..Snapshot::default()
            },
        }
    }

    #[test]
    fn workers_are_summed_and_histograms_cumulative() {
        let mut first = vec![0; 13];
        first[0] = 1;
        let mut second = vec![0; 13];
        second[3] = 1;
        let overview = Overview {
            workers: vec![worker(0, 3, 10, first), worker(1, 4, 5, second)],
            counters: SupervisorCounters {
                restarts: 1,
                ..SupervisorCounters::default()
            },
            rolling: false,
        };
        let text = render(&overview);
        assert!(text.contains("rohrpost_worker_sessions{worker=\"1\",port=\"3002\"} 4"));
        assert!(text.contains("rohrpost_delivered_total 15"));
        assert!(text.contains("rohrpost_dropped_total{reason=\"not_whitelisted\"} 4"));
        assert!(text.contains("rohrpost_http_backend_latency_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("rohrpost_http_backend_latency_seconds_bucket{le=\"0.01\"} 2"));
        assert!(text.contains("rohrpost_http_backend_latency_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("rohrpost_http_backend_latency_seconds_count 4"));
        assert!(text.contains("rohrpost_worker_restarts_total 1"));
        assert!(text.contains("# TYPE rohrpost_http_backend_latency_seconds histogram"));
    }
}
