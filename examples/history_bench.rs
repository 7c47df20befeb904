//! Measures the durable history store on its own: the sustained append rate
//! with durability on, and how long a page of 100 messages takes to read
//! from a room that holds a million.
//!
//! ```text
//! cargo run --release -p chatroom-examples --example history_bench -- [MESSAGES]
//! ```
//!
//! MESSAGES (default 1000000) are appended to one room in a fresh store in
//! a temporary directory, once with `history_sync = normal` and once with
//! `full` (a tenth as many: one fsync per commit), and the store is removed
//! afterwards. Loopback and disk only; it talks to no server.

use std::path::Path;
use std::time::{Duration, Instant};

use chatroom_core::history::{HistoryStore, PageQuery, SqliteStore, SyncMode};
use chatroom_core::protocol::{HistoryEntry, Nickname, RoomName};

fn entry(id: u64, from: &Nickname) -> HistoryEntry {
    HistoryEntry {
        id,
        from: from.clone(),
        text: format!("message number {id}, about as long as a chat line is"),
        ts: 1_767_225_600_000 + id,
        action: false,
    }
}

/// Appends `count` messages and waits until they are committed.
fn append_rate(dir: &Path, sync: SyncMode, count: u64) -> (SqliteStore, f64) {
    let store = SqliteStore::open(dir, sync).expect("store opens");
    let room = RoomName::new("bench").expect("valid");
    let from = Nickname::new("writer").expect("valid");
    let started = Instant::now();
    for id in 1..=count {
        store.append(&room, entry(id, &from));
        // The queue holds 64 Ki entries; a producer faster than the disk
        // would see appends refused, so pace on the writer now and then.
        if id % 32_768 == 0 {
            store.flush().expect("flush");
        }
    }
    store.flush().expect("flush");
    let rate = count as f64 / started.elapsed().as_secs_f64();
    (store, rate)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("MESSAGES is a number"))
        .unwrap_or(1_000_000);
    let base = std::env::temp_dir().join(format!("chatroom-history-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);

    let full_count = (count / 10).max(1);
    let (full_store, full_rate) = append_rate(&base.join("full"), SyncMode::Full, full_count);
    drop(full_store);
    let (store, normal_rate) = append_rate(&base.join("normal"), SyncMode::Normal, count);
    println!("append, synchronous=normal: {normal_rate:>10.0} messages/s ({count} messages)");
    println!("append, synchronous=full:   {full_rate:>10.0} messages/s ({full_count} messages)");

    let room = RoomName::new("bench").expect("valid");
    let queries = 1000u64;
    let newest: fn(u64) -> PageQuery = |_| PageQuery::Before {
        before: None,
        limit: 100,
    };
    let after: fn(u64) -> PageQuery = |cursor| PageQuery::After {
        after: cursor,
        limit: 100,
    };
    for (name, query) in [("newest 100", newest), ("100 after a spread of ids", after)] {
        let mut times = Vec::with_capacity(queries as usize);
        for q in 0..queries {
            // A spread of cursors over the whole room, without a RNG.
            let cursor = (q * 7919 * 104_729) % count.saturating_sub(100).max(1);
            let started = Instant::now();
            let page = store.page(&room, query(cursor)).expect("page");
            times.push(started.elapsed());
            assert_eq!(page.messages.len(), 100.min(count as usize));
        }
        times.sort();
        println!(
            "read {name} of {count}: p50 {:?}  p99 {:?}  max {:?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&base);
}
