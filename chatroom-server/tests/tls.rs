//! TLS through the real binary: `--tls-cert`/`--tls-key` with certificates
//! made here (none are checked in), a client that trusts the test CA, and
//! clear start-up errors for bad files.

mod common;

use std::time::Duration;

use chatroom_core::client::{Client, ClientOptions};
use chatroom_core::protocol::{Nickname, RoomName};
use chatroom_core::testing::TestPki;
use chatroom_core::transport::{TlsConnector, tls};
use common::server::{Server, ServerBuilder};

fn server(pki: &TestPki, cert: &str, key: &str) -> ServerBuilder {
    Server::builder()
        .listen("127.0.0.1:0")
        .arg("--tls-cert")
        .arg(pki.path(cert))
        .arg("--tls-key")
        .arg(pki.path(key))
        .env("CHATROOM_HISTORY", "memory")
}

#[tokio::test]
async fn the_binary_serves_chat_over_tls() {
    let pki = TestPki::new("binary-serve");
    let child = server(&pki, "cert.pem", "key.pem").start();
    let addr = child.addr().to_string();
    let config = tls::client_config(Some(&pki.path("ca.pem"))).unwrap();
    let connector = TlsConnector::new(addr, config).unwrap();
    let options = ClientOptions::new().with_nick(Nickname::new("secure").unwrap());
    let (client, _events) = tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect_with(connector, options),
    )
    .await
    .expect("connects in time")
    .expect("tls handshake and hello succeed");
    let members = client.join(&RoomName::new("lobby").unwrap()).await.unwrap();
    assert_eq!(members, vec![Nickname::new("secure").unwrap()]);
    drop(child);
}

#[test]
fn missing_or_mismatched_keys_are_clear_errors_at_start() {
    let pki = TestPki::new("binary-bad");
    for (cert, key, expected) in [
        ("cert.pem", "missing.pem", "missing.pem"),
        ("cert.pem", "other-key.pem", "tls setup failed"),
    ] {
        let output = server(&pki, cert, key).run();
        let stderr = output.stderr;
        assert_eq!(output.code, Some(2), "{stderr}");
        assert!(
            stderr.lines().count() == 1 && stderr.starts_with("error: "),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{stderr}");
    }
}
