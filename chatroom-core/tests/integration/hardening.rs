//! Regressions found while hardening the server (issue 6): each test pins
//! one bug that the abuse suite or the fuzzers turned up.

use std::time::{Duration, Instant};

use chatroom_core::server::{LimitsConfig, ServerConfig};
use chatroom_core::testing::{Peer, TestServer};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A text client that types a whole line before the greeting (a script
/// piping into `nc`, say) must not lose it: the first line arrives during
/// the dialect sniff and used to be dropped there.
#[tokio::test]
async fn a_text_line_sent_before_the_greeting_is_not_lost() {
    let server = TestServer::start().await;
    let mut listener = Peer::native_in(server.addr, "listener", "lobby").await;
    let mut eager = TcpStream::connect(server.addr).await.unwrap();
    eager
        .write_all(b"first words\nsecond words\n")
        .await
        .unwrap();
    let first = listener.until_type("message").await;
    assert_eq!(first["text"], "first words");
    let second = listener.until_type("message").await;
    assert_eq!(second["text"], "second words");
    server.stop().await;
}

/// A client that stops reading while its socket is full, and then goes
/// silent, is timed out; its connection (and its slot under
/// `max_connections`) must then be released, even though the frames
/// queued for it can never be written. The session used to wait for its
/// writer without a bound, so the slot was held for as long as the peer
/// stayed stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_peer_with_a_full_socket_releases_its_slot() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(
            LimitsConfig::default()
                .with_max_connections(2)
                .with_ping_interval_secs(1)
                .with_idle_timeout_secs(2)
                .with_outbox_frames(1_000_000)
                .with_outbox_bytes(256 * 1024 * 1024)
                .with_rate_per_sec(100_000.0)
                .with_rate_burst(100_000),
        ),
    )
    .await;
    let stalled = Peer::native_in(server.addr, "stalled", "lobby").await;
    let last_heard = Instant::now();
    let mut talker = Peer::native_in(server.addr, "talker", "lobby")
        .await
        .into_talker();
    // About 16 MiB: more than the kernel buffers of a loopback socket hold,
    // far less than the queue limit, so the stalled peer is never cut off.
    let text = "s".repeat(4000);
    for _ in 0..4000 {
        talker
            .send_json(json!({"type": "say", "room": "lobby", "text": text}))
            .await;
    }
    let published = Instant::now();
    // The talker stays alive; the stalled peer's idle timeout (2 s) must
    // free its slot, so a third client gets in.
    let admitted = loop {
        talker.send_json(json!({"type": "ping"})).await;
        let mut probe = Peer::connect(server.addr).await;
        probe
            .send_json(json!({"type": "hello", "version": 1, "nick": "probe"}))
            .await;
        let reply = probe.frame().await;
        if reply["type"] == "welcome" {
            break last_heard.elapsed();
        }
        assert_eq!(reply["code"], "server_full", "{reply}");
        assert!(
            published.elapsed() < Duration::from_secs(10),
            "the stalled peer's slot was never released"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(admitted >= Duration::from_secs(2), "{admitted:?}");
    drop(stalled);
    server.stop().await;
}

/// A burst of connections larger than the standard library's listen
/// backlog (128) must not be dropped while the server is busy: a dropped
/// SYN costs its client a one-second retransmission, which turned a
/// 20,000-connection churn from 4 s into 44 s. Nothing accepts here, so
/// only the kernel's queue holds the connections.
#[tokio::test]
async fn a_burst_of_connections_fits_the_listen_backlog() {
    let listener = chatroom_core::transport::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_socket_addr();
    let mut held = Vec::new();
    for _ in 0..600 {
        let stream = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
            .await
            .expect("the kernel completes the handshake at once")
            .unwrap();
        held.push(stream);
    }
    drop(listener);
}

/// `bye` is the last frame a client gets. Room traffic from other threads
/// could still land in a closing session's queue between its `bye` and its
/// leaving the rooms, so a text client timed out together with many others
/// saw their `left` lines after its own `* bye`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_follows_bye_when_many_leave_at_once() {
    let server = TestServer::with_config(
        ServerConfig::default().with_limits(
            LimitsConfig::default()
                .with_text_idle_timeout_secs(1)
                .with_max_connections_per_ip(1000)
                .with_connect_burst_per_ip(1000),
        ),
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..500 {
        silent.push(Peer::connect(server.addr).await);
    }
    let mut endings = Vec::new();
    for mut p in silent {
        endings.push(tokio::spawn(async move { p.until_closed().await }));
    }
    for ending in endings {
        let lines = ending.await.unwrap();
        assert_eq!(
            lines.last().map(String::as_str),
            Some("* bye: idle timeout"),
            "{:?}",
            &lines[lines.len().saturating_sub(3)..]
        );
    }
    server.stop().await;
}
