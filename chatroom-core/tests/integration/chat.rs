use chatroom_core::testing::{Peer, TestServer};
use serde_json::json;

#[tokio::test]
async fn two_native_clients_chat() {
    let server = TestServer::start().await;
    let mut alice = Peer::native_in(server.addr, "alice", "lobby").await;
    let mut bob = Peer::native_in(server.addr, "bob", "lobby").await;
    assert_eq!(
        alice.frame().await,
        json!({"type": "joined", "room": "lobby", "nick": "bob"})
    );

    alice
        .send_json(json!({"ref": "s1", "type": "say", "room": "lobby", "text": "hi bob"}))
        .await;
    assert_eq!(
        alice.frame().await,
        json!({"ref": "s1", "type": "ok", "room": "lobby", "id": 1})
    );
    let got = bob.frame().await;
    assert_eq!(got["type"], "message");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["text"], "hi bob");
    assert_eq!(got["id"], 1);
    assert!(got["ts"].as_u64().unwrap() > 1_600_000_000_000);

    bob.send_json(json!({"type": "say", "room": "lobby", "text": "hello alice"}))
        .await;
    let got = alice.frame().await;
    assert_eq!(
        (got["from"].as_str(), got["id"].as_u64()),
        (Some("bob"), Some(2))
    );
    server.stop().await;
}

#[tokio::test]
async fn native_and_text_clients_share_a_room() {
    let server = TestServer::start().await;
    let mut native = Peer::native_in(server.addr, "nat", "lobby").await;
    let mut text = Peer::text(server.addr).await;
    assert_eq!(native.until_type("joined").await["nick"], text.nick());

    text.send("hello from nc").await;
    let got = native.until_type("message").await;
    assert_eq!(got["from"], text.nick());
    assert_eq!(got["text"], "hello from nc");

    native
        .send_json(json!({"type": "say", "room": "lobby", "text": "hi text"}))
        .await;
    assert_eq!(text.line().await, "<nat> hi text");
    native
        .send_json(json!({"type": "say", "room": "lobby", "text": "waves", "action": true}))
        .await;
    assert_eq!(text.line().await, "* nat waves");
    server.stop().await;
}

#[tokio::test]
async fn the_sender_does_not_get_its_own_line_back() {
    let server = TestServer::start().await;
    let mut a = Peer::text(server.addr).await;
    let mut b = Peer::text(server.addr).await;
    a.until_line(&format!("* {} joined #lobby", b.nick())).await;
    a.send("only for b").await;
    assert_eq!(b.line().await, format!("<{}> only for b", a.nick()));
    a.silent_for(std::time::Duration::from_millis(300)).await;
    server.stop().await;
}

