//! The rooms' own rules, on one node (the [`LocalBroker`]).

use std::sync::Arc;

use crate::broker::LocalBroker;
use crate::protocol::Nickname;
use crate::registry::{RoomRegistry, outbox};

use super::{RoomLimits, Rooms};

fn nick(s: &str) -> Nickname {
    Nickname::new(s).unwrap()
}

fn rooms() -> Rooms {
    let limits = RoomLimits {
        max_rooms: 8,
        history_on_join: 20,
        history_page_max: 100,
    };
    Rooms::new(RoomRegistry::new(), Arc::new(LocalBroker), limits)
}

#[tokio::test]
async fn register_unique_appends_the_first_free_number() {
    let rooms = rooms();
    let base = nick("bob");
    let mut queues = Vec::new();
    let mut got = Vec::new();
    for _ in 0..4 {
        let (tx, rx) = outbox(16, 1 << 20, crate::registry::QueueBudget::unlimited());
        queues.push(rx);
        got.push(
            rooms
                .register_unique(&base, &tx, |_| false)
                .await
                .unwrap()
                .1,
        );
    }
    assert_eq!(got, ["bob", "bob-2", "bob-3", "bob-4"].map(nick));

    // Taken ignoring case, so BOB gets a suffix too, and skips bob-2.
    let (tx, _rx) = outbox(16, 1 << 20, crate::registry::QueueBudget::unlimited());
    let bob5 = rooms
        .register_unique(&nick("BOB"), &tx, |_| false)
        .await
        .unwrap()
        .1;
    assert_eq!(bob5, nick("BOB-5"));

    // A base at the length limit is shortened to make room for the suffix.
    let long = "n".repeat(32);
    let (tx, _rx1) = outbox(16, 1 << 20, crate::registry::QueueBudget::unlimited());
    let first = rooms
        .register_unique(&nick(&long), &tx, |_| false)
        .await
        .unwrap()
        .1;
    assert_eq!(first, nick(&long));
    let (tx, _rx2) = outbox(16, 1 << 20, crate::registry::QueueBudget::unlimited());
    let second = rooms
        .register_unique(&nick(&long), &tx, |_| false)
        .await
        .unwrap()
        .1;
    assert_eq!(second, nick(&format!("{}-2", &long[..30])));
}
