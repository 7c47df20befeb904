use std::time::Duration;

use chatroom_core::server::{LimitsConfig, ServerConfig};
use chatroom_core::testing::{Peer, TestServer};
use serde_json::json;

#[tokio::test]
async fn shutdown_says_bye_to_every_client_and_returns_in_time() {
    let server =
        TestServer::with_config(ServerConfig::default().with_shutdown_timeout_secs(3)).await;
    let mut native = Peer::native_in(server.addr, "n", "lobby").await;
    let mut text = Peer::text(server.addr).await;
    native.until_type("joined").await;
    let took = server.stop().await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(
        native.frame().await,
        json!({"type": "bye", "reason": "server shutting down"})
    );
    assert_eq!(native.try_line().await, None);
    let rest = text.until_closed().await;
    assert_eq!(
        rest.last().map(String::as_str),
        Some("* bye: server shutting down")
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_past_its_deadline_for_a_stuck_reader() {
    let server = TestServer::with_config(
        ServerConfig::default()
            .with_shutdown_timeout_secs(1)
            .with_limits(
                LimitsConfig::default()
                    .with_rate_per_sec(100_000.0)
                    .with_rate_burst(100_000)
                    .with_outbox_frames(100_000)
                    .with_outbox_bytes(64 * 1024 * 1024),
            ),
    )
    .await;
    let mut stuck = Peer::native_in(server.addr, "stuck", "lobby").await;
    let mut talker = Peer::native_in(server.addr, "talker", "lobby")
        .await
        .into_talker();
    stuck.until_type("joined").await;
    // The stuck client never reads: fill its socket buffers (about 12 MiB)
    // but stay under its queue limit so it is not cut off first.
    let text = "y".repeat(4000);
    for _ in 0..3000 {
        talker
            .send_json(json!({"type": "say", "room": "lobby", "text": text}))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = server.stop().await;
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}
