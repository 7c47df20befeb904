//! Registry behaviour through its API: fanout order under concurrent
//! publishers, slow-consumer isolation, encode-once delivery, and the rules
//! for nicknames, rooms and whispers. No sockets and no runtime: the
//! registry is synchronous, so plain OS threads drive it.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::{
    Backlog, Outbound, Outbox, OutboxReceiver, RegistryError, RoomRegistry, SessionId, outbox,
};
use crate::protocol::{MessageId, Nickname, RoomName, ServerMessage};

/// Big enough that no test below overflows a healthy member's queue.
const ROOMY_FRAMES: usize = 8192;
const ROOMY_BYTES: usize = 1 << 30;
/// A registry call never waits on a peer; anything near this is a hang.
const DEADLINE: Duration = Duration::from_secs(20);

fn nick(s: &str) -> Nickname {
    Nickname::new(s).unwrap()
}

fn room(s: &str) -> RoomName {
    RoomName::new(s).unwrap()
}

fn roomy() -> (Outbox, OutboxReceiver) {
    outbox(
        ROOMY_FRAMES,
        ROOMY_BYTES,
        crate::registry::QueueBudget::unlimited(),
    )
}

/// Registers `name` with a roomy outbox.
fn member(registry: &RoomRegistry, name: &str) -> (SessionId, OutboxReceiver) {
    let (tx, rx) = roomy();
    let id = registry.register(nick(name), tx).unwrap();
    (id, rx)
}

/// `names`, registered with roomy outboxes and joined to `lobby` in this
/// order, their joins' frames read: the room, and each member's id and
/// receiver.
fn lobby_of<const N: usize>(
    registry: &RoomRegistry,
    names: [&str; N],
) -> (Arc<super::Room>, [(SessionId, OutboxReceiver); N]) {
    let lobby = room("lobby");
    let mut members = names.map(|name| member(registry, name));
    let mut handle = None;
    for (id, _) in &members {
        handle = Some(registry.join(*id, &lobby, 4, Backlog::Last(0)).unwrap());
    }
    for (_, rx) in &mut members {
        drain(rx);
    }
    (handle.expect("at least one member"), members)
}

/// Everything queued for a receiver right now.
fn drain(rx: &mut OutboxReceiver) -> Vec<Arc<Outbound>> {
    std::iter::from_fn(|| rx.try_recv()).collect()
}

