use std::time::{Duration, Instant};

use chatroom_core::server::{LimitsConfig, ServerConfig};
use chatroom_core::testing::{Peer, TestServer};
use serde_json::json;

#[tokio::test]
async fn a_silent_client_is_greeted_in_text_within_300_ms() {
    let server = TestServer::start().await;
    let started = Instant::now();
    let mut p = Peer::connect(server.addr).await;
    let line = p.line().await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(
        line.starts_with("* welcome to chatroom, you are 127-0-0-1-"),
        "{line}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_full_server_refuses_with_server_full_and_keeps_serving_others() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(LimitsConfig::default().with_max_connections(2)),
    )
    .await;
    let mut a = Peer::native_in(server.addr, "a", "lobby").await;
    let mut b = Peer::native_in(server.addr, "b", "lobby").await;
    let mut third = Peer::connect(server.addr).await;
    let refused = third.frame().await;
    assert_eq!(refused["code"], "server_full");
    assert_eq!(third.try_line().await, None);
    a.until_type("joined").await;
    a.send_json(json!({"type": "say", "room": "lobby", "text": "still fine"}))
        .await;
    assert_eq!(b.until_type("message").await["text"], "still fine");
    drop(b);
    // A freed slot can be used again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Peer::native(server.addr, "c").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_falls_behind_is_caught_up_and_the_others_get_everything_in_order() {
    // Queues big enough that the healthy peers keep up even on a loaded
    // machine; the stalled one overflows its queue once its socket buffers
    // are full.
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(
            LimitsConfig::default()
                .with_outbox_frames(1024)
                .with_outbox_bytes(4 * 1024 * 1024)
                .with_rate_per_sec(100_000.0)
                .with_rate_burst(100_000),
        ),
    )
    .await;
    let mut stalled = Peer::native_in(server.addr, "stalled", "lobby").await;
    let mut healthy = Peer::native_in(server.addr, "healthy", "lobby").await;
    let mut talker = Peer::native_in(server.addr, "talker", "lobby")
        .await
        .into_talker();
    healthy.until_type("joined").await;

    // Enough bytes (20 MB) to fill the stalled peer's socket buffers and
    // then its queue; the healthy peer reads as it goes.
    let total = 5000u64;
    let text = "z".repeat(4000);
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < total as usize {
            let f = healthy.frame().await;
            match f["type"].as_str() {
                Some("message") => ids.push(f["id"].as_u64().unwrap()),
                Some("left") => panic!("nobody leaves: {f}"),
                _ => {}
            }
        }
        ids
    });
    for i in 0..total {
        talker
            .send_json(json!({"type": "say", "room": "lobby", "text": text}))
            .await;
        // A steady publisher, not a burst: the healthy reader keeps up.
        if i % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let ids = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("healthy reader finishes")
        .unwrap();
    assert_eq!(ids, (1..=total).collect::<Vec<_>>());

    // The stalled peer was not disconnected: once it reads again it gets
    // every message once, in order, with a `lagged` frame where the room
    // began holding traffic back, naming the first message held back.
    let mut got = Vec::new();
    let mut lags = 0;
    let catch_up = async {
        while got.len() < total as usize {
            let f = stalled.frame().await;
            match f["type"].as_str() {
                Some("message") => got.push(f["id"].as_u64().unwrap()),
                Some("lagged") => {
                    assert_eq!(f["room"], "lobby");
                    assert_eq!(f["first"].as_u64(), Some(got.len() as u64 + 1), "{f}");
                    lags += 1;
                }
                Some("error" | "bye" | "left") => panic!("{f}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), catch_up)
        .await
        .expect("the stalled peer catches up");
    assert_eq!(got, (1..=total).collect::<Vec<_>>());
    assert!(lags >= 1, "the stalled peer never fell behind");
    server.stop().await;
}

#[tokio::test]
async fn the_message_rate_is_limited_per_connection() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(
            LimitsConfig::default()
                .with_rate_per_sec(1.0)
                .with_rate_burst(3),
        ),
    )
    .await;
    let mut flood = Peer::native_in(server.addr, "flood", "lobby").await;
    let mut calm = Peer::native_in(server.addr, "calm", "lobby").await;
    flood.until_type("joined").await;
    // The join used one token; two more says pass, the third is dropped.
    for i in 0..3 {
        flood
            .send_json(
                json!({"ref": i.to_string(), "type": "say", "room": "lobby", "text": "spam"}),
            )
            .await;
    }
    assert_eq!(flood.frame().await["type"], "ok");
    assert_eq!(flood.frame().await["type"], "ok");
    let e = flood.frame().await;
    assert_eq!(
        (e["ref"].as_str(), e["code"].as_str()),
        (Some("2"), Some("rate_limited"))
    );
    assert_eq!(calm.until_type("message").await["id"], 1);
    assert_eq!(calm.until_type("message").await["id"], 2);
    calm.silent_for(Duration::from_millis(200)).await;
    server.stop().await;
}

#[tokio::test]
async fn continued_abuse_is_disconnected_and_others_chat_on() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(LimitsConfig::default().with_max_errors(5)),
    )
    .await;
    let mut bad = Peer::native_in(server.addr, "bad", "lobby").await;
    let mut good = Peer::native_in(server.addr, "good", "lobby").await;
    let mut other = Peer::native_in(server.addr, "other", "lobby").await;
    for _ in 0..10 {
        bad.send("garbage").await;
    }
    let lines = bad.until_closed().await;
    let codes: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|f| f["code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(codes.iter().filter(|c| *c == "bad_frame").count(), 6);
    assert_eq!(codes.last().map(String::as_str), Some("too_many_errors"));
    assert_eq!(
        lines.last().unwrap(),
        r#"{"type":"bye","reason":"too many errors"}"#
    );
    good.send_json(json!({"type": "say", "room": "lobby", "text": "after"}))
        .await;
    assert_eq!(other.until_type("message").await["text"], "after");
    server.stop().await;
}

#[tokio::test]
async fn a_quiet_native_client_is_pinged_and_kept_while_it_answers() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(
            LimitsConfig::default()
                .with_ping_interval_secs(1)
                .with_idle_timeout_secs(2),
        ),
    )
    .await;
    let mut live = Peer::native(server.addr, "live").await;
    let mut dead = Peer::native(server.addr, "dead").await;
    for _ in 0..3 {
        assert_eq!(live.frame().await["type"], "ping");
        live.send_json(json!({"type": "pong"})).await;
    }
    // `dead` never answered: pinged once, then cut off as idle.
    assert_eq!(dead.frame().await["type"], "ping");
    assert_eq!(dead.frame().await["code"], "idle_timeout");
    assert_eq!(dead.frame().await["type"], "bye");
    assert_eq!(dead.try_line().await, None);
    live.send_json(json!({"ref": "ok", "type": "ping"})).await;
    assert_eq!(live.until_type("pong").await["ref"], "ok");
    server.stop().await;
}

