#[cfg(feature = "sqlite")]
use std::path::PathBuf;
#[cfg(feature = "sqlite")]
use std::sync::Arc;
#[cfg(feature = "sqlite")]
use std::time::Duration;

#[cfg(feature = "sqlite")]
use chatroom_core::history::{SqliteStore, SyncMode};
#[cfg(feature = "sqlite")]
use chatroom_core::server::{HistoryConfig, Server};
use chatroom_core::server::{LimitsConfig, ServerConfig};
use chatroom_core::testing::{Peer, TestServer};
use serde_json::{Value, json};

fn fast() -> ServerConfig {
    ServerConfig::default().with_limits(
        LimitsConfig::default()
            .with_rate_per_sec(100_000.0)
            .with_rate_burst(100_000),
    )
}

async fn say_many(peer: &mut Peer, room: &str, texts: impl IntoIterator<Item = String>) -> u64 {
    let mut last = 0;
    let texts: Vec<String> = texts.into_iter().collect();
    for text in &texts {
        peer.send_json(json!({"type": "say", "room": room, "text": text}))
            .await;
    }
    for _ in &texts {
        last = peer.until_type("ok").await["id"].as_u64().unwrap();
    }
    last
}

fn ids(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(|f| f["id"].as_u64().unwrap()).collect()
}

/// Reads `n` message frames, skipping other frames.
async fn messages(peer: &mut Peer, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let f = peer.frame().await;
        if f["type"] == "message" {
            out.push(f);
        }
    }
    out
}

#[cfg(feature = "sqlite")]
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatroom-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn a_joiner_gets_the_last_messages_then_the_live_ones() {
    let server = TestServer::with_config(fast()).await;
    let mut alice = Peer::native_in(server.addr, "alice", "lobby").await;
    say_many(&mut alice, "lobby", (1..=30).map(|i| format!("m{i}"))).await;

    let mut bob = Peer::native(server.addr, "bob").await;
    bob.send_json(json!({"ref": "j", "type": "join", "room": "lobby"}))
        .await;
    assert_eq!(bob.frame().await["type"], "joined");
    let backlog = messages(&mut bob, 20).await;
    assert_eq!(ids(&backlog), (11..=30).collect::<Vec<_>>());
    assert_eq!(backlog[0]["text"], "m11");
    assert_eq!(bob.frame().await["ref"], "j");
    alice
        .send_json(json!({"type": "say", "room": "lobby", "text": "live"}))
        .await;
    assert_eq!(bob.until_type("message").await["id"], 31);

    // A client may ask for fewer, or none.
    let mut carol = Peer::native(server.addr, "carol").await;
    carol
        .send_json(json!({"type": "join", "room": "lobby", "history": 2}))
        .await;
    carol.frame().await;
    assert_eq!(ids(&messages(&mut carol, 2).await), vec![30, 31]);
    let mut dave = Peer::native(server.addr, "dave").await;
    dave.send_json(json!({"type": "join", "room": "lobby", "history": 0}))
        .await;
    assert_eq!(dave.frame().await["type"], "joined");
    assert_eq!(dave.frame().await["type"], "members");
    server.stop().await;
}

