//! The task's own tables, which need no socket to check.

use tokio::sync::oneshot;

use super::pending::{InFlight, Pending};
use super::rooms::Rooms;
use crate::client::error::ClientError;
use crate::protocol::{ClientMessage, RoomName, ServerMessage};

fn room(name: &str) -> RoomName {
    RoomName::new(name).expect("a valid room name")
}

#[test]
fn a_message_at_or_below_the_cursor_is_not_seen_twice() {
    let mut rooms = Rooms::new();
    let lobby = room("lobby");
    rooms.joined(&lobby, Some(5));
    assert!(!rooms.first_sight(&lobby, 5));
    assert!(rooms.first_sight(&lobby, 6));
    assert!(!rooms.first_sight(&lobby, 6));
    // Replies move the cursor too, and never back.
    rooms.seen(&lobby, 9);
    rooms.seen(&lobby, 7);
    assert!(!rooms.first_sight(&lobby, 8));
    assert!(rooms.first_sight(&lobby, 10));
}

#[test]
fn a_rejoin_resumes_each_room_from_its_cursor_and_counts_the_answers() {
    let mut rooms = Rooms::new();
    assert!(!rooms.start_rejoin(), "nothing to rejoin yet");
    let (a, b, c) = (room("a"), room("b"), room("c"));
    rooms.joined(&a, Some(3));
    rooms.joined(&b, None);
    rooms.joined(&c, Some(1));
    rooms.left(&c);
    assert!(rooms.start_rejoin());
    assert_eq!(
        rooms.take_unsent(true),
        vec![(a.clone(), Some(3)), (b.clone(), None)]
    );
    assert!(!rooms.has_unsent());
    // The server lost `a`'s past: it goes again as a plain join.
    rooms.cursor_refused(a.clone());
    assert!(rooms.has_unsent());
    assert_eq!(rooms.take_unsent(false), vec![(a.clone(), None)]);
    assert_eq!(rooms.rejoined(b.clone(), false), None);
    assert_eq!(rooms.rejoined(a.clone(), true), Some(vec![a.clone()]));
    // `b` failed, so the next reconnect rejoins only `a`.
    assert!(rooms.start_rejoin());
    assert_eq!(rooms.take_unsent(false), vec![(a, None)]);
}

#[test]
fn refs_are_never_reused() {
    let mut in_flight = InFlight::new();
    let first = in_flight.fresh_ref();
    in_flight.fail_all();
    let second = in_flight.fresh_ref();
    assert_eq!((first.as_str(), second.as_str()), ("1", "2"));
}

#[test]
fn a_lost_connection_fails_requests_but_grants_a_quit() {
    let mut in_flight = InFlight::new();
    let (who_tx, mut who_rx) = oneshot::channel();
    let (quit_tx, mut quit_rx) = oneshot::channel();
    let ping = in_flight.fresh_ref();
    in_flight.track_user(ping, ClientMessage::Ping, who_tx);
    let quit = in_flight.fresh_ref();
    in_flight.track_user(quit, ClientMessage::Quit { reason: None }, quit_tx);
    let rejoin = in_flight.fresh_ref();
    in_flight.track_rejoin(rejoin.clone(), room("lobby"));
    in_flight.fail_all();
    assert!(matches!(
        who_rx.try_recv(),
        Ok(Err(ClientError::Disconnected))
    ));
    assert!(matches!(
        quit_rx.try_recv(),
        Ok(Ok(ServerMessage::Bye { .. }))
    ));
    assert!(in_flight.take(&rejoin).is_none());
}

#[test]
fn an_unasked_bye_answers_only_the_quits() {
    let mut in_flight = InFlight::new();
    let (ping_tx, mut ping_rx) = oneshot::channel();
    let (quit_tx, mut quit_rx) = oneshot::channel();
    let ping = in_flight.fresh_ref();
    in_flight.track_user(ping.clone(), ClientMessage::Ping, ping_tx);
    let quit = in_flight.fresh_ref();
    in_flight.track_user(quit, ClientMessage::Quit { reason: None }, quit_tx);
    in_flight.answer_quits("shutting down");
    match quit_rx.try_recv() {
        Ok(Ok(ServerMessage::Bye { reason })) => assert_eq!(reason, "shutting down"),
        other => panic!("the quit got {other:?}"),
    }
    assert!(ping_rx.try_recv().is_err(), "the ping is still waiting");
    assert!(matches!(
        in_flight.take(&ping),
        Some(Pending::User {
            message: ClientMessage::Ping,
            ..
        })
    ));
}
