//! A token bucket: the per-connection message rate and error allowance.

use std::time::Duration;

use tokio::time::Instant;

/// Holds up to `burst` tokens and regains `per_sec` tokens a second. A call
/// that finds a token takes it; one that finds none is refused. Time is
/// passed in, so the bucket is a plain value that tests can drive.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(per_sec: f64, burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_sec,
            last: now,
        }
    }

    /// A bucket that regains one token every `every`.
    pub(crate) fn refilling_every(every: Duration, burst: u32, now: Instant) -> Self {
        Self::new(1.0 / every.as_secs_f64(), burst, now)
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes up a new rate and burst, as a reload sets them. Tokens
    /// gained by a larger burst are there at once; a smaller burst caps
    /// what is left.
    pub(crate) fn retune(&mut self, per_sec: f64, burst: u32) {
        let burst = f64::from(burst);
        self.tokens = (self.tokens + (burst - self.burst).max(0.0)).min(burst);
        self.burst = burst;
        self.per_sec = per_sec;
    }

    /// True when the bucket would be full at `now`: it remembers nothing
    /// that a fresh bucket would not, so it can be forgotten.
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.per_sec >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        // 100 ms at 10/s gives back one token, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t1));
        // A long pause refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(b.try_take(t2));
        }
        assert!(!b.try_take(t2));
    }

    #[test]
    fn retuning_caps_or_grows_the_tokens() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5, t0);
        b.retune(0.001, 2);
        assert!(b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        b.retune(0.001, 4);
        assert!(b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
    }
}
