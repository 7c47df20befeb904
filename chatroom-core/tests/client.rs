//! The client API against an in-process engine: over real TCP on
//! 127.0.0.1 for the chat, naming, shutdown and reconnect paths, and over
//! the in-memory transport with paused time for keepalive.
//!
//! Every test runs under a timeout so that a hang fails instead of stalling CI.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use chatroom_core::client::{
    Client, ClientError, ClientOptions, DisconnectReason, Event, Events, Reconnect,
};
use chatroom_core::protocol::{ErrorCode, Nickname, RoomName};
use chatroom_core::server::{Server, ServerConfig};
use chatroom_core::testing::TestServer;
use chatroom_core::transport::memory;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

async fn within<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test timed out")
}

fn nick(s: &str) -> Nickname {
    Nickname::new(s).unwrap()
}

fn room(s: &str) -> RoomName {
    RoomName::new(s).unwrap()
}

async fn connect(server: &TestServer, name: &str) -> (Client, Events) {
    let options = ClientOptions::new().with_nick(nick(name));
    Client::connect(server.addr.to_string(), options)
        .await
        .expect("connect")
}

/// Skips events until one matches.
async fn wait_for(events: &mut Events, mut wanted: impl FnMut(&Event) -> bool) -> Event {
    loop {
        let event = events.next().await.expect("events ended early");
        if wanted(&event) {
            return event;
        }
    }
}

