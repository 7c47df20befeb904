//! Room fanout without sockets: one `Room::publish` into a room of N
//! members (encode once, push the shared frame into every member's bounded
//! queue), then every member's writer side taking its frame off the queue.
//!
//! ```text
//! cargo bench -p chatroom-core --bench fanout
//! ```
//!
//! The `say` group prices the broker seam on one node: the same `say`
//! through `Room::publish` called directly and through
//! `LocalBroker::publish` (what the engine calls), whose answer is a
//! `Pending` that is already complete.
//!
//! Under `cargo test --benches` each benchmark runs once, as a test.

use chatroom_core::broker::{Broker, LocalBroker};
use chatroom_core::registry::Published;
use chatroom_core::testing::FanoutRig;
use divan::Bencher;
use divan::counter::ItemsCount;
use futures::FutureExt;

fn main() {
    divan::main();
}

#[divan::bench(args = [10, 100, 1000])]
fn publish_and_take(bencher: Bencher<'_, '_>, members: usize) {
    let mut s = FanoutRig::new(members);
    let text = "x".repeat(64);
    bencher.counter(ItemsCount::new(members)).bench_local(|| {
        let published = s
            .room
            .publish(s.publisher, &s.nick, text.clone(), false, false)
            .unwrap();
        assert_eq!(published.delivered, members);
        assert_eq!(s.take_one_each(), members, "one frame each");
    });
}

/// One `say` into a room of `members`, published by `publish`, then every
/// member taking its frame (so queues stay empty between iterations).
fn say(
    bencher: Bencher<'_, '_>,
    members: usize,
    publish: impl Fn(&FanoutRig, String) -> Published,
) {
    let mut s = FanoutRig::new(members);
    let text = "x".repeat(64);
    bencher.bench_local(|| {
        let published = publish(&s, text.clone());
        assert_eq!(published.delivered, members);
        assert_eq!(s.take_one_each(), members, "one frame each");
    });
}

/// The broker seam's price on one node, per `say`.
mod say {
    use super::*;

    /// `Room::publish` called directly, as before the seam.
    #[divan::bench(args = [1, 10, 100])]
    fn direct(bencher: Bencher<'_, '_>, members: usize) {
        say(bencher, members, |s, text| {
            s.room
                .publish(s.publisher, &s.nick, text, false, false)
                .unwrap()
        });
    }

    /// `LocalBroker::publish`, its already complete answer taken without a
    /// runtime: what the engine pays per `say` on a node with no cluster.
    #[divan::bench(args = [1, 10, 100])]
    fn local_broker(bencher: Bencher<'_, '_>, members: usize) {
        let broker: &dyn Broker = &LocalBroker;
        say(bencher, members, |s, text| {
            broker
                .publish(&s.room, s.publisher, &s.nick, text, false)
                .now_or_never()
                .expect("LocalBroker answers at once")
                .unwrap()
        });
    }
}
