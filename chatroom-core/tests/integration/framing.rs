use std::time::Duration;

use chatroom_core::testing::{Peer, TestServer};
use serde_json::json;

#[tokio::test]
async fn a_line_split_across_writes_is_one_message() {
    let server = TestServer::start().await;
    let mut a = Peer::text(server.addr).await;
    let mut b = Peer::text(server.addr).await;
    a.until_line(&format!("* {} joined #lobby", b.nick())).await;
    for part in ["hel", "lo wor", "ld\n"] {
        b.send_raw(part.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(a.line().await, format!("<{}> hello world", b.nick()));
    server.stop().await;
}

#[tokio::test]
async fn two_lines_in_one_write_are_two_messages_and_crlf_ends_a_line() {
    let server = TestServer::start().await;
    let mut a = Peer::text(server.addr).await;
    let mut b = Peer::text(server.addr).await;
    a.until_line(&format!("* {} joined #lobby", b.nick())).await;
    b.send_raw(b"first\r\nsecond\nthird\r\n").await;
    for text in ["first", "second", "third"] {
        assert_eq!(a.line().await, format!("<{}> {text}", b.nick()));
    }
    server.stop().await;
}

#[tokio::test]
async fn native_frames_glued_in_one_write_are_each_answered() {
    let server = TestServer::start().await;
    let mut p = Peer::connect(server.addr).await;
    p.send_raw(
        b"{\"type\":\"hello\",\"version\":1,\"nick\":\"glue\"}\n{\"ref\":\"1\",\"type\":\"ping\"}\r\n{\"ref\":\"2\",\"type\":\"ping\"}\n",
    )
    .await;
    assert_eq!(p.frame().await["type"], "welcome");
    assert_eq!(p.frame().await, json!({"ref": "1", "type": "pong"}));
    assert_eq!(p.frame().await, json!({"ref": "2", "type": "pong"}));
    server.stop().await;
}

#[tokio::test]
async fn an_over_long_line_is_refused_without_ending_the_connection() {
    let server = TestServer::start().await;
    let mut a = Peer::native_in(server.addr, "long", "lobby").await;
    let mut b = Peer::native_in(server.addr, "watch", "lobby").await;
    a.until_type("joined").await;
    // 10 MiB with no newline, then the newline and a normal frame.
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..10 {
        a.send_raw(&chunk).await;
    }
    a.send_raw(b"\n{\"ref\":\"after\",\"type\":\"ping\"}\n")
        .await;
    let e = a.frame().await;
    assert_eq!(e["code"], "frame_too_long");
    assert_eq!(a.frame().await, json!({"ref": "after", "type": "pong"}));
    a.send_json(json!({"type": "say", "room": "lobby", "text": "still here"}))
        .await;
    assert_eq!(b.until_type("message").await["text"], "still here");
    server.stop().await;
}

#[tokio::test]
async fn bad_bytes_get_typed_errors_in_both_dialects() {
    let server = TestServer::start().await;
    let mut n = Peer::native(server.addr, "bytes").await;
    n.send_raw(b"{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"\xff\"}\n")
        .await;
    assert_eq!(n.frame().await["code"], "bad_utf8");
    n.send("{not json").await;
    assert_eq!(n.frame().await["code"], "bad_frame");
    n.send_json(json!({"type": "dance"})).await;
    assert_eq!(n.frame().await["code"], "bad_frame");
    n.send_json(json!({"type": "join", "room": "bad room"}))
        .await;
    assert_eq!(n.frame().await["code"], "invalid_name");
    n.send_json(json!({"type": "join", "room": "lobby"})).await;
    n.until_type("members").await;
    n.send_json(json!({"type": "say", "room": "lobby", "text": "esc \u{1b}[2J"}))
        .await;
    assert_eq!(n.frame().await["code"], "invalid_text");
    n.send_json(json!({"type": "say", "room": "lobby", "text": "x".repeat(4097)}))
        .await;
    assert_eq!(n.frame().await["code"], "text_too_long");

    let mut t = Peer::text(server.addr).await;
    t.send_raw(b"caf\xe9\n").await;
    assert_eq!(t.line().await, "! line is not valid utf-8");
    t.send("/nick bad\u{1b}[31m").await;
    assert!(t.line().await.starts_with("! nick name may only hold"));
    server.stop().await;
}

#[tokio::test]
async fn a_text_line_sent_before_the_greeting_is_not_lost() {
    let server = TestServer::start().await;
    let mut watcher = Peer::native_in(server.addr, "watcher", "lobby").await;
    let mut quick = Peer::connect(server.addr).await;
    // Typed at once, inside the window the server waits to pick a dialect.
    quick.send("/nick quick").await;
    assert!(quick.line().await.starts_with("* welcome"));
    let renamed = watcher.until_type("nick_changed").await;
    assert_eq!(renamed["new"], "quick");
    server.stop().await;
}