#[tokio::test]
async fn two_clients_join_and_chat() {
    within(async {
        let server = TestServer::start().await;
        let (alice, _alice_events) = connect(&server, "alice").await;
        let (bob, mut bob_events) = connect(&server, "bob").await;
        let lobby = room("lobby");

        assert_eq!(alice.join(&lobby).await.unwrap(), vec![nick("alice")]);
        let members = bob.join(&lobby).await.unwrap();
        assert_eq!(members, vec![nick("alice"), nick("bob")]);

        let id = alice.say(&lobby, "hi bob").await.unwrap();
        let event = wait_for(&mut bob_events, |e| matches!(e, Event::Message { .. })).await;
        let Event::Message {
            room: r,
            id: got,
            from,
            text,
            action,
            ..
        } = event
        else {
            unreachable!()
        };
        assert_eq!((r, got, from, text.as_str(), action), (lobby.clone(), id, nick("alice"), "hi bob", false));

        let next = alice.action(&lobby, "waves").await.unwrap();
        assert!(next > id, "ids increase within a room");
        let event = wait_for(&mut bob_events, |e| matches!(e, Event::Message { .. })).await;
        assert!(matches!(event, Event::Message { action: true, id, .. } if id == next));

        alice.whisper(&nick("bob"), "psst").await.unwrap();
        let event = wait_for(&mut bob_events, |e| matches!(e, Event::Private { .. })).await;
        assert!(matches!(event, Event::Private { from, text, .. } if from == nick("alice") && text == "psst"));

        alice.leave(&lobby).await.unwrap();
        let event = wait_for(&mut bob_events, |e| matches!(e, Event::Left { .. })).await;
        assert!(matches!(event, Event::Left { nick: n, .. } if n == nick("alice")));
        assert_eq!(bob.who(&lobby).await.unwrap(), vec![nick("bob")]);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn refs_match_replies_even_with_concurrent_calls_from_clones() {
    within(async {
        let server = TestServer::start().await;
        let (alice, _ae) = connect(&server, "alice").await;
        let (bob, _be) = connect(&server, "bob").await;
        let rooms: Vec<RoomName> = (0..12).map(|i| room(&format!("r{i}"))).collect();
        // Bob is in the even rooms only, so each join reply says which
        // room it answers.
        for r in rooms.iter().step_by(2) {
            bob.join(r).await.unwrap();
        }

        let joins = rooms.iter().map(|r| {
            let client = alice.clone();
            let r = r.clone();
            tokio::spawn(async move { client.join(&r).await })
        });
        let results = futures::future::join_all(joins).await;
        for (i, result) in results.into_iter().enumerate() {
            let members = result.unwrap().unwrap();
            let expected = if i % 2 == 0 {
                vec![nick("alice"), nick("bob")]
            } else {
                vec![nick("alice")]
            };
            assert_eq!(members, expected, "reply for room r{i}");
        }

        let r0 = rooms[0].clone();
        let says = (0..10).map(|i| {
            let client = alice.clone();
            let r0 = r0.clone();
            tokio::spawn(async move { client.say(&r0, format!("line {i}")).await })
        });
        let ids: HashSet<u64> = futures::future::join_all(says)
            .await
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        assert_eq!(ids.len(), 10, "every say got its own id");

        // An error reply goes to the caller that caused it, not a neighbour.
        let nowhere = room("nowhere");
        let (bad, good) = tokio::join!(alice.leave(&nowhere), alice.who(&rooms[1]));
        assert_eq!(bad.unwrap_err().code(), Some(ErrorCode::NotInRoom));
        assert_eq!(good.unwrap(), vec![nick("alice")]);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn nick_taken_gives_a_server_error() {
    within(async {
        let server = TestServer::start().await;
        let (_alice, _ae) = connect(&server, "alice").await;

        let options = ClientOptions::new().with_nick(nick("ALICE"));
        let err = Client::connect(server.addr.to_string(), options)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Server { code: ErrorCode::NickTaken, .. }),
            "{err:?}"
        );

        let (bob, mut bob_events) = connect(&server, "bob").await;
        let err = bob.nick(&nick("alice")).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Server { code: ErrorCode::NickTaken, message } if message.contains("alice")),
            "{err:?}"
        );
        assert_eq!(bob.current_nick(), nick("bob"));

        bob.nick(&nick("carol")).await.unwrap();
        assert_eq!(bob.current_nick(), nick("carol"));
        let event = wait_for(&mut bob_events, |e| matches!(e, Event::NickChanged { .. })).await;
        assert!(matches!(event, Event::NickChanged { old, new } if old == nick("bob") && new == nick("carol")));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn text_the_server_would_refuse_is_not_sent() {
    within(async {
        let server = TestServer::start().await;
        let (alice, _ae) = connect(&server, "alice").await;
        let lobby = room("lobby");
        alice.join(&lobby).await.unwrap();
        let err = alice.say(&lobby, "bad\u{1b}[2J").await.unwrap_err();
        assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
        let err = alice.say(&lobby, "").await.unwrap_err();
        assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
        // The connection is still fine.
        alice.say(&lobby, "ok").await.unwrap();
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn server_shutdown_yields_disconnected_with_the_bye_reason() {
    within(async {
        let server = TestServer::start().await;
        let (alice, mut events) = connect(&server, "alice").await;
        alice.join(&room("lobby")).await.unwrap();
        server.stop().await;

        let event = wait_for(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
        assert!(
            matches!(&event, Event::Disconnected { reason: DisconnectReason::Bye { reason } } if reason == "server shutting down"),
            "{event:?}"
        );
        assert!(events.next().await.is_none(), "no reconnect: the stream ends");
        let err = alice.say(&room("lobby"), "anyone?").await.unwrap_err();
        assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn quit_ends_the_connection_cleanly() {
    within(async {
        let server = TestServer::start().await;
        let (alice, mut events) = connect(&server, "alice").await;
        let (bob, mut bob_events) = connect(&server, "bob").await;
        let lobby = room("lobby");
        alice.join(&lobby).await.unwrap();
        bob.join(&lobby).await.unwrap();

        alice.quit(Some("lunch")).await.unwrap();
        let event = wait_for(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
        assert!(matches!(
            event,
            Event::Disconnected {
                reason: DisconnectReason::Bye { .. }
            }
        ));
        assert!(events.next().await.is_none());

        let event = wait_for(&mut bob_events, |e| matches!(e, Event::Left { .. })).await;
        assert!(matches!(event, Event::Left { reason: Some(r), .. } if r == "lunch"));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_slow_event_reader_gets_lagged_and_requests_still_work() {
    within(async {
        let server = TestServer::start().await;
        let options = ClientOptions::new()
            .with_nick(nick("alice"))
            .with_event_capacity(2);
        let (alice, mut events) = Client::connect(server.addr.to_string(), options)
            .await
            .unwrap();
        let (bob, _be) = connect(&server, "bob").await;
        let lobby = room("lobby");
        alice.join(&lobby).await.unwrap();
        bob.join(&lobby).await.unwrap();
        for i in 0..10 {
            bob.say(&lobby, format!("unread {i}")).await.unwrap();
        }
        // Alice reads no events, yet her requests are answered: the
        // connection task does not wait for her.
        assert_eq!(alice.who(&lobby).await.unwrap().len(), 2);

        assert!(matches!(events.next().await, Some(Event::Joined { .. })));
        assert!(matches!(events.next().await, Some(Event::Joined { .. })));
        let id = bob.say(&lobby, "after the gap").await.unwrap();
        let lagged = events.next().await.unwrap();
        assert!(matches!(lagged, Event::Lagged { missed: 10 }), "{lagged:?}");
        let next = events.next().await.unwrap();
        assert!(
            matches!(next, Event::Message { id: got, .. } if got == id),
            "{next:?}"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reconnect_rejoins_rooms_after_the_server_restarts() {
    within(async {
        let server = TestServer::start().await;
        let addr = server.addr;
        let options = ClientOptions::new()
            .with_nick(nick("alice"))
            .with_reconnect(
                Reconnect::new()
                    .with_delays(Duration::from_millis(50), Duration::from_millis(200))
                    .with_max_attempts(50),
            );
        let (alice, mut events) = Client::connect(addr.to_string(), options).await.unwrap();
        let lobby = room("lobby");
        alice.join(&lobby).await.unwrap();
        server.stop().await;

        let event = wait_for(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
        assert!(matches!(event, Event::Disconnected { reason: DisconnectReason::Bye { .. } }));
        let event = events.next().await.unwrap();
        assert!(matches!(event, Event::Reconnecting { attempt: 1, .. }), "{event:?}");

        let server = TestServer::start_at(&addr.to_string()).await;
        let event = wait_for(&mut events, |e| matches!(e, Event::Reconnected { .. })).await;
        let Event::Reconnected { nick: n, rooms } = event else {
            unreachable!()
        };
        assert_eq!(n, nick("alice"));
        assert_eq!(rooms, vec![lobby.clone()]);
        assert_eq!(alice.current_nick(), nick("alice"));

        let (bob, _be) = connect(&server, "bob").await;
        bob.join(&lobby).await.unwrap();
        let id = bob.say(&lobby, "welcome back").await.unwrap();
        let event = wait_for(&mut events, |e| matches!(e, Event::Message { .. })).await;
        assert!(matches!(event, Event::Message { id: got, from, .. } if got == id && from == nick("bob")));
        alice.say(&lobby, "thanks").await.unwrap();
        server.stop().await;
    })
    .await;
}

/// The resume promise through the client API: a client that lost its
/// connection while the room talked on gets every missed message once, in
/// order, when it reconnects, and then the live ones.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn reconnect_resumes_with_every_missed_message_once() {
    use chatroom_core::history::{SqliteStore, SyncMode};
    use std::sync::Arc;

    within(async {
        let dir =
            std::env::temp_dir().join(format!("chatroom-client-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let durable = || {
            let store = SqliteStore::open(&dir, SyncMode::Normal).expect("store opens");
            Server::with_history(ServerConfig::default(), Arc::new(store)).expect("config")
        };
        let server = TestServer::serve(durable()).await;
        let addr = server.addr.to_string();
        let options = ClientOptions::new().with_nick(nick("away")).with_reconnect(
            Reconnect::new()
                .with_delays(Duration::from_millis(400), Duration::from_millis(400))
                .with_max_attempts(50),
        );
        let (away, mut events) = Client::connect(addr.clone(), options).await.unwrap();
        let lobby = room("lobby");
        away.join(&lobby).await.unwrap();
        let (talker, _talker_events) = connect(&server, "talker").await;
        talker.join(&lobby).await.unwrap();
        for i in 1..=3 {
            talker.say(&lobby, &format!("before {i}")).await.unwrap();
        }
        let mut seen = Vec::new();
        while seen.len() < 3 {
            if let Event::Message { id, .. } = events.next().await.unwrap() {
                seen.push(id);
            }
        }
        drop(talker);
        server.stop().await;

        // The server comes back with its history; the room talks on before
        // the client's reconnect delay has passed.
        let server = TestServer::serve_at(&addr, durable()).await;
        let (talker, _talker_events) = connect(&server, "talker").await;
        talker.join(&lobby).await.unwrap();
        // More than a plain join would replay (20), so only a resume from
        // the client's cursor can deliver them all.
        for i in 4..=40 {
            talker
                .say(&lobby, &format!("while away {i}"))
                .await
                .unwrap();
        }
        // The missed messages come with the rejoin, before `Reconnected`.
        loop {
            match events.next().await.unwrap() {
                Event::Message { id, .. } => seen.push(id),
                Event::Reconnected { .. } => break,
                _ => {}
            }
        }
        let live = talker.say(&lobby, "live").await.unwrap();
        while seen.last() != Some(&live) {
            if let Event::Message { id, .. } = events.next().await.unwrap() {
                seen.push(id);
            }
        }
        assert_eq!(seen, (1..=41).collect::<Vec<_>>());
        server.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn server_pings_are_answered_over_the_memory_transport() {
    // Time is paused and jumps ahead when every task waits, so the limit
    // is in virtual time and must exceed the sleeps below.
    let limit = Duration::from_secs(3600);
    let test = async {
        let (listener, connector) = memory::channel();
        let stop = CancellationToken::new();
        let server = Server::new(ServerConfig::default()).unwrap();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move { server.run(listener, shutdown).await.unwrap() });

        let options = ClientOptions::new().with_nick(nick("idle"));
        let (client, mut events) = Client::connect_with(connector, options).await.unwrap();
        // Far past the ping interval and the idle timeout of the defaults:
        // only answered pings keep the session.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        assert!(events.try_next().is_none(), "no event while idle");
        client.ping().await.unwrap();
        stop.cancel();
        task.await.unwrap();
    };
    tokio::time::timeout(limit, test)
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn whisper_copies_reach_the_sender_and_its_errors_answer_the_caller() {
    within(async {
        let server = TestServer::start().await;
        let (alice, mut alice_events) = connect(&server, "alice").await;
        let (_bob, mut bob_events) = connect(&server, "bob").await;
        let is_private = |e: &Event| matches!(e, Event::Private { .. });

        alice.whisper(&nick("BOB"), "psst").await.unwrap();
        for events in [&mut bob_events, &mut alice_events] {
            let event = wait_for(events, is_private).await;
            assert!(
                matches!(&event, Event::Private { from, to, text, .. }
                    if *from == nick("alice") && *to == nick("bob") && text == "psst"),
                "{event:?}"
            );
        }

        // Each reply, error or not, goes to the call that asked.
        let (nobody, bob, nowhere) = (nick("nobody"), nick("bob"), room("nowhere"));
        let (to_nobody, to_bob, who_nowhere) = tokio::join!(
            alice.whisper(&nobody, "hello?"),
            alice.whisper(&bob, "second"),
            alice.who(&nowhere),
        );
        let err = to_nobody.unwrap_err();
        assert!(
            matches!(&err, ClientError::Server { code: ErrorCode::NoSuchNick, message } if message.contains("nobody")),
            "{err:?}"
        );
        to_bob.unwrap();
        assert_eq!(who_nowhere.unwrap_err().code(), Some(ErrorCode::NoSuchRoom));
        let event = wait_for(&mut bob_events, is_private).await;
        assert!(matches!(&event, Event::Private { text, .. } if text == "second"), "{event:?}");
        let event = wait_for(&mut alice_events, is_private).await;
        assert!(matches!(&event, Event::Private { text, .. } if text == "second"), "{event:?}");

        // A whisper to oneself arrives once.
        alice.whisper(&nick("alice"), "note to self").await.unwrap();
        alice.whisper(&nick("bob"), "after").await.unwrap();
        let texts: Vec<String> = [
            wait_for(&mut alice_events, is_private).await,
            wait_for(&mut alice_events, is_private).await,
        ]
        .into_iter()
        .map(|e| match e {
            Event::Private { text, .. } => text,
            _ => unreachable!(),
        })
        .collect();
        assert_eq!(texts, ["note to self", "after"]);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn presence_events_say_who_joined_or_left_which_room() {
    within(async {
        let server = TestServer::start().await;
        let (alice, mut alice_events) = connect(&server, "alice").await;
        let (bob, mut bob_events) = connect(&server, "bob").await;
        let (lobby, side) = (room("lobby"), room("side"));
        let is_presence = |e: &Event| matches!(e, Event::Joined { .. } | Event::Left { .. });

        alice.join(&lobby).await.unwrap();
        alice.join(&side).await.unwrap();
        for r in [&lobby, &side] {
            let event = wait_for(&mut alice_events, is_presence).await;
            assert!(
                matches!(&event, Event::Joined { room: got, nick: n } if got == r && *n == nick("alice")),
                "the joiner hears its own join first: {event:?}"
            );
        }

        bob.join(&lobby).await.unwrap();
        let event = wait_for(&mut alice_events, is_presence).await;
        assert!(
            matches!(&event, Event::Joined { room: r, nick: n } if *r == lobby && *n == nick("bob")),
            "{event:?}"
        );
        let event = wait_for(&mut bob_events, is_presence).await;
        assert!(
            matches!(&event, Event::Joined { room: r, nick: n } if *r == lobby && *n == nick("bob")),
            "{event:?}"
        );

        // Joining again changes nothing: no second `joined`, so the next
        // presence event alice sees is bob leaving.
        bob.join(&lobby).await.unwrap();
        bob.leave(&lobby).await.unwrap();
        let event = wait_for(&mut alice_events, is_presence).await;
        assert!(
            matches!(&event, Event::Left { room: r, nick: n, .. } if *r == lobby && *n == nick("bob")),
            "{event:?}"
        );

        // A plain-text user (put in #lobby on arrival) who drops the
        // connection without quitting is seen leaving every room.
        let mut carol = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // Wait for the greeting: a line sent before it is sometimes lost.
        let mut greeting = [0u8; 1];
        carol.read_exact(&mut greeting).await.unwrap();
        carol
            .write_all(b"/nick carol\r\n/join side\r\n")
            .await
            .unwrap();
        let is_carol = |e: &Event| match e {
            Event::Joined { nick: n, .. } | Event::Left { nick: n, .. } => *n == nick("carol"),
            _ => false,
        };
        let event = wait_for(&mut alice_events, is_carol).await;
        assert!(
            matches!(&event, Event::Joined { room: r, .. } if *r == side),
            "{event:?}"
        );
        drop(carol);
        let mut left = Vec::new();
        for _ in 0..2 {
            match wait_for(&mut alice_events, is_carol).await {
                Event::Left { room: r, .. } => left.push(r),
                other => panic!("expected carol to leave: {other:?}"),
            }
        }
        left.sort_by_key(|r| r.key().to_owned());
        assert_eq!(left, [lobby.clone(), side.clone()]);
        assert_eq!(alice.who(&side).await.unwrap(), vec![nick("alice")]);
        server.stop().await;
    })
    .await;
}
