//! Chat nodes that log in to a `nats-server` asking for credentials or
//! TLS: started at debug level, so that a secret leaking into any log line
//! (the client library's included) can be caught.

use std::time::Duration;

use serde_json::json;

use super::json_client::JsonClient;
use super::server::{Server, ServerBuilder};
use super::temp::TempDir;

/// How long a node may take to listen or exit, and a client's read to
/// answer.
const DEADLINE: Duration = Duration::from_secs(20);

/// A node on NATS at `url` with `--set` for each of `settings`, its data
/// under `dir`, logging at debug level.
pub(crate) fn auth_node(dir: &TempDir, url: &str, settings: &[(&str, &str)]) -> ServerBuilder {
    Server::builder()
        .listen("127.0.0.1:0")
        .args(["--cluster", url])
        .data_dir(&dir.join("data"))
        .log_filter("debug")
        .settings(settings)
        .wait(DEADLINE)
}

/// Fails if any log line of `node` so far holds `secret`.
pub(crate) fn assert_never_logged(node: &Server, secret: &str) {
    for line in node.log_lines() {
        assert!(!line.contains(secret), "secret in a log line: {line}");
    }
}

/// A message said on node `a` is heard on node `b`: the two share rooms
/// through NATS.
pub(crate) fn assert_nodes_chat(a: &Server, b: &Server) {
    let mut alice = JsonClient::hello_in(a.addr(), "alice", "lobby", DEADLINE);
    let mut bob = JsonClient::hello_in(b.addr(), "bob", "lobby", DEADLINE);
    alice.send(&json!({"type": "say", "room": "lobby", "text": "over NATS"}));
    alice.next_of("ok");
    let heard = bob.next_of("message");
    assert_eq!(heard["from"], "alice");
    assert_eq!(heard["text"], "over NATS");
}
