//! How long a store's commits take, in histogram buckets, for the
//! engine's metrics. Recorded once per commit (a batch of appends), by the
//! thread that commits, so it costs the chat path nothing.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds; one more bucket counts the
/// rest.
pub const COMMIT_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Commit times so far, in [`COMMIT_BUCKETS`].
#[derive(Debug, Default)]
pub struct CommitTimes {
    /// One count per bucket, the last for commits over the last bound.
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// A reading of [`CommitTimes`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CommitSnapshot {
    /// For each bound of [`COMMIT_BUCKETS`], the commits that took at most
    /// that long (cumulative, as Prometheus buckets are).
    pub at_most: Vec<u64>,
    /// Every commit.
    pub count: u64,
    /// Their total time, in seconds.
    pub sum_secs: f64,
}

impl CommitTimes {
    /// Counts one commit that took `took`.
    pub fn record(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> CommitSnapshot {
        let mut running = 0;
        let mut at_most = Vec::with_capacity(COMMIT_BUCKETS.len());
        for bucket in &self.buckets[..COMMIT_BUCKETS.len()] {
            running += bucket.load(Relaxed);
            at_most.push(running);
        }
        let count = running + self.buckets[COMMIT_BUCKETS.len()].load(Relaxed);
        CommitSnapshot {
            at_most,
            count,
            sum_secs: self.sum_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_rest_counts_too() {
        let t = CommitTimes::default();
        t.record(Duration::from_micros(300));
        t.record(Duration::from_millis(20));
        t.record(Duration::from_secs(3));
        let s = t.snapshot();
        assert_eq!(s.at_most[0], 1);
        assert_eq!(s.at_most[5], 2);
        assert_eq!(s.at_most[9], 2);
        assert_eq!(s.count, 3);
        assert!((s.sum_secs - 3.0203).abs() < 1e-9, "{}", s.sum_secs);
    }
}
