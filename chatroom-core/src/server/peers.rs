//! Admission per peer address: how many connections one address may hold
//! open, and how fast it may open new ones.
//!
//! The table is the engine's only state keyed by something a client
//! chooses, so its size is bounded: an address is remembered while it holds
//! a connection or while its connect bucket is refilling, and never beyond
//! `max_connections + MAX_IDLE_ADDRS` addresses in all.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::config::Limits;
use super::rate::TokenBucket;

/// Most addresses remembered that hold no connection (their buckets are
/// still refilling). Past this, the oldest throttling state is forgotten
/// rather than memory grown: an attacker with that many addresses gets a
/// fresh burst, but never more connections than the per-address limit.
const MAX_IDLE_ADDRS: usize = 4096;

/// The table is swept of forgettable entries when it reaches this size,
/// and then again at twice the size that survived, so sweeps cost O(1)
/// per admission on average.
const FIRST_SWEEP: usize = 1024;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The address already holds `max_connections_per_ip` connections.
    TooMany,
    /// The address used up its connect burst.
    TooFast,
}

/// A refusal, and whether it is the first of a run for its address (the
/// engine logs the first at `warn` and the rest at `debug`, so a flood
/// cannot flood the log).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) reason: Refusal,
    pub(crate) first: bool,
}

/// Per-address counts and connect buckets, shared by the engine loop (which
/// admits) and the sessions (whose [`PeerSlot`]s give their count back).
#[derive(Debug)]
pub(crate) struct PeerTable {
    max_open: usize,
    rate: f64,
    burst: u32,
    /// Entries are never held across an `.await`; every critical section
    /// is a lookup plus, now and then, a sweep bounded by the table size.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    addrs: HashMap<IpAddr, Tally>,
    next_sweep: usize,
    /// The table never holds more entries than this.
    cap: usize,
}

#[derive(Debug)]
struct Tally {
    open: usize,
    bucket: TokenBucket,
    /// True after a refusal, until the next admission.
    refusing: bool,
}

/// One admitted connection's share of its address's count. Dropping it gives
/// the share back; the session holds it for as long as it runs.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    table: Arc<PeerTable>,
    addr: IpAddr,
}

/// The address limits apply to: IPv4 addresses as they are (IPv4-mapped
/// IPv6 included), IPv6 addresses by their /64 prefix.
pub(crate) fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl PeerTable {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            max_open: limits.max_connections_per_ip,
            rate: limits.connect_rate_per_ip,
            burst: limits.connect_burst_per_ip,
            state: Mutex::new(State {
                addrs: HashMap::new(),
                next_sweep: FIRST_SWEEP,
                cap: limits.max_connections.saturating_add(MAX_IDLE_ADDRS),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counts that are
        // still consistent (every update is one field), so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `ip` against its address's limits.
    ///
    /// Every attempt takes a connect token, refused or not, so hammering an
    /// address that is at its connection limit is throttled too.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PeerSlot, Refused> {
        let addr = key(ip);
        let now = Instant::now();
        let mut state = self.lock();
        if !state.addrs.contains_key(&addr) {
            state.make_room(now);
        }
        let tally = match state.addrs.entry(addr) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(Tally {
                open: 0,
                bucket: TokenBucket::new(self.rate, self.burst, now),
                refusing: false,
            }),
        };
        let refusal = if !tally.bucket.try_take(now) {
            Some(Refusal::TooFast)
        } else if tally.open >= self.max_open {
            Some(Refusal::TooMany)
        } else {
            None
        };
        if let Some(reason) = refusal {
            let first = !tally.refusing;
            tally.refusing = true;
            return Err(Refused { reason, first });
        }
        tally.open += 1;
        tally.refusing = false;
        Ok(PeerSlot {
            table: self.clone(),
            addr,
        })
    }

    /// How many addresses the table remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().addrs.len()
    }
}

