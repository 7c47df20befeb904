//! The engine's counters, and their Prometheus text exposition
//! ([`render`]).
//!
//! Every counter is a plain atomic, changed with relaxed ordering: a scrape
//! reads each value on its own and needs no snapshot across them. Nothing
//! here is touched once per recipient of a message: deliveries are added
//! once per room message, with the number of members it reached, so the
//! fan-out loop stays free of shared cache lines. No label carries a nick,
//! a room or a message: every label takes one of a few fixed values.
//!
//! May import the server's own small types (the dialect); never the
//! registry, the transport or a socket.

mod render;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::writer::Dialect;

pub(crate) use render::{CONTENT_TYPE, render};

use crate::history::CommitSnapshot;

/// What a scrape reads besides the counters: gauges and histograms kept
/// by the parts they describe, read only when `/metrics` is asked for.
#[derive(Debug, Default)]
pub(crate) struct Readings {
    /// Whether `/readyz` would answer 200.
    pub(crate) ready: bool,
    /// Bytes queued for clients, in all sessions' queues.
    pub(crate) outbox_bytes: usize,
    /// Bytes queued in the fullest session's queue.
    pub(crate) outbox_largest: usize,
    /// Bytes of `queue_budget_bytes` the sessions' queues hold.
    pub(crate) queue_budget_reserved: usize,
    /// The most they held at once.
    pub(crate) queue_budget_peak: usize,
    /// Appends the history store has yet to commit, if it commits in the
    /// background.
    pub(crate) history_queued: Option<usize>,
    /// The history store's commit times, if it reports them.
    pub(crate) commits: Option<CommitSnapshot>,
    /// How long the broker's publishes took to be acknowledged (cluster
    /// mode).
    pub(crate) publishes: Option<CommitSnapshot>,
}

/// The dialects as they appear in the `dialect` label, in slot order.
const DIALECTS: [&str; 3] = ["native", "text", "irc"];

/// Why sessions end, as they appear in the `reason` label.
pub(crate) const END_REASONS: [&str; 13] = [
    "peer_closed",
    "quit",
    "read_failed",
    "write_failed",
    "slow_consumer",
    "nick_lost",
    "killed",
    "too_many_errors",
    "idle_timeout",
    "handshake_timeout",
    "unsupported_version",
    "late_hello",
    "shutdown",
];

/// Why connections are turned away before a session starts, as they
/// appear in the `reason` label.
const REFUSALS: [&str; 3] = ["server_full", "too_many_connections", "connecting_too_fast"];

/// Why a connection was turned away at the door.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused {
    /// `max_connections` was reached.
    ServerFull,
    /// `max_connections_per_ip` was reached.
    TooMany,
    /// `connect_rate_per_ip` was exceeded.
    TooFast,
}

fn slot(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Native => 0,
        Dialect::Text => 1,
    }
}

/// The IRC listener's sessions, which have a writer of their own and no
/// [`Dialect`].
const IRC_SLOT: usize = 2;

/// The counters of one engine, shared by all its sessions.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Sessions open now, by dialect (a gauge).
    open: [AtomicU64; DIALECTS.len()],
    /// Sessions started since the engine began, by dialect.
    opened: [AtomicU64; DIALECTS.len()],
    /// Sessions ended, by [`END_REASONS`].
    ended: [AtomicU64; END_REASONS.len()],
    /// Connections turned away, by [`REFUSALS`].
    refused: [AtomicU64; REFUSALS.len()],
    joins: AtomicU64,
    leaves: AtomicU64,
    /// Room messages accepted from clients.
    messages_in: AtomicU64,
    /// Copies of room messages handed to members' queues.
    delivered: AtomicU64,
    /// Copies held back from members whose queue was full.
    held_back: AtomicU64,
    /// Times a session found itself behind and was caught up.
    lagged: AtomicU64,
    /// Frames refused by `rate_per_sec`.
    rate_limited: AtomicU64,
    /// `say`s the broker (or store) refused.
    publish_errors: AtomicU64,
}