#[tokio::test]
async fn history_pages_go_both_ways_and_bad_cursors_get_typed_errors() {
    let server = TestServer::with_config(fast()).await;
    let mut a = Peer::native_in(server.addr, "pager", "books").await;
    say_many(&mut a, "books", (1..=10).map(|i| format!("p{i}"))).await;

    a.send_json(json!({"ref": "1", "type": "history", "room": "books", "limit": 3}))
        .await;
    let page = a.until_type("history").await;
    assert_eq!(page["ref"], "1");
    assert_eq!(ids(page["messages"].as_array().unwrap()), vec![8, 9, 10]);
    assert_eq!(page["more"], true);

    a.send_json(json!({"type": "history", "room": "books", "before": 8, "limit": 100}))
        .await;
    let page = a.until_type("history").await;
    assert_eq!(
        ids(page["messages"].as_array().unwrap()),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(page["more"], false);

    a.send_json(json!({"type": "history", "room": "books", "after": 8}))
        .await;
    let page = a.until_type("history").await;
    assert_eq!(ids(page["messages"].as_array().unwrap()), vec![9, 10]);

    for (bad, code) in [
        (
            json!({"type": "history", "room": "books", "after": 11}),
            "bad_cursor",
        ),
        (
            json!({"type": "history", "room": "books", "before": 99}),
            "bad_cursor",
        ),
        (
            json!({"type": "history", "room": "books", "before": 2, "after": 1}),
            "bad_cursor",
        ),
        (
            json!({"type": "history", "room": "books", "limit": 0}),
            "bad_cursor",
        ),
        (
            json!({"type": "history", "room": "nowhere"}),
            "no_such_room",
        ),
    ] {
        a.send_json(bad.clone()).await;
        assert_eq!(a.until_type("error").await["code"], code, "{bad}");
    }
    server.stop().await;
}

#[tokio::test]
async fn text_clients_see_recent_lines_on_join_and_ask_with_slash_history() {
    let server = TestServer::with_config(fast()).await;
    let mut n = Peer::native_in(server.addr, "nat", "lobby").await;
    say_many(&mut n, "lobby", ["one".to_owned(), "two".to_owned()]).await;
    let mut t = Peer::connect(server.addr).await;
    let welcome = t.line().await;
    assert!(welcome.starts_with("* welcome"), "{welcome}");
    assert!(t.line().await.ends_with("joined #lobby"));
    assert_eq!(t.line().await, "<nat> one");
    assert_eq!(t.line().await, "<nat> two");
    t.send("/history 1").await;
    assert_eq!(
        t.line().await,
        "* history of #lobby: 1 message (more exist)"
    );
    assert_eq!(t.line().await, "<nat> two");
    server.stop().await;
}

#[cfg(feature = "sqlite")]
/// The resume promise: a client away while the room kept talking (more
/// than a room keeps in memory), and rejoining during a burst, gets every
/// message after its cursor once, in order, then the live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_delivers_every_missed_message_once_in_order_even_during_a_burst() {
    let dir = temp_dir("resume");
    let store = SqliteStore::open(&dir, SyncMode::Normal).unwrap();
    let server = TestServer::serve(Server::with_history(fast(), Arc::new(store)).unwrap()).await;
    let mut talker = Peer::native_in(server.addr, "talker", "busy").await;
    let mut away = Peer::native_in(server.addr, "away", "busy").await;
    talker.until_type("joined").await;
    say_many(&mut talker, "busy", (1..=5).map(|i| format!("before {i}"))).await;
    let seen = messages(&mut away, 5).await;
    let cursor = seen.last().unwrap()["id"].as_u64().unwrap();
    drop(away);

    // While it is away: more than the room's memory of 256 messages.
    say_many(&mut talker, "busy", (1..=600).map(|i| format!("away {i}"))).await;

    // The burst goes on while it comes back.
    let mut talker = talker.into_talker();
    let burst = tokio::spawn(async move {
        for i in 0..2000 {
            talker
                .send_json(json!({"type": "say", "room": "busy", "text": format!("burst {i}")}))
                .await;
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        talker
    });
    let mut back = Peer::connect(server.addr).await;
    back.send_json(
        json!({"type": "hello", "version": 1, "nick": "away", "resume": {"busy": cursor}}),
    )
    .await;
    assert_eq!(back.frame().await["type"], "welcome");
    let mut talker = burst.await.unwrap();
    talker
        .send_json(json!({"type": "say", "room": "busy", "text": "the end"}))
        .await;

    let mut got = Vec::new();
    loop {
        let f = back.frame().await;
        if f["type"] != "message" {
            continue;
        }
        got.push(f["id"].as_u64().unwrap());
        if f["text"] == "the end" {
            break;
        }
    }
    let last = *got.last().unwrap();
    assert_eq!(got, (cursor + 1..=last).collect::<Vec<_>>());
    assert_eq!(last, 5 + 600 + 2000 + 1);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_resume_cursors_get_typed_errors_and_the_rest_resumes() {
    let server = TestServer::with_config(fast()).await;
    let mut a = Peer::native_in(server.addr, "a", "real").await;
    say_many(&mut a, "real", ["x".to_owned()]).await;
    let mut p = Peer::connect(server.addr).await;
    p.send_json(
        json!({"ref": "h", "type": "hello", "version": 1, "nick": "p",
        "resume": {"real": 0, "future": 5, "nowhere": 1}}),
    )
    .await;
    assert_eq!(p.frame().await["type"], "welcome");
    let mut errors = Vec::new();
    let mut got = Vec::new();
    while errors.len() < 2 || got.is_empty() {
        let f = p.frame().await;
        match f["type"].as_str() {
            Some("error") => errors.push((f["code"].clone(), f["ref"].clone())),
            Some("message") => got.push(f["id"].as_u64().unwrap()),
            _ => {}
        }
    }
    assert_eq!(got, vec![1]);
    assert!(errors.iter().all(|(_, r)| r == "h"));
    // Neither room exists: no such room, whatever the cursor.
    assert!(
        errors.iter().all(|(c, _)| c == "no_such_room"),
        "{errors:?}"
    );

    let mut q = Peer::connect(server.addr).await;
    q.send_json(json!({"type": "hello", "version": 1, "nick": "q", "resume": {"real": 9}}))
        .await;
    q.frame().await;
    let e = q.frame().await;
    assert_eq!(e["code"], "bad_cursor");
    assert!(e["message"].as_str().unwrap().starts_with("#real: "), "{e}");
    server.stop().await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn history_and_ids_survive_a_restart() {
    let dir = temp_dir("restart");
    let open = || {
        Server::with_history(
            fast(),
            Arc::new(SqliteStore::open(&dir, SyncMode::Normal).unwrap()),
        )
        .unwrap()
    };
    let server = TestServer::serve(open()).await;
    let mut a = Peer::native_in(server.addr, "a", "keep").await;
    let last = say_many(&mut a, "keep", (1..=40).map(|i| format!("k{i}"))).await;
    assert_eq!(last, 40);
    server.stop().await;

    let server = TestServer::serve(open()).await;
    let mut b = Peer::native_in(server.addr, "b", "keep").await;
    b.send_json(json!({"type": "history", "room": "keep", "after": 0, "limit": 100}))
        .await;
    let page = b.until_type("history").await;
    assert_eq!(
        ids(page["messages"].as_array().unwrap()),
        (1..=40).collect::<Vec<_>>()
    );
    b.send_json(json!({"type": "say", "room": "keep", "text": "after restart"}))
        .await;
    assert_eq!(b.until_type("ok").await["id"], 41);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn retention_keeps_the_newest_messages_per_room() {
    let dir = temp_dir("retention");
    let config = fast().with_history(
        HistoryConfig::default()
            .with_max_messages(5)
            .with_sweep_secs(1),
    );
    let store = SqliteStore::open(&dir, SyncMode::Normal).unwrap();
    let server = TestServer::serve(Server::with_history(config, Arc::new(store)).unwrap()).await;
    let mut a = Peer::native_in(server.addr, "a", "short").await;
    say_many(&mut a, "short", (1..=12).map(|i| format!("r{i}"))).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    a.send_json(json!({"type": "leave", "room": "short"})).await;
    a.until_type("ok").await;
    a.send_json(json!({"type": "history", "room": "short", "after": 0}))
        .await;
    let page = a.until_type("history").await;
    assert_eq!(
        ids(page["messages"].as_array().unwrap()),
        (8..=12).collect::<Vec<_>>()
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