impl State {
    /// Called before a new address is added: forgets addresses that hold
    /// no connection and whose bucket is full, and, at the hard cap, every
    /// address that holds no connection.
    fn make_room(&mut self, now: Instant) {
        if self.addrs.len() >= self.next_sweep || self.addrs.len() >= self.cap {
            self.addrs
                .retain(|_, t| t.open > 0 || !t.bucket.is_full(now));
            self.next_sweep = (self.addrs.len() * 2).max(FIRST_SWEEP);
        }
        if self.addrs.len() >= self.cap {
            self.addrs.retain(|_, t| t.open > 0);
        }
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut state = self.table.lock();
        if let Some(tally) = state.addrs.get_mut(&self.addr) {
            tally.open -= 1;
            if tally.open == 0 && tally.bucket.is_full(now) {
                state.addrs.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::server::{LimitsConfig, ServerConfig};

    fn table(limits: LimitsConfig) -> Arc<PeerTable> {
        let config = ServerConfig::default().with_limits(limits);
        Arc::new(PeerTable::new(&config.validate().unwrap()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_may_hold_only_its_share_of_connections() {
        let peers = table(LimitsConfig::default().with_max_connections_per_ip(2));
        let a = peers.admit(ip("10.0.0.1")).unwrap();
        let _b = peers.admit(ip("10.0.0.1")).unwrap();
        let refused = peers.admit(ip("10.0.0.1")).unwrap_err();
        assert_eq!((refused.reason, refused.first), (Refusal::TooMany, true));
        assert!(!peers.admit(ip("10.0.0.1")).unwrap_err().first);
        // Other addresses are not affected, and a closed slot is reusable.
        let _other = peers.admit(ip("10.0.0.2")).unwrap();
        drop(a);
        let _c = peers.admit(ip("10.0.0.1")).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn connecting_faster_than_the_rate_is_refused_until_tokens_return() {
        let peers = table(
            LimitsConfig::default()
                .with_connect_rate_per_ip(2.0)
                .with_connect_burst_per_ip(3),
        );
        for _ in 0..3 {
            drop(peers.admit(ip("10.0.0.1")).unwrap());
        }
        let refused = peers.admit(ip("10.0.0.1")).unwrap_err();
        assert_eq!(refused.reason, Refusal::TooFast);
        tokio::time::advance(Duration::from_millis(500)).await;
        drop(peers.admit(ip("10.0.0.1")).unwrap());
        assert!(peers.admit(ip("10.0.0.1")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_peers_are_counted_by_their_64_prefix() {
        let peers = table(LimitsConfig::default().with_max_connections_per_ip(1));
        let _a = peers.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(peers.admit(ip("2001:db8:1:2:ffff::9")).is_err());
        let _b = peers.admit(ip("2001:db8:1:3::1")).unwrap();
        // An IPv4-mapped address is the IPv4 address.
        let _c = peers.admit(ip("192.0.2.7")).unwrap();
        assert!(peers.admit(ip("::ffff:192.0.2.7")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_forgets_addresses_and_stays_bounded() {
        let peers = table(
            LimitsConfig::default()
                .with_max_connections(10)
                .with_max_connections_per_ip(1)
                .with_connect_rate_per_ip(1.0)
                .with_connect_burst_per_ip(5),
        );
        // An address whose bucket is full again is forgotten on close.
        let slot = peers.admit(ip("10.0.0.1")).unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(slot);
        assert_eq!(peers.len(), 0);

        // Many addresses that connect once and leave while their buckets
        // refill: the table never grows past its cap.
        let held: Vec<PeerSlot> = (0..10)
            .map(|i| peers.admit(IpAddr::from([10, 1, 0, i])).unwrap())
            .collect();
        for i in 0..50_000u32 {
            let [_, a, b, c] = i.to_be_bytes();
            drop(peers.admit(IpAddr::from([11, a, b, c])).unwrap());
            assert!(peers.len() <= 10 + MAX_IDLE_ADDRS);
        }
        // The addresses holding connections were never forgotten.
        let refused = peers.admit(ip("10.1.0.0")).unwrap_err();
        assert_eq!(refused.reason, Refusal::TooMany);
        drop(held);
    }
}