impl Counters {
    /// A session finished its handshake.
    pub(crate) fn connected(&self, dialect: Dialect) {
        self.opened_in(slot(dialect));
    }

    /// A session that [`connected`](Self::connected) ended, for `reason`
    /// (one of [`END_REASONS`]).
    pub(crate) fn disconnected(&self, dialect: Dialect, reason: &str) {
        self.closed_in(slot(dialect), reason);
    }

    /// An IRC client registered.
    pub(crate) fn irc_connected(&self) {
        self.opened_in(IRC_SLOT);
    }

    /// A registered IRC client's session ended, for `reason` (one of
    /// [`END_REASONS`]).
    pub(crate) fn irc_disconnected(&self, reason: &str) {
        self.closed_in(IRC_SLOT, reason);
    }

    fn opened_in(&self, slot: usize) {
        self.open[slot].fetch_add(1, Relaxed);
        self.opened[slot].fetch_add(1, Relaxed);
    }

    fn closed_in(&self, slot: usize, reason: &str) {
        self.open[slot].fetch_sub(1, Relaxed);
        if let Some(i) = END_REASONS.iter().position(|r| *r == reason) {
            self.ended[i].fetch_add(1, Relaxed);
        }
    }

    /// A connection was turned away.
    pub(crate) fn refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// A member joined `n` rooms.
    pub(crate) fn joined(&self, n: u64) {
        self.joins.fetch_add(n, Relaxed);
    }

    /// A member left `n` rooms (by request, or all of them as it went).
    pub(crate) fn left(&self, n: u64) {
        self.leaves.fetch_add(n, Relaxed);
    }

    /// One room message was published, reaching `delivered` members and
    /// held back from `held_back` slow ones.
    pub(crate) fn published(&self, delivered: usize, held_back: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.delivered(delivered, held_back);
    }

    /// Room messages reached `delivered` members and were held back from
    /// `held_back` slow ones (a run of held messages handed over).
    pub(crate) fn delivered(&self, delivered: usize, held_back: usize) {
        self.delivered.fetch_add(delivered as u64, Relaxed);
        if held_back > 0 {
            self.held_back.fetch_add(held_back as u64, Relaxed);
        }
    }

    /// A `say` could not be published.
    pub(crate) fn publish_failed(&self) {
        self.publish_errors.fetch_add(1, Relaxed);
    }

    /// A session fell behind and is being caught up.
    pub(crate) fn lagged(&self) {
        self.lagged.fetch_add(1, Relaxed);
    }

    /// A frame was refused by the rate limit.
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_with_the_events() {
        let c = Counters::default();
        c.connected(Dialect::Text);
        c.connected(Dialect::Native);
        c.disconnected(Dialect::Text, "idle_timeout");
        c.irc_connected();
        c.irc_connected();
        c.irc_disconnected("quit");
        c.refused(Refused::TooFast);
        c.published(3, 1);
        c.joined(2);
        c.left(1);
        let readings = Readings {
            ready: true,
            outbox_bytes: 300,
            outbox_largest: 200,
            ..Readings::default()
        };
        let text = render(&c, &readings);
        for line in [
            "chatroom_connections{dialect=\"native\"} 1",
            "chatroom_connections{dialect=\"text\"} 0",
            "chatroom_connections_total{dialect=\"text\"} 1",
            "chatroom_connections{dialect=\"irc\"} 1",
            "chatroom_connections_total{dialect=\"irc\"} 2",
            "chatroom_disconnects_total{reason=\"quit\"} 1",
            "chatroom_disconnects_total{reason=\"idle_timeout\"} 1",
            "chatroom_connections_refused_total{reason=\"connecting_too_fast\"} 1",
            "chatroom_messages_in_total 1",
            "chatroom_messages_delivered_total 3",
            "chatroom_messages_held_back_total 1",
            "chatroom_joins_total 2",
            "chatroom_leaves_total 1",
            "chatroom_ready 1",
            "chatroom_outbox_bytes 300",
            "chatroom_outbox_largest_bytes 200",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
