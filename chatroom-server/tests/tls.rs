//! TLS through the real binary: `--tls-cert`/`--tls-key` with certificates
//! made here (none are checked in), a client that trusts the test CA,
//! clear start-up errors for bad files, and certificate rotation on
//! SIGHUP.

mod common;

use std::time::Duration;

use chatroom_core::client::{Client, ClientOptions};
use chatroom_core::protocol::{Nickname, RoomName};
use chatroom_core::testing::TestPki;
use chatroom_core::transport::{TlsConnector, tls};
use common::server::{Server, ServerBuilder};
use common::temp::TempDir;
use common::tls_client::TlsJsonClient;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

/// How long any one step may take before the test gives up.
const DEADLINE: Duration = Duration::from_secs(10);

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

/// The DER encoding of the (first) certificate in a PEM file.
fn der_of(path: &std::path::Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .expect("a PEM certificate")
        .to_vec()
}

/// A client that says hello as `nick` over `client` and joins `lobby`.
fn hello_in_lobby(client: &mut TlsJsonClient, nick: &str) {
    client.send(&json!({"type": "hello", "version": 1, "nick": nick}));
    client.next_where(|f| f["type"] == "welcome");
    client.send(&json!({"type": "join", "room": "lobby", "history": 0}));
    client.next_where(|f| f["type"] == "members");
}

/// `from` says `text` in the lobby and `to` hears it.
fn chat(from: &mut TlsJsonClient, to: &mut TlsJsonClient, text: &str) {
    from.send(&json!({"type": "say", "room": "lobby", "text": text}));
    from.next_where(|f| f["type"] == "ok");
    let heard = to.next_where(|f| f["type"] == "message");
    assert_eq!(heard["text"], text, "{heard}");
}

#[test]
fn sighup_rotates_the_certificate_and_keeps_tls_connections() {
    let old = TestPki::new("rotate-old");
    let new = TestPki::new("rotate-new");
    // The server reads its certificate from one place, whose files are
    // replaced as a certificate manager would.
    let dir = TempDir::new("rotate");
    let install = |pki: &TestPki| {
        for file in ["cert.pem", "key.pem"] {
            std::fs::copy(pki.path(file), dir.join(file)).expect("install a file");
        }
    };
    install(&old);
    let both_cas = [old.path("ca.pem"), new.path("ca.pem")]
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("a CA file"))
        .collect::<String>();
    let cas = dir.write("cas.pem", &both_cas);
    // A fresh configuration per connection: one shared would resume its
    // TLS session, and a resumed session shows no certificate at all.
    let trust = || tls::client_config(Some(&cas)).unwrap();
    let mut server = Server::builder()
        .listen("127.0.0.1:0")
        .arg("--tls-cert")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .env("CHATROOM_HISTORY", "memory")
        .start();

    let mut ann = TlsJsonClient::connect(server.addr(), trust(), DEADLINE);
    assert!(
        ann.leaf() == der_of(&old.path("cert.pem")),
        "the first certificate"
    );
    hello_in_lobby(&mut ann, "ann");

    install(&new);
    server.signal("HUP");
    server.wait_for_log("tls certificate reloaded", DEADLINE);
    let reloaded = server.wait_for_log("settings reloaded", DEADLINE);
    assert!(reloaded.contains("tls_cert"), "{reloaded}");

    // A new connection sees the new certificate; the old one chats on.
    let mut bob = TlsJsonClient::connect(server.addr(), trust(), DEADLINE);
    assert!(
        bob.leaf() == der_of(&new.path("cert.pem")),
        "the new certificate"
    );
    hello_in_lobby(&mut bob, "bob");
    chat(&mut ann, &mut bob, "still here after the rotation");
    chat(&mut bob, &mut ann, "and the new one hears you");

    // A certificate that does not match its key is refused at reload: the
    // server keeps serving the one it has, and says why.
    std::fs::copy(old.path("cert.pem"), dir.join("cert.pem")).expect("a mismatched pair");
    server.signal("HUP");
    let failed = server.wait_for_log("tls certificate reload failed", DEADLINE);
    assert!(failed.contains("tls setup failed"), "{failed}");
    std::fs::write(dir.join("cert.pem"), "not a certificate\n").expect("a broken file");
    server.signal("HUP");
    let failed = server.wait_for_log("tls certificate reload failed", DEADLINE);
    assert!(failed.contains("cert.pem"), "{failed}");

    let carol = TlsJsonClient::connect(server.addr(), trust(), DEADLINE);
    assert!(
        carol.leaf() == der_of(&new.path("cert.pem")),
        "still the new one"
    );
    chat(&mut ann, &mut bob, "both still open");
    assert!(server.is_running());
}