#[tokio::test]
async fn rooms_isolate_their_messages() {
    let server = TestServer::start().await;
    let mut a = Peer::native_in(server.addr, "a", "rust").await;
    let mut b = Peer::native_in(server.addr, "b", "go").await;
    let mut c = Peer::native_in(server.addr, "c", "rust").await;
    a.until_type("joined").await;
    a.send_json(json!({"type": "say", "room": "rust", "text": "borrowck"}))
        .await;
    assert_eq!(c.until_type("message").await["text"], "borrowck");
    b.send_json(json!({"type": "say", "room": "rust", "text": "sneaky"}))
        .await;
    assert_eq!(b.frame().await["code"], "not_in_room");
    b.silent_for(std::time::Duration::from_millis(200)).await;
    c.silent_for(std::time::Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn replies_echo_the_request_ref() {
    let server = TestServer::start().await;
    let mut a = Peer::native(server.addr, "refs").await;
    a.send_json(json!({"ref": "p", "type": "ping"})).await;
    assert_eq!(a.frame().await, json!({"ref": "p", "type": "pong"}));
    a.send_json(json!({"ref": "j", "type": "join", "room": "Lobby"}))
        .await;
    assert_eq!(a.frame().await["type"], "joined");
    assert_eq!(
        a.frame().await,
        json!({"ref": "j", "type": "members", "room": "Lobby", "members": ["refs"], "last_id": 0})
    );
    a.send_json(json!({"ref": "r", "type": "rooms"})).await;
    assert_eq!(
        a.frame().await,
        json!({"ref": "r", "type": "rooms", "rooms": [{"name": "Lobby", "members": 1}]})
    );
    // A frame that cannot be decoded still gets its ref back.
    a.send_json(json!({"ref": "bad", "type": "say", "room": "lobby"}))
        .await;
    let e = a.frame().await;
    assert_eq!(
        (e["ref"].as_str(), e["code"].as_str()),
        (Some("bad"), Some("bad_frame"))
    );
    a.send_json(json!({"ref": "x".repeat(65), "type": "ping"}))
        .await;
    assert_eq!(a.frame().await["code"], "bad_ref");
    server.stop().await;
}

#[tokio::test]
async fn nicks_are_unique_ignoring_case_and_a_taken_hello_can_retry() {
    let server = TestServer::start().await;
    let _alice = Peer::native(server.addr, "alice").await;
    let mut other = Peer::connect(server.addr).await;
    other
        .send_json(json!({"ref": "h", "type": "hello", "version": 1, "nick": "ALICE"}))
        .await;
    let e = other.frame().await;
    assert_eq!(
        (e["ref"].as_str(), e["code"].as_str()),
        (Some("h"), Some("nick_taken"))
    );
    other
        .send_json(json!({"type": "hello", "version": 1, "nick": "alice2"}))
        .await;
    assert_eq!(other.frame().await["nick"], "alice2");
    // Renaming onto a taken nick fails the same way.
    other
        .send_json(json!({"type": "nick", "nick": "Alice"}))
        .await;
    assert_eq!(other.frame().await["code"], "nick_taken");
    server.stop().await;
}

#[tokio::test]
async fn a_native_client_must_say_hello_first() {
    let server = TestServer::start().await;
    let mut p = Peer::connect(server.addr).await;
    p.send_json(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(p.frame().await["code"], "handshake_required");
    p.send_json(json!({"type": "hello", "version": 99})).await;
    assert_eq!(p.frame().await["code"], "unsupported_version");
    assert_eq!(p.frame().await["type"], "bye");
    assert_eq!(p.try_line().await, None);
    server.stop().await;
}

#[tokio::test]
async fn a_hello_without_nick_gets_a_guest_nick() {
    let server = TestServer::start().await;
    let mut p = Peer::connect(server.addr).await;
    p.send_json(json!({"type": "hello", "version": 1})).await;
    let welcome = p.frame().await;
    assert_eq!(welcome["nick"], "guest");
    assert_eq!(welcome["version"], 1);
    assert_eq!(welcome["server"], "chatroom");
    server.stop().await;
}

#[tokio::test]
async fn text_commands_behave() {
    let server = TestServer::start().await;
    let mut t = Peer::text(server.addr).await;
    let mut n = Peer::native_in(server.addr, "nat", "lobby").await;
    t.until_line("* nat joined #lobby").await;

    t.send("/nick tom").await;
    assert_eq!(
        t.line().await,
        format!("* {} is now known as tom", t.nick())
    );
    assert_eq!(
        n.until_type("nick_changed").await,
        json!({"type": "nick_changed", "old": t.nick(), "new": "tom"})
    );

    t.send("/who").await;
    assert_eq!(t.line().await, "* in #lobby: nat, tom");
    t.send("/rooms").await;
    assert_eq!(t.line().await, "* rooms: #lobby (2)");

    t.send("/me waves").await;
    assert_eq!(n.until_type("message").await["action"], true);

    t.send("/msg nat psst").await;
    assert_eq!(t.line().await, "*tom* -> *nat* psst");
    assert_eq!(n.until_type("private").await["text"], "psst");

    t.send("/msg nobody hi").await;
    assert_eq!(t.line().await, "! no user named nobody");

    t.send("/frobnicate").await;
    assert_eq!(t.line().await, "! unknown command /frobnicate: try /help");

    t.send("/help").await;
    assert_eq!(t.line().await, "commands:");
    t.until_line("  anything else is said to your current room")
        .await;

    t.send("/join #rust").await;
    assert_eq!(t.line().await, "* tom joined #rust");
    assert_eq!(t.line().await, "* tom left #lobby");
    assert_eq!(t.line().await, "* in #rust: tom");
    assert_eq!(n.until_type("left").await["nick"], "tom");
    t.send("in rust now").await;
    n.silent_for(std::time::Duration::from_millis(200)).await;

    t.send("/leave").await;
    assert_eq!(t.line().await, "* tom left #rust");
    t.send("nowhere").await;
    assert_eq!(t.line().await, "! you are in no room: /join ROOM first");

    t.send("/quit see you").await;
    assert_eq!(t.line().await, "* bye: quit");
    assert_eq!(t.try_line().await, None);
    server.stop().await;
}

#[tokio::test]
async fn a_quit_reason_reaches_the_room() {
    let server = TestServer::start().await;
    let mut a = Peer::native_in(server.addr, "stay", "lobby").await;
    let mut b = Peer::native_in(server.addr, "go", "lobby").await;
    a.until_type("joined").await;
    b.send_json(json!({"type": "quit", "reason": "lunch"}))
        .await;
    assert_eq!(b.frame().await["type"], "bye");
    assert_eq!(
        a.frame().await,
        json!({"type": "left", "room": "lobby", "nick": "go", "reason": "lunch"})
    );
    server.stop().await;
}

#[tokio::test]
async fn a_text_client_resumes_a_room_by_id_once_in_order_then_live() {
    let server = TestServer::start().await;
    let mut text = Peer::text(server.addr).await;
    let mut nat = Peer::native_in(server.addr, "nat", "lobby").await;
    for n in 1..=5 {
        nat.send_json(json!({"type": "say", "room": "lobby", "text": format!("m{n}")}))
            .await;
        assert_eq!(nat.until_type("ok").await["id"], n);
    }
    text.until_line("<nat> m5").await;

    text.send("/resume 2").await;
    assert_eq!(
        text.line().await,
        "* #lobby: the messages after id 2 follow"
    );
    for n in 3..=5 {
        assert_eq!(text.line().await, format!("<nat> m{n}"));
    }
    nat.send_json(json!({"type": "say", "room": "lobby", "text": "live"}))
        .await;
    assert_eq!(text.line().await, "<nat> live");
    text.silent_for(std::time::Duration::from_millis(200)).await;

    text.send("/resume x").await;
    assert_eq!(text.line().await, "! usage: /resume ID");
    server.stop().await;
}
