//! Failed logins counted per address and per account, so that guessing a
//! password costs a guesser time as well as the server's hashing.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Most addresses and accounts remembered at once. Past it the entries
/// whose lockout is over are forgotten, then the oldest ones: memory stays
/// bounded even against a guesser with many addresses.
const MAX_ENTRIES: usize = 16 * 1024;

/// Failures per key within a window that starts at the first failure.
#[derive(Debug)]
pub(super) struct Throttle {
    attempts: u32,
    lockout: Duration,
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
}

impl Throttle {
    pub(super) fn new(attempts: u32, lockout: Duration) -> Self {
        Self {
            attempts,
            lockout,
            entries: HashMap::new(),
        }
    }

    /// How long `key` must still wait, if it has used up its attempts.
    pub(super) fn wait(&mut self, key: &str, now: Instant) -> Option<Duration> {
        let entry = *self.entries.get(key)?;
        let until = entry.since + self.lockout;
        if now >= until {
            self.entries.remove(key);
            return None;
        }
        (entry.failures >= self.attempts).then(|| until - now)
    }

    /// Counts a failed attempt against `key`.
    pub(super) fn failed(&mut self, key: &str, now: Instant) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(key) {
            self.make_room(now);
        }
        let lockout = self.lockout;
        let entry = self.entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            since: now,
        });
        if now >= entry.since + lockout {
            *entry = Entry {
                failures: 0,
                since: now,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
    }

    /// Forgets `key`'s failures (after a successful login).
    pub(super) fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    fn make_room(&mut self, now: Instant) {
        let lockout = self.lockout;
        self.entries.retain(|_, e| now < e.since + lockout);
        if self.entries.len() >= MAX_ENTRIES {
            // Still full of live entries: drop the older half.
            let mut ages: Vec<Instant> = self.entries.values().map(|e| e.since).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.entries.retain(|_, e| e.since > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_locked_after_its_attempts_until_the_window_ends() {
        let mut t = Throttle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.wait("ip:1", start), None);
            t.failed("ip:1", start);
        }
        let wait = t.wait("ip:1", start + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(t.wait("ip:2", start), None);
        assert_eq!(t.wait("ip:1", start + Duration::from_secs(60)), None);
        t.failed("ip:2", start);
        t.forget("ip:2");
        assert!(t.entries.is_empty());
    }

    #[test]
    fn memory_stays_bounded() {
        let mut t = Throttle::new(3, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES + 10) {
            t.failed(&format!("ip:{i}"), now + Duration::from_millis(i as u64));
        }
        assert!(t.entries.len() <= MAX_ENTRIES);
    }
}
