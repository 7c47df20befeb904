//! The delivery path under load, against the real binary: a room that
//! already has history is joined by a crowd, then one member talks flat
//! out. Nobody is cut off and nobody loses or repeats a message; a member
//! that stops reading falls behind and is caught up when it reads again.

mod common;

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncBufReadExt;

use chatroom_core::testing::Peer;
use common::abuse::{run_case, settings, slow_link_socket, start_server};
use common::admin::{admin_addr, get, sample};
use common::server::Server;

/// How many messages the room has before the crowd joins.
const HISTORY: u64 = 20;

/// The id in a `message` line, read without a JSON parser: the crowd's
/// readers take hundreds of thousands of lines.
fn message_id(line: &str) -> Option<u64> {
    if !line.starts_with(r#"{"type":"message""#) {
        return None;
    }
    line.split(r#""id":"#)
        .nth(1)?
        .split(',')
        .next()?
        .parse()
        .ok()
}

/// Reads `peer` until it has seen message `last`, checking that the ids
/// run 1, 2, 3, … with nothing missed or repeated and that nothing closes
/// it. Returns how many `lagged` frames came.
async fn read_all(peer: Peer, last: u64) -> usize {
    let name = peer.name().to_owned();
    // The writing half stays open: dropping it would close this side.
    let (mut lines, _writer) = peer.into_parts();
    let mut next = 1;
    let mut lags = 0;
    let mut line = String::new();
    while next <= last {
        line.clear();
        let n = tokio::time::timeout(Duration::from_secs(30), lines.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("{name}: starved at message {next}"))
            .expect("never cut off");
        assert!(n > 0, "{name}: closed at message {next}");
        if let Some(id) = message_id(&line) {
            assert_eq!(id, next, "{name}: out of order");
            next += 1;
        } else if line.starts_with(r#"{"type":"lagged""#) {
            let first = format!(r#""first":{next},"#);
            assert!(line.contains(&first), "{name}: {line}");
            lags += 1;
        } else {
            assert!(
                !line.starts_with(r#"{"type":"error""#) && !line.starts_with(r#"{"type":"bye""#),
                "{name}: {line}"
            );
        }
    }
    lags
}

/// 1,000 members join a room with 20 messages of history (the default
/// SQLite store), then one member says 500 lines of 1,000 bytes flat out, and one member
/// reads nothing until the talking is over. Before the delivery path held
/// traffic back for slow members, the join storm's presence alone
/// overflowed the first joiners' queues and cut them off.
#[test]
fn a_burst_after_a_join_storm_cuts_nobody_and_loses_nothing() {
    run_case(async {
        let members = 1000;
        let burst = 500u64;
        let last = HISTORY + burst;
        // Queues of 128 KiB, so that the stalled member's (behind its
        // kernel's 300 KB) overflows with half a megabyte of talk.
        let server = start_server(&settings(&[
            ("rate_per_sec", "1000000"),
            ("rate_burst", "1000000"),
            ("outbox_bytes", "131072"),
        ]));
        let mut talker = Peer::native(server.addr(), "talker").await;
        talker.join("storm").await;
        for i in 0..HISTORY {
            talker
                .send_json(json!({"type": "say", "room": "storm", "text": format!("old {i}")}))
                .await;
            talker.until_type("ok").await;
        }

        let stream = slow_link_socket().connect(server.addr()).await.unwrap();
        let mut stalled = Peer::from_stream(stream, "stalled");
        stalled.hello("stalled").await;
        stalled
            .send_json(json!({"type": "join", "room": "storm", "after": 0}))
            .await;

        let mut readers = Vec::new();
        for i in 0..members {
            let mut peer = Peer::native(server.addr(), &format!("m{i}")).await;
            // Every member starts from the room's first message, however
            // late its join is served.
            peer.send_json(json!({"type": "join", "room": "storm", "after": 0}))
                .await;
            readers.push(tokio::spawn(read_all(peer, last)));
        }

        let mut talker = talker.into_talker();
        let line = json!({"type": "say", "room": "storm", "text": "x".repeat(1000)});
        let lines = format!("{line}\n").repeat(burst as usize);
        talker.send_raw(lines.as_bytes()).await;

        let mut lagged = 0;
        for reader in readers {
            if reader.await.expect("a reader") > 0 {
                lagged += 1;
            }
        }
        // The stalled member reads only now.
        let stalled_lags = read_all(stalled, last).await;
        assert!(stalled_lags > 0, "the stalled member never fell behind");
        println!(
            "join storm: {members} members got all {last} messages in order; \
             {lagged} fell behind and were caught up; the stalled one after {stalled_lags} notices"
        );
        drop(talker);
    });
}

/// One connection sees a room's messages, private messages and presence in
/// the order the server handled them (docs/protocol.md, "Order on one
/// connection"): bob sends 100 requests without waiting, three room
/// lines (which the server hands to the room as one run) then a private
/// line to alice, and again, while carol joins and leaves in
/// the middle; alice sees bob's lines interleaved exactly as sent, and
/// carol's `joined` and `left` between the lines carol's joining split.
#[test]
fn a_connection_sees_room_private_and_presence_frames_in_order() {
    run_case(async {
        let server = start_server(&settings(&[
            ("rate_per_sec", "1000000"),
            ("rate_burst", "1000000"),
        ]));
        let mut alice = Peer::native_in(server.addr(), "alice", "lobby").await;
        let mut bob = Peer::native_in(server.addr(), "bob", "lobby").await;
        alice
            .until_line_where(|l| l.contains(r#""nick":"bob""#))
            .await;

        // Runs of three `say`s, which the server hands to the room as a
        // run, each ended by a whisper.
        let is_say = |i: usize| i % 4 != 3;
        let pipelined = |from: usize, to: usize| {
            (from..to)
                .map(|i| {
                    let request = if is_say(i) {
                        json!({"ref": format!("r{i}"), "type": "say", "room": "lobby", "text": format!("line {i}")})
                    } else {
                        json!({"ref": format!("r{i}"), "type": "whisper", "to": "alice", "text": format!("line {i}")})
                    };
                    format!("{request}\n")
                })
                .collect::<String>()
        };
        bob.send_raw(pipelined(0, 50).as_bytes()).await;
        // Every one of the first 50 is handled before carol joins.
        for _ in 0..50 {
            bob.until_type("ok").await;
        }
        let mut carol = Peer::native_in(server.addr(), "carol", "lobby").await;
        bob.until_line_where(|l| l.contains(r#""nick":"carol""#))
            .await;
        bob.send_raw(pipelined(50, 100).as_bytes()).await;
        for _ in 50..100 {
            bob.until_type("ok").await;
        }
        carol
            .send_json(json!({"type": "quit", "reason": "done"}))
            .await;
        carol.until_closed().await;

        let mut seen = Vec::new();
        while seen.last().map(String::as_str) != Some("left carol") {
            let frame = alice.frame().await;
            let kind = frame["type"].as_str().unwrap_or_default();
            let what = match kind {
                "message" | "private" => format!("{kind} {}", frame["text"].as_str().unwrap()),
                "joined" | "left" => format!("{kind} {}", frame["nick"].as_str().unwrap()),
                _ => continue,
            };
            seen.push(what);
        }
        let mut expected: Vec<String> = Vec::new();
        for i in 0..100 {
            if i == 50 {
                expected.push("joined carol".into());
            }
            let kind = if is_say(i) { "message" } else { "private" };
            expected.push(format!("{kind} line {i}"));
        }
        expected.push("left carol".into());
        assert_eq!(seen, expected);
    });
}

/// Members that stop reading spend the server's queue budget between them
/// and no more, while the members that read get every line at once: 8
/// members on slow links stop reading while one member says 600 lines of
/// 1,000 bytes, with 128 KiB of budget for all queues (each may hold
/// 64 KiB without it, and 128 KiB in all). The budget is spent, never
/// overdrawn; the readers get all 600 in order; each stalled member, when
/// it reads again, gets a lag notice and then every line once; and the
/// budget is given back once the queues have drained.
#[test]
fn stalled_members_spend_the_queue_budget_and_no_more_and_the_rest_keep_up() {
    run_case(async {
        let budget: u64 = 128 * 1024;
        let burst = 600u64;
        let server = Server::builder()
            .listen("127.0.0.1:0")
            .set("admin_listen", "127.0.0.1:0")
            .settings(&settings(&[
                ("rate_per_sec", "1000000"),
                ("rate_burst", "1000000"),
                ("outbox_bytes", "131072"),
                ("queue_budget_bytes", "131072"),
            ]))
            .start();
        let admin = admin_addr(&server);
        let reserved = || {
            let (status, body) = get(admin, "/metrics");
            assert_eq!(status, 200);
            sample(&body, "chatroom_queue_budget_reserved_bytes")
        };
        let mut talker = Peer::native_in(server.addr(), "talker", "budget").await;
        let mut stalled = Vec::new();
        for i in 0..8 {
            let stream = slow_link_socket().connect(server.addr()).await.unwrap();
            let mut peer = Peer::from_stream(stream, &format!("stalled{i}"));
            peer.hello(&format!("stalled{i}")).await;
            peer.join("budget").await;
            stalled.push(peer);
        }
        let mut readers = Vec::new();
        for i in 0..10 {
            let peer = Peer::native_in(server.addr(), &format!("r{i}"), "budget").await;
            readers.push(peer);
        }
        // Every member is in before the first line.
        talker
            .send_json(json!({"type": "who", "room": "budget"}))
            .await;
        talker.until_type("members").await;
        let readers: Vec<_> = readers
            .into_iter()
            .map(|peer| tokio::spawn(read_all(peer, burst)))
            .collect();

        let mut talker = talker.into_talker();
        let line = json!({"type": "say", "room": "budget", "text": "x".repeat(1000)});
        let lines = format!("{line}\n").repeat(burst as usize);
        talker.send_raw(lines.as_bytes()).await;
        for reader in readers {
            reader.await.expect("a reader");
        }

        // The stalled members' queues spent the budget, and no more: a
        // queue draws on it in 4 KiB steps, so "spent" is within a step
        // per queue of it. (Without it they would have held 64 KiB each
        // beyond their first 64 KiB: 512 KiB.)
        let (status, body) = get(admin, "/metrics");
        assert_eq!(status, 200);
        let peak = sample(&body, "chatroom_queue_budget_peak_bytes");
        assert!(peak <= budget, "{peak} reserved of {budget}");
        assert!(
            peak > budget - 8 * 4096,
            "the stalled members spent only {peak}"
        );
        assert!(reserved() <= budget);

        for peer in stalled {
            let lags = read_all(peer, burst).await;
            assert!(lags > 0, "a stalled member never fell behind");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while reserved() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the budget was not given back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(talker);
    });
}

/// A person on `nc` who pastes 3,000 lines at once (with queues of 16
/// frames: a hundred times what its queue takes of its own frames) is not
/// cut off: answers a text client is
/// never shown (the `ok` of each line) take no room in its queue. Before,
/// they filled it while the server worked through the paste, and the
/// paster was disconnected as too slow though it read everything. Another
/// person sees every line, in order.
#[test]
fn a_text_user_pasting_thousands_of_lines_is_not_cut_off() {
    run_case(async {
        let lines = 3000;
        let server = start_server(&settings(&[
            ("rate_per_sec", "1000000"),
            ("rate_burst", "1000000"),
            ("outbox_frames", "16"),
        ]));
        let mut reader = Peer::text(server.addr()).await;
        let mut paster = Peer::text(server.addr()).await;
        let joined = format!("{} joined", paster.nick());
        reader.until_line_where(|l| l.contains(&joined)).await;

        let paste: String = (0..lines).map(|i| format!("pasted line {i}\n")).collect();
        paster.send_raw(paste.as_bytes()).await;
        let mut i = 0;
        while i < lines {
            let line = reader.line().await;
            // The reader may fall behind the paste too; it is told, and
            // given the lines it missed.
            if line.starts_with("* you fell behind") {
                continue;
            }
            assert!(
                line.ends_with(&format!("pasted line {i}")),
                "line {i}: {line:?}"
            );
            i += 1;
        }
        // The paster is still there, and answers.
        paster.send("/who").await;
        let who = paster.until_line_where(|l| l.contains(reader.nick())).await;
        assert!(!who.contains("bye"), "{who}");
    });
}
