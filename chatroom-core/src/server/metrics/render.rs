//! The Prometheus text exposition format (version 0.0.4) of [`Counters`]:
//! `# HELP` and `# TYPE` once per family, then one sample per line.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::history::{COMMIT_BUCKETS, CommitSnapshot};

use super::{Counters, DIALECTS, END_REASONS, REFUSALS, Readings};

/// The media type of what [`render`] writes, for the `Content-Type` header.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out, name }
    }

    fn sample(&mut self, value: u64) {
        let _ = writeln!(self.out, "{} {value}", self.name);
    }

    fn labelled(&mut self, label: &str, value_of_label: &str, value: u64) {
        // Label values are fixed words of this module: nothing to escape.
        let _ = writeln!(
            self.out,
            "{}{{{label}=\"{value_of_label}\"}} {value}",
            self.name
        );
    }

    fn by(&mut self, label: &str, names: &[&str], values: &[AtomicU64]) {
        for (name, value) in names.iter().zip(values) {
            self.labelled(label, name, value.load(Relaxed));
        }
    }
}

/// Writes every counter, the readiness checks, the build information, the
/// queues' depths and, for a store or broker that reports them, its
/// commit or publish times.
pub(crate) fn render(c: &Counters, readings: &Readings) -> String {
    let ready = readings.ready;
    let mut out = String::with_capacity(4096);
    let o = &mut out;
    Family::new(
        o,
        "chatroom_build_info",
        "gauge",
        "Always 1; the labels name the build.",
    )
    .labelled("version", env!("CARGO_PKG_VERSION"), 1);
    Family::new(
        o,
        "chatroom_ready",
        "gauge",
        "1 when the server is ready to serve (see /readyz), else 0.",
    )
    .sample(u64::from(ready));
    Family::new(
        o,
        "chatroom_connections",
        "gauge",
        "Chat sessions open now, by dialect.",
    )
    .by("dialect", &DIALECTS, &c.open);
    Family::new(
        o,
        "chatroom_connections_total",
        "counter",
        "Chat sessions started (handshake done), by dialect.",
    )
    .by("dialect", &DIALECTS, &c.opened);
    Family::new(
        o,
        "chatroom_disconnects_total",
        "counter",
        "Chat sessions ended, by reason.",
    )
    .by("reason", &END_REASONS, &c.ended);
    Family::new(
        o,
        "chatroom_connections_refused_total",
        "counter",
        "Connections turned away before a session started, by limit.",
    )
    .by("reason", &REFUSALS, &c.refused);
    let plain: [(&'static str, &str, &AtomicU64); 8] = [
        ("chatroom_joins_total", "Rooms joined.", &c.joins),
        (
            "chatroom_leaves_total",
            "Rooms left, on request or by disconnecting.",
            &c.leaves,
        ),
        (
            "chatroom_messages_in_total",
            "Room messages accepted from clients.",
            &c.messages_in,
        ),
        (
            "chatroom_messages_delivered_total",
            "Copies of room messages queued for members on this node.",
            &c.delivered,
        ),
        (
            "chatroom_messages_held_back_total",
            "Copies of room messages held back from members whose queue was full; they are caught up later.",
            &c.held_back,
        ),
        (
            "chatroom_lag_events_total",
            "Times a session fell behind and was sent lagged notices and caught up.",
            &c.lagged,
        ),
        (
            "chatroom_rate_limited_total",
            "Frames refused with rate_limited.",
            &c.rate_limited,
        ),
        (
            "chatroom_publish_errors_total",
            "Room messages that could not be published (store or broker unavailable).",
            &c.publish_errors,
        ),
    ];
    for (name, help, value) in plain {
        Family::new(o, name, "counter", help).sample(value.load(Relaxed));
    }
    let queues = [
        (
            "chatroom_outbox_bytes",
            "Bytes queued for clients and not yet written, in all sessions' queues.",
            readings.outbox_bytes,
        ),
        (
            "chatroom_outbox_largest_bytes",
            "Bytes queued in the fullest session's queue (outbox_bytes is its limit).",
            readings.outbox_largest,
        ),
        (
            "chatroom_queue_budget_reserved_bytes",
            "Bytes of queue_budget_bytes the sessions' queues hold; at the budget, room traffic is held back.",
            readings.queue_budget_reserved,
        ),
        (
            "chatroom_queue_budget_peak_bytes",
            "The most of queue_budget_bytes the sessions' queues held at once since the server started.",
            readings.queue_budget_peak,
        ),
    ];
    for (name, help, bytes) in queues {
        Family::new(o, name, "gauge", help).sample(bytes as u64);
    }
    if let Some(queued) = readings.history_queued {
        Family::new(
            o,
            "chatroom_history_queue",
            "gauge",
            "Messages waiting for the history store to commit them.",
        )
        .sample(queued as u64);
    }
    if let Some(commits) = &readings.commits {
        histogram(
            o,
            "chatroom_history_commit_seconds",
            "Time the history store took to commit a batch of appended messages.",
            commits,
        );
    }
    if let Some(publishes) = &readings.publishes {
        histogram(
            o,
            "chatroom_broker_publish_seconds",
            "Time from queueing a room message for NATS to JetStream's acknowledgement.",
            publishes,
        );
    }
    out
}

/// Times in [`COMMIT_BUCKETS`] as a Prometheus histogram.
fn histogram(out: &mut String, name: &'static str, help: &str, times: &CommitSnapshot) {
    Family::new(out, name, "histogram", help);
    for (bound, count) in COMMIT_BUCKETS.iter().zip(&times.at_most) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", times.count);
    let _ = writeln!(out, "{name}_sum {}", times.sum_secs);
    let _ = writeln!(out, "{name}_count {}", times.count);
}