/// The room messages among `frames`, as (id, sender, text).
fn messages(frames: &[Arc<Outbound>]) -> Vec<(MessageId, String, String)> {
    frames
        .iter()
        .filter_map(|f| match &f.frame().message {
            ServerMessage::Message { id, from, text, .. } => {
                Some((*id, from.to_string(), text.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The ids of the room messages queued for a receiver right now, taken.
fn drained_ids(rx: &mut OutboxReceiver) -> Vec<MessageId> {
    messages(&drain(rx)).iter().map(|m| m.0).collect()
}

/// Runs `f` on its own thread and fails the test if it takes longer than
/// [`DEADLINE`], so a registry call that blocks fails instead of hanging.
fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let value = f();
        let _ = done_tx.send(());
        value
    });
    match done_rx.recv_timeout(DEADLINE) {
        // Disconnected means the closure panicked; join surfaces its message.
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("registry call blocked for {DEADLINE:?}"),
    }
}

#[test]
fn concurrent_publishers_reach_every_member_once_in_id_order() {
    const PUBLISHERS: usize = 8;
    const PER_PUBLISHER: usize = 500;
    const MEMBERS: usize = 20;
    const TOTAL: usize = PUBLISHERS * PER_PUBLISHER;

    let registry = RoomRegistry::new();
    let lobby = room("lobby");
    let mut receivers = Vec::new();
    let mut handles = Vec::new();
    for i in 0..MEMBERS {
        let name = format!("m{i}");
        let (id, rx) = member(&registry, &name);
        let handle = registry.join(id, &lobby, 4, Backlog::Last(0)).unwrap();
        receivers.push(rx);
        handles.push((id, nick(&name), handle));
    }

    let publishers: Vec<_> = handles.into_iter().take(PUBLISHERS).collect();
    within_deadline(move || {
        let start = Arc::new(Barrier::new(PUBLISHERS));
        let threads: Vec<_> = publishers
            .into_iter()
            .map(|(id, from, handle)| {
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    for n in 0..PER_PUBLISHER {
                        let published = handle
                            .publish(id, &from, format!("{from}:{n}"), false, true)
                            .unwrap();
                        assert_eq!(published.slow, 0);
                        assert_eq!(published.delivered, MEMBERS);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });

    assert_eq!(registry.room(&lobby).unwrap().last_id(), TOTAL as MessageId);
    for (i, rx) in receivers.iter_mut().enumerate() {
        let got = messages(&drain(rx));
        assert_eq!(got.len(), TOTAL, "member m{i} got {} messages", got.len());
        let ids: Vec<MessageId> = got.iter().map(|(id, _, _)| *id).collect();
        let expected: Vec<MessageId> = (1..=TOTAL as MessageId).collect();
        assert_eq!(
            ids, expected,
            "member m{i} saw ids out of order or with gaps"
        );

        // Each publisher's messages arrive in the order it sent them.
        let mut next: HashMap<&str, usize> = HashMap::new();
        for (_, from, text) in &got {
            let n = next.entry(from.as_str()).or_default();
            assert_eq!(*text, format!("{from}:{n}"), "member m{i}");
            *n += 1;
        }
        assert_eq!(next.len(), PUBLISHERS);
        assert!(next.values().all(|n| *n == PER_PUBLISHER));
    }
}

#[test]
fn one_full_queue_delays_nobody_and_its_owner_falls_behind_until_caught_up() {
    const HEALTHY: usize = 9;
    const PUBLISHERS: usize = 3;
    const PER_PUBLISHER: usize = 300;

    let registry = RoomRegistry::new();
    let lobby = room("lobby");
    let mut healthy = Vec::new();
    for i in 0..HEALTHY {
        let name = format!("h{i}");
        let (id, rx) = member(&registry, &name);
        let handle = registry.join(id, &lobby, 4, Backlog::Last(0)).unwrap();
        healthy.push((id, nick(&name), handle, rx));
    }
    // Joins last, so the only frame it holds before publishing starts is its
    // own `joined`; its receiver is never drained.
    let (slow_tx, slow_rx) = outbox(2, ROOMY_BYTES, crate::registry::QueueBudget::unlimited());
    let slow_id = registry.register(nick("slow"), slow_tx.clone()).unwrap();
    registry.join(slow_id, &lobby, 4, Backlog::Last(0)).unwrap();

    let publishers: Vec<_> = healthy
        .iter()
        .take(PUBLISHERS)
        .map(|(id, from, handle, _)| (*id, from.clone(), handle.clone()))
        .collect();
    let slow_counts = within_deadline(move || {
        let threads: Vec<_> = publishers
            .into_iter()
            .map(|(id, from, handle)| {
                thread::spawn(move || {
                    (0..PER_PUBLISHER)
                        .map(|n| {
                            let p = handle
                                .publish(id, &from, format!("{from}:{n}"), false, true)
                                .unwrap();
                            assert_eq!(p.delivered + p.slow, HEALTHY + 1);
                            p.slow
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });

    // Only the slow member ever failed to take a message, and it did so for
    // all but the first message (its queue already held its `joined`).
    assert!(slow_counts.iter().all(|s| *s <= 1));
    assert_eq!(
        slow_counts.iter().sum::<usize>(),
        PUBLISHERS * PER_PUBLISHER - 1
    );

    for (_, name, _, rx) in &mut healthy {
        let got = messages(&drain(rx));
        assert_eq!(
            got.len(),
            PUBLISHERS * PER_PUBLISHER,
            "{name} missed messages"
        );
        assert!(got.windows(2).all(|w| w[0].0 + 1 == w[1].0), "{name}");
    }

    // Not cut off: the room holds its traffic back from the slow member,
    // which has had its `joined` and the first message.
    assert_eq!(slow_rx.cut_reason(), None);
    assert!(!slow_tx.is_closed());
    let room = registry.room(&lobby).unwrap();
    assert_eq!(room.behind(slow_id), Some(1));
    let mut slow_rx = slow_rx;
    assert_eq!(
        drain(&mut slow_rx).len(),
        2,
        "the queue never grows past its bound"
    );

    // Too far behind to be let back in at once: the session must stream
    // the messages after its cursor first.
    let last = room.last_id();
    assert_eq!(
        room.catch_up(slow_id, 1),
        Err(RegistryError::Behind { after: 1 })
    );
    // Streamed up to one before the end: the last comes with the catch-up,
    // and the live traffic follows it.
    room.catch_up(slow_id, last - 1).unwrap();
    assert_eq!(room.behind(slow_id), None);
    let (id, from, handle, _) = &healthy[0];
    handle
        .publish(*id, from, "live".into(), false, true)
        .unwrap();
    assert_eq!(
        messages(&drain(&mut slow_rx))
            .iter()
            .map(|(id, _, _)| *id)
            .collect::<Vec<_>>(),
        [last, last + 1]
    );
}

#[test]
fn a_room_message_is_encoded_once_for_all_members() {
    const MEMBERS: usize = 100;

    let registry = RoomRegistry::new();
    let lobby = room("lobby");
    let mut receivers = Vec::new();
    let mut first = None;
    for i in 0..MEMBERS {
        let (id, rx) = member(&registry, &format!("m{i}"));
        let handle = registry.join(id, &lobby, 1, Backlog::Last(0)).unwrap();
        first.get_or_insert((id, handle));
        receivers.push(rx);
    }
    for rx in &mut receivers {
        drain(rx);
    }

    let (sender, handle) = first.unwrap();
    let published = handle
        .publish(sender, &nick("m0"), "hello, all".into(), false, true)
        .unwrap();
    assert_eq!(published.delivered, MEMBERS);

    let frames: Vec<Arc<Outbound>> = receivers
        .iter_mut()
        .map(|rx| {
            let mut got = drain(rx);
            assert_eq!(got.len(), 1);
            got.pop().unwrap()
        })
        .collect();
    let one = &frames[0];
    assert_eq!(messages(&frames[..1])[0].0, published.id);
    for frame in &frames {
        assert!(Arc::ptr_eq(frame, one), "a member got its own copy");
        assert_eq!(frame.json().as_ptr(), one.json().as_ptr());
    }
}

#[test]
fn nicknames_are_unique_ignoring_case() {
    let registry = RoomRegistry::new();
    let (alice, _rx_a) = member(&registry, "Alice");
    let (tx, _rx) = roomy();
    assert_eq!(
        registry.register(nick("aLICE"), tx.clone()),
        Err(RegistryError::NickTaken(nick("aLICE")))
    );

    let (bob, _rx_b) = member(&registry, "bob");
    assert_eq!(
        registry.rename(bob, nick("ALICE")),
        Err(RegistryError::NickTaken(nick("ALICE")))
    );
    assert_eq!(registry.nick_of(bob), Some(nick("bob")));

    // Changing only the case of one's own nick is allowed.
    assert_eq!(registry.rename(alice, nick("ALICE")), Ok(nick("Alice")));
    assert_eq!(registry.nick_of(alice), Some(nick("ALICE")));

    // The old spelling of a renamed nick is free again, in any case.
    assert_eq!(registry.rename(bob, nick("robert")), Ok(nick("bob")));
    let (tx2, _rx2) = roomy();
    registry.register(nick("BOB"), tx2).unwrap();

    // Leaving frees the nick.
    registry.unregister(alice, None);
    registry.register(nick("alice"), tx).unwrap();
}

#[test]
fn rename_tells_each_sharer_once_and_strangers_never() {
    let registry = RoomRegistry::new();
    let (a, mut rx_a) = member(&registry, "a");
    let (b, mut rx_b) = member(&registry, "b");
    let (c, mut rx_c) = member(&registry, "c");
    let (d, mut rx_d) = member(&registry, "d");
    let (one, two, other) = (room("one"), room("two"), room("other"));
    for r in [&one, &two] {
        registry.join(a, r, 4, Backlog::Last(0)).unwrap();
        registry.join(b, r, 4, Backlog::Last(0)).unwrap();
    }
    registry.join(c, &one, 4, Backlog::Last(0)).unwrap();
    registry.join(d, &other, 4, Backlog::Last(0)).unwrap();
    for rx in [&mut rx_a, &mut rx_b, &mut rx_c, &mut rx_d] {
        drain(rx);
    }

    assert_eq!(registry.rename(a, nick("z")), Ok(nick("a")));

    let renames = |rx: &mut OutboxReceiver| {
        drain(rx)
            .iter()
            .filter(|f| {
                matches!(
                    &f.frame().message,
                    ServerMessage::NickChanged { old, new } if *old == nick("a") && *new == nick("z")
                )
            })
            .count()
    };
    assert_eq!(renames(&mut rx_a), 1, "the renamer");
    assert_eq!(renames(&mut rx_b), 1, "shares two rooms");
    assert_eq!(renames(&mut rx_c), 1, "shares one room");
    assert_eq!(renames(&mut rx_d), 0, "shares no room");
    assert_eq!(
        registry.members(&one).unwrap(),
        vec![nick("b"), nick("c"), nick("z")]
    );
}

#[test]
fn leave_of_the_last_member_reclaims_the_room() {
    let registry = RoomRegistry::new();
    let (a, mut rx_a) = member(&registry, "a");
    let (b, mut rx_b) = member(&registry, "b");
    let lobby = room("Lobby");
    registry.join(a, &lobby, 4, Backlog::Last(0)).unwrap();
    registry
        .join(b, &room("lobby"), 4, Backlog::Last(0))
        .unwrap();
    assert_eq!(registry.rooms().len(), 1);
    assert_eq!(registry.rooms()[0].members, 2);
    drain(&mut rx_a);
    drain(&mut rx_b);

    registry.leave(a, &lobby, Some("bye".into())).unwrap();
    let rooms = registry.rooms();
    assert_eq!(rooms.len(), 1);
    assert_eq!((rooms[0].name.as_str(), rooms[0].members), ("Lobby", 1));
    let left = |rx: &mut OutboxReceiver| {
        drain(rx)
            .iter()
            .filter(|f| matches!(&f.frame().message, ServerMessage::Left { nick: n, .. } if *n == nick("a")))
            .count()
    };
    assert_eq!(left(&mut rx_a), 1, "the leaver is told");
    assert_eq!(left(&mut rx_b), 1, "the remaining member is told");
    assert_eq!(
        registry.leave(a, &lobby, None),
        Err(RegistryError::NotInRoom(lobby.clone()))
    );

    registry.leave(b, &room("LOBBY"), None).unwrap();
    assert!(registry.rooms().is_empty());
    assert!(registry.room(&lobby).is_none());
    assert_eq!(
        registry.members(&lobby),
        Err(RegistryError::NoSuchRoom(lobby.clone()))
    );
}

#[test]
fn unregister_of_the_last_member_reclaims_its_rooms() {
    let registry = RoomRegistry::new();
    let (a, _rx_a) = member(&registry, "a");
    let (b, mut rx_b) = member(&registry, "b");
    registry
        .join(a, &room("solo"), 4, Backlog::Last(0))
        .unwrap();
    registry
        .join(a, &room("shared"), 4, Backlog::Last(0))
        .unwrap();
    registry
        .join(b, &room("shared"), 4, Backlog::Last(0))
        .unwrap();
    drain(&mut rx_b);

    registry.unregister(a, Some("quit".into()));
    let rooms = registry.rooms();
    assert_eq!(rooms.len(), 1);
    assert_eq!((rooms[0].name.as_str(), rooms[0].members), ("shared", 1));
    assert!(matches!(
        &drain(&mut rx_b)[..],
        [f] if matches!(&f.frame().message, ServerMessage::Left { reason: Some(r), .. } if r == "quit")
    ));
    assert_eq!(registry.session_count(), 1);
}

#[test]
fn joining_beyond_max_rooms_is_refused() {
    let registry = RoomRegistry::new();
    let (a, mut rx_a) = member(&registry, "a");
    registry.join(a, &room("one"), 2, Backlog::Last(0)).unwrap();
    registry.join(a, &room("two"), 2, Backlog::Last(0)).unwrap();
    drain(&mut rx_a);

    assert_eq!(
        registry
            .join(a, &room("three"), 2, Backlog::Last(0))
            .unwrap_err(),
        RegistryError::TooManyRooms { max: 2 }
    );
    assert!(
        registry.room(&room("three")).is_none(),
        "a refused join creates no room"
    );
    assert_eq!(registry.rooms().len(), 2);

    // Joining a room one is already in is not a new room, and tells no one.
    registry.join(a, &room("ONE"), 2, Backlog::Last(0)).unwrap();
    assert!(drain(&mut rx_a).is_empty());

    registry.leave(a, &room("two"), None).unwrap();
    registry
        .join(a, &room("three"), 2, Backlog::Last(0))
        .unwrap();
}

#[test]
fn whisper_reaches_the_target_and_echoes_once() {
    let registry = RoomRegistry::new();
    let (a, mut rx_a) = member(&registry, "a");
    let (_b, mut rx_b) = member(&registry, "Bob");

    assert_eq!(
        registry.whisper(a, &nick("nobody"), "hi".into()),
        Err(RegistryError::NoSuchNick(nick("nobody")))
    );
    assert!(drain(&mut rx_a).is_empty());

    registry.whisper(a, &nick("bob"), "psst".into()).unwrap();
    for rx in [&mut rx_a, &mut rx_b] {
        let got = drain(rx);
        assert_eq!(got.len(), 1);
        assert!(matches!(
            &got[0].frame().message,
            ServerMessage::Private { from, to, text, .. }
                if *from == nick("a") && *to == nick("Bob") && text == "psst"
        ));
    }

    registry
        .whisper(a, &nick("A"), "note to self".into())
        .unwrap();
    assert_eq!(drain(&mut rx_a).len(), 1);
}

#[test]
fn held_runs_reach_every_member_once_in_id_order_whoever_ends_them() {
    const PUBLISHERS: usize = 6;
    const PER_PUBLISHER: usize = 400;
    const MEMBERS: usize = 12;
    const TOTAL: usize = PUBLISHERS * PER_PUBLISHER;

    let registry = RoomRegistry::new();
    let lobby = room("lobby");
    let mut receivers = Vec::new();
    let mut handles = Vec::new();
    for i in 0..MEMBERS {
        let name = format!("m{i}");
        let (id, rx) = member(&registry, &name);
        let handle = registry.join(id, &lobby, 4, Backlog::Last(0)).unwrap();
        receivers.push((id, rx));
        handles.push((id, nick(&name), handle));
    }

    let publishers: Vec<_> = handles.into_iter().take(PUBLISHERS).collect();
    let delivered = within_deadline(move || {
        let start = Arc::new(Barrier::new(PUBLISHERS));
        let threads: Vec<_> = publishers
            .into_iter()
            .enumerate()
            .map(|(p, (id, from, handle))| {
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    let mut delivered = 0;
                    for n in 0..PER_PUBLISHER {
                        // Runs of 1 to 7 messages, ended by a plain publish
                        // or by a flush, and a run left open at the end for
                        // the others' publishes (or the check below) to end.
                        let run = 1 + (n * 7 + p) % 7;
                        let text = format!("{from}:{n}");
                        let last = n + 1 == PER_PUBLISHER;
                        let published = if n % run == run - 1 && !last && n % 2 == 0 {
                            handle.publish(id, &from, text, false, false).unwrap()
                        } else {
                            let held = handle.publish_held(id, &from, text, false).unwrap();
                            if n % run == run - 1 && !last {
                                let (more, slow) = handle.flush_held();
                                assert_eq!(slow, 0);
                                delivered += more;
                            }
                            held
                        };
                        assert_eq!(published.slow, 0);
                        delivered += published.delivered;
                    }
                    delivered
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>()
    });

    // Whatever is still held goes out with the next use of the room.
    let room_handle = registry.room(&lobby).unwrap();
    let (rest, _) = room_handle.flush_held();
    assert_eq!(
        delivered + rest,
        TOTAL * (MEMBERS - 1),
        "every delivery is reported once"
    );
    let senders: HashMap<SessionId, usize> = (0..PUBLISHERS).map(|i| (receivers[i].0, i)).collect();
    for (i, (id, rx)) in receivers.iter_mut().enumerate() {
        let got = messages(&drain(rx));
        let own = if senders.contains_key(id) {
            PER_PUBLISHER
        } else {
            0
        };
        assert_eq!(
            got.len(),
            TOTAL - own,
            "member m{i} got {} messages",
            got.len()
        );
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "member m{i} saw ids out of order"
        );
        assert!(
            got.iter().all(|(_, from, _)| *from != format!("m{i}")),
            "m{i} got its own"
        );
    }
}

#[test]
fn a_run_is_joined_once_for_the_members_that_take_it_whole() {
    let registry = RoomRegistry::new();
    let lobby = room("lobby");
    let (alice, mut alice_rx) = member(&registry, "alice");
    let handle = registry.join(alice, &lobby, 4, Backlog::Last(0)).unwrap();
    let mut takers = Vec::new();
    for name in ["bob", "carol"] {
        let (id, rx) = member(&registry, name);
        registry.join(id, &lobby, 4, Backlog::Last(0)).unwrap();
        takers.push(rx);
    }
    // Dave's queue has room for two frames: he takes the run frame by
    // frame up to there, and is behind from the third.
    let (tx, mut dave_rx) = outbox(2, 1 << 20, crate::registry::QueueBudget::unlimited());
    let dave = registry.register(nick("dave"), tx).unwrap();
    registry.join(dave, &lobby, 4, Backlog::Last(0)).unwrap();
    for rx in takers.iter_mut().chain([&mut alice_rx]) {
        drain(rx);
    }
    drain(&mut dave_rx);

    for text in ["one", "two"] {
        handle
            .publish_held(alice, &nick("alice"), text.into(), false)
            .unwrap();
    }
    let last = handle
        .publish(alice, &nick("alice"), "three".into(), false, false)
        .unwrap();
    assert_eq!((last.delivered, last.slow), (2 * 3 + 2, 1));

    let runs: Vec<_> = takers
        .iter()
        .map(|rx| match &rx.entries()[..] {
            [super::Entry::Run(run)] => run.clone(),
            other => panic!("one joined run, not {other:?}"),
        })
        .collect();
    assert!(Arc::ptr_eq(&runs[0], &runs[1]), "joined once for the room");
    let lines: Vec<u8> = runs[0]
        .frames()
        .iter()
        .flat_map(|f| f.json().to_vec())
        .collect();
    assert_eq!(super::Entry::Run(runs[0].clone()).json()[..], lines[..]);
    for rx in &mut takers {
        assert_eq!(
            messages(&drain(rx)),
            [1, 2, 3].map(|id| (
                id,
                "alice".to_owned(),
                ["one", "two", "three"][id as usize - 1].to_owned()
            ))
        );
    }
    assert!(
        dave_rx
            .entries()
            .iter()
            .all(|e| matches!(e, super::Entry::Frame(_))),
        "a member that cannot take the run whole gets frames"
    );
    assert_eq!(drained_ids(&mut dave_rx), [1, 2]);
    assert!(drain(&mut alice_rx).is_empty(), "no echo to the sender");
}

#[test]
fn a_run_with_one_member_to_take_it_is_not_joined() {
    let registry = RoomRegistry::new();
    let (handle, [(alice, _), (_, bob_rx)]) = lobby_of(&registry, ["alice", "bob"]);
    handle
        .publish_held(alice, &nick("alice"), "one".into(), false)
        .unwrap();
    handle
        .publish(alice, &nick("alice"), "two".into(), false, false)
        .unwrap();
    // A joined buffer only one queue holds would be a second copy its
    // byte bound does not count.
    let entries = bob_rx.entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.iter().all(|e| matches!(e, super::Entry::Frame(_))));
}

#[test]
fn a_held_message_waits_for_its_run_and_whatever_touches_the_room_delivers_it_first() {
    let registry = RoomRegistry::new();
    let lobby = room("lobby");
    let (handle, [(alice, _), (_, mut bob_rx)]) = lobby_of(&registry, ["alice", "bob"]);

    let p1 = handle
        .publish_held(alice, &nick("alice"), "one".into(), false)
        .unwrap();
    handle
        .publish_held(alice, &nick("alice"), "two".into(), false)
        .unwrap();
    assert_eq!((p1.id, p1.delivered), (1, 0));
    assert!(drain(&mut bob_rx).is_empty(), "held until the run ends");

    // A joiner: the held messages reach bob first, and carol gets them in
    // her backlog once, not again with the run.
    let (carol, mut carol_rx) = member(&registry, "carol");
    registry.join(carol, &lobby, 4, Backlog::Last(10)).unwrap();
    let bob_got = drain(&mut bob_rx);
    assert_eq!(
        messages(&bob_got).iter().map(|m| m.0).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(
        matches!(
            bob_got.last().unwrap().frame().message,
            ServerMessage::Joined { .. }
        ),
        "carol's join comes after the run: {bob_got:?}"
    );
    assert_eq!(drained_ids(&mut carol_rx), [1, 2]);

    // A run ended by the run's last message.
    handle
        .publish_held(alice, &nick("alice"), "three".into(), false)
        .unwrap();
    let p4 = handle
        .publish(alice, &nick("alice"), "four".into(), false, false)
        .unwrap();
    assert_eq!(p4.delivered, 4, "both messages, to both members");
    for rx in [&mut bob_rx, &mut carol_rx] {
        assert_eq!(drained_ids(rx), [3, 4]);
    }
}

#[test]
fn a_member_whose_queue_fills_in_a_run_is_behind_from_the_last_message_it_took() {
    let registry = RoomRegistry::new();
    let lobby = room("lobby");
    let (alice, _alice_rx) = member(&registry, "alice");
    let handle = registry.join(alice, &lobby, 4, Backlog::Last(0)).unwrap();
    let (slow_tx, mut slow_rx) = outbox(2, ROOMY_BYTES, crate::registry::QueueBudget::unlimited());
    let slow = registry.register(nick("slow"), slow_tx).unwrap();
    registry.join(slow, &lobby, 4, Backlog::Last(0)).unwrap();

    // Its queue holds its `joined`, so it takes one message of the run.
    for n in 0..5 {
        handle
            .publish_held(alice, &nick("alice"), format!("{n}"), false)
            .unwrap();
    }
    let (delivered, held_back) = handle.flush_held();
    assert_eq!((delivered, held_back), (1, 4));
    assert_eq!(handle.behind(slow), Some(1));
    assert_eq!(messages(&drain(&mut slow_rx)).len(), 1);

    // Caught up from the room's memory, a queueful at a time: the rest,
    // once, in order.
    let mut got = Vec::new();
    while let Some(after) = handle.behind(slow) {
        handle.catch_up(slow, after).unwrap();
        got.extend(drained_ids(&mut slow_rx));
    }
    assert_eq!(got, [2, 3, 4, 5]);
}

#[test]
fn a_publisher_gets_the_messages_others_hold_before_its_own_is_stamped() {
    let registry = RoomRegistry::new();
    let lobby = room("lobby");
    let (alice, mut alice_rx) = member(&registry, "alice");
    let (bob, mut bob_rx) = member(&registry, "bob");
    let (carol, mut carol_rx) = member(&registry, "carol");
    let handle = registry.join(alice, &lobby, 4, Backlog::Last(0)).unwrap();
    registry.join(bob, &lobby, 4, Backlog::Last(0)).unwrap();
    registry.join(carol, &lobby, 4, Backlog::Last(0)).unwrap();
    for rx in [&mut alice_rx, &mut bob_rx, &mut carol_rx] {
        drain(rx);
    }

    handle
        .publish_held(alice, &nick("alice"), "first".into(), false)
        .unwrap();
    // bob's own message is held too, but alice's comes to bob before bob's
    // is stamped (its `ok` must not overtake it); the rest of the room
    // still waits for the run.
    let published = handle
        .publish_held(bob, &nick("bob"), "second".into(), false)
        .unwrap();
    assert_eq!(published.id, 2);
    assert_eq!(drained_ids(&mut bob_rx), [1]);
    assert!(drained_ids(&mut carol_rx).is_empty());
    handle
        .publish_held(alice, &nick("alice"), "third".into(), false)
        .unwrap();
    assert_eq!(
        drained_ids(&mut alice_rx),
        [2],
        "alice gets bob's before her third"
    );

    // The run ends with a plain publish: everyone gets what they have not
    // had, once, in order, and nobody their own.
    handle
        .publish(carol, &nick("carol"), "fourth".into(), false, false)
        .unwrap();
    assert_eq!(drained_ids(&mut carol_rx), [1, 2, 3]);
    assert_eq!(drained_ids(&mut bob_rx), [3, 4]);
    assert_eq!(drained_ids(&mut alice_rx), [4]);
}

/// One step of [`runs_keep_every_members_view_whole_and_in_order`]: sender
/// `0..3` publishes held or plainly, or the room is flushed.
#[derive(Debug, Clone, Copy)]
enum Step {
    Held(usize),
    Plain(usize),
    Flush,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..3usize).prop_map(Step::Held),
        1 => (0..3usize).prop_map(Step::Plain),
        1 => Just(Step::Flush),
    ]
}

proptest::proptest! {
    /// Any interleaving of three senders' held and plain publishes and of
    /// flushes: every member gets each message of the others once, in id
    /// order, never its own; and a sender, once its publish returns, has
    /// had every earlier message it is to get (its `ok` comes next).
    #[test]
    fn runs_keep_every_members_view_whole_and_in_order(steps in proptest::collection::vec(step(), 1..120)) {
        let registry = RoomRegistry::new();
        let lobby = room("lobby");
        let mut members = Vec::new();
        let mut handle = None;
        for i in 0..5 {
            let name = format!("m{i}");
            let (id, rx) = member(&registry, &name);
            handle = Some(registry.join(id, &lobby, 4, Backlog::Last(0)).unwrap());
            members.push((id, nick(&name), rx, Vec::<MessageId>::new()));
        }
        let handle = handle.unwrap();
        for (_, _, rx, _) in &mut members {
            drain(rx);
        }
        let mut sent_by = Vec::new();
        for step in steps {
            match step {
                Step::Flush => {
                    handle.flush_held();
                }
                Step::Held(s) | Step::Plain(s) => {
                    let (id, from) = (members[s].0, members[s].1.clone());
                    let published = if matches!(step, Step::Held(_)) {
                        handle.publish_held(id, &from, "x".into(), false).unwrap()
                    } else {
                        handle.publish(id, &from, "x".into(), false, false).unwrap()
                    };
                    // What the sender has had by now: everything before
                    // its message that is not its own.
                    let (_, _, rx, seen) = &mut members[s];
                    seen.extend(drained_ids(rx));
                    let owed: Vec<MessageId> = (1..published.id)
                        .filter(|i| sent_by[*i as usize - 1] != s)
                        .collect();
                    proptest::prop_assert_eq!(&*seen, &owed[..], "sender m{} before its ok", s);
                    sent_by.push(s);
                }
            }
        }
        handle.flush_held();
        for (i, (_, _, rx, seen)) in members.iter_mut().enumerate() {
            seen.extend(drained_ids(rx));
            let expected: Vec<MessageId> = (1..=sent_by.len() as MessageId)
                .filter(|id| sent_by[*id as usize - 1] != i)
                .collect();
            proptest::prop_assert_eq!(&*seen, &expected[..], "member m{}", i);
        }
    }
}