#[tokio::test]
async fn a_native_client_that_never_says_hello_is_closed() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(LimitsConfig::default().with_handshake_timeout_secs(1)),
    )
    .await;
    let mut p = Peer::connect(server.addr).await;
    p.send_raw(b"{\"type\":").await;
    let started = Instant::now();
    let lines = p.until_closed().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(lines[0].contains("handshake_required"), "{lines:?}");
    server.stop().await;
}

#[tokio::test]
async fn joining_more_rooms_than_allowed_is_refused() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(LimitsConfig::default().with_max_rooms_per_client(2)),
    )
    .await;
    let mut p = Peer::native(server.addr, "joiner").await;
    for room in ["r1", "r2"] {
        p.send_json(json!({"type": "join", "room": room})).await;
        p.until_type("members").await;
    }
    p.send_json(json!({"ref": "3", "type": "join", "room": "r3"}))
        .await;
    let e = p.frame().await;
    assert_eq!(
        (e["ref"].as_str(), e["code"].as_str()),
        (Some("3"), Some("too_many_rooms"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_text_client_idle_too_long_is_closed() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(LimitsConfig::default().with_text_idle_timeout_secs(1)),
    )
    .await;
    let mut t = Peer::text(server.addr).await;
    let lines = t.until_closed().await;
    assert_eq!(lines, vec!["! no data for too long", "* bye: idle timeout"]);
    server.stop().await;
}

#[tokio::test]
async fn one_address_may_hold_only_its_share_of_connections() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(LimitsConfig::default().with_max_connections_per_ip(2)),
    )
    .await;
    let mut a = Peer::native_in(server.addr, "a", "lobby").await;
    let b = Peer::native_in(server.addr, "b", "lobby").await;
    // The third sends its hello at once, as a real client does; the refusal
    // must still arrive intact, not be lost to a reset.
    let mut third = Peer::connect(server.addr).await;
    third
        .send_json(json!({"type": "hello", "version": 1, "nick": "c"}))
        .await;
    let refused = third.frame().await;
    assert_eq!(refused["code"], "too_many_connections", "{refused}");
    assert_eq!(third.try_line().await, None);
    a.until_type("joined").await;
    drop(b);
    a.until_type("left").await;
    Peer::native(server.addr, "c").await;
    server.stop().await;
}

#[tokio::test]
async fn one_address_connecting_too_fast_is_throttled() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(
            LimitsConfig::default()
                .with_connect_rate_per_ip(2.0)
                .with_connect_burst_per_ip(3),
        ),
    )
    .await;
    let mut kept = Vec::new();
    for i in 0..3 {
        kept.push(Peer::native(server.addr, &format!("n{i}")).await);
    }
    let mut fourth = Peer::connect(server.addr).await;
    let refused = fourth.frame().await;
    assert_eq!(refused["code"], "connecting_too_fast", "{refused}");
    assert_eq!(fourth.try_line().await, None);
    // Half a second at 2 per second gives one connection back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    Peer::native(server.addr, "later").await;
    server.stop().await;
}
