//! Addresses that asked this server for a page lately.
//!
//! A client that says nothing is greeted as a text client once the short
//! dialect window (`sniff_ms`) has passed, so that a person on `nc` sees
//! the greeting at once. Browsers are the exception: Chromium opens
//! connections ahead of need and sends its request line on them later,
//! and a connection greeted in text can no longer serve a page. So a
//! silent connection from an address that made an HTTP request within
//! [`MEMORY`] is given the long window (`browser_sniff_ms`) instead. The
//! first request a browser makes comes at once on the connection it
//! opened for it, so its address is known before its spare connections'
//! short windows end (the choice is made when the short window ends, not
//! when the connection opens).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::peers;

/// How long an address counts as a browser's after its last request.
pub(crate) const MEMORY: Duration = Duration::from_secs(10 * 60);

/// Most addresses remembered. The table is keyed by something a client
/// chooses, so it is bounded: past this the oldest are forgotten (their
/// next spare connection may then be greeted in text, which costs a
/// browser a failed request, not the server memory).
const MAX_ADDRS: usize = 4096;

/// The addresses, each with the time of its latest HTTP request.
#[derive(Debug, Default)]
pub(crate) struct RecentBrowsers {
    seen: Mutex<HashMap<IpAddr, Instant>>,
}

impl RecentBrowsers {
    fn seen(&self) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `ip` made an HTTP request at `now`.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) fn saw(&self, ip: IpAddr, now: Instant) {
        let key = peers::key(ip);
        let mut seen = self.seen();
        if seen.len() >= MAX_ADDRS && !seen.contains_key(&key) {
            seen.retain(|_, at| now.duration_since(*at) < MEMORY);
            if seen.len() >= MAX_ADDRS
                && let Some(oldest) = seen.iter().min_by_key(|(_, at)| **at).map(|(ip, _)| *ip)
            {
                seen.remove(&oldest);
            }
        }
        seen.insert(key, now);
    }

    /// True when `ip` made an HTTP request within [`MEMORY`] before `now`.
    pub(crate) fn is_recent(&self, ip: IpAddr, now: Instant) -> bool {
        self.seen()
            .get(&peers::key(ip))
            .is_some_and(|at| now.duration_since(*at) < MEMORY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn an_address_is_a_browsers_for_a_while_after_its_request() {
        let browsers = RecentBrowsers::default();
        let now = Instant::now();
        assert!(!browsers.is_recent(ip(1), now));
        browsers.saw(ip(1), now);
        assert!(browsers.is_recent(ip(1), now + MEMORY / 2));
        assert!(!browsers.is_recent(ip(1), now + MEMORY));
        assert!(!browsers.is_recent(ip(2), now));
    }

    #[test]
    fn ipv6_addresses_count_by_their_prefix() {
        let browsers = RecentBrowsers::default();
        let now = Instant::now();
        browsers.saw("2001:db8::1".parse().unwrap(), now);
        assert!(browsers.is_recent("2001:db8::2".parse().unwrap(), now));
        assert!(!browsers.is_recent("2001:db9::1".parse().unwrap(), now));
    }

    #[test]
    fn the_table_stays_bounded_and_forgets_the_oldest_first() {
        let browsers = RecentBrowsers::default();
        let start = Instant::now();
        for n in 0..MAX_ADDRS as u32 + 10 {
            browsers.saw(ip(n), start + Duration::from_millis(u64::from(n)));
        }
        let now = start + Duration::from_secs(1);
        assert!(browsers.seen().len() <= MAX_ADDRS);
        assert!(!browsers.is_recent(ip(0), now));
        assert!(browsers.is_recent(ip(MAX_ADDRS as u32 + 9), now));
    }
}
