use std::path::Path;
use std::time::{Duration, Instant};

use chatroom_core::client::{Client, ClientOptions, Event};
use chatroom_core::protocol::{Nickname, RoomName};
use chatroom_core::server::{Server, ServerConfig};
use chatroom_core::testing::{TestPki, TestServer};
use chatroom_core::transport::tls::{client_config, server_config};
use chatroom_core::transport::{TcpListener, TlsConnector, TlsListener, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn tls_server(pki: &TestPki) -> TestServer {
    let config = server_config(&pki.path("cert.pem"), &pki.path("key.pem")).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_socket_addr();
    let server = Server::new(ServerConfig::default()).unwrap();
    TestServer::serve_on(server, TlsListener::new(tcp, config), addr)
}

async fn tls_client(
    server: &TestServer,
    ca: &Path,
    nick: &str,
) -> (Client, chatroom_core::client::Events) {
    let config = client_config(Some(ca)).unwrap();
    let connector = TlsConnector::new(server.addr.to_string(), config).unwrap();
    let options = ClientOptions::new().with_nick(Nickname::new(nick).unwrap());
    Client::connect_with(connector, options).await.unwrap()
}

#[tokio::test]
async fn native_clients_chat_over_tls_with_a_private_ca() {
    let pki = TestPki::new("chat");
    let server = tls_server(&pki).await;
    let lobby = RoomName::new("lobby").unwrap();
    let (alice, _alice_events) = tls_client(&server, &pki.path("ca.pem"), "alice").await;
    let (bob, mut bob_events) = tls_client(&server, &pki.path("ca.pem"), "bob").await;
    alice.join(&lobby).await.unwrap();
    bob.join(&lobby).await.unwrap();
    let id = alice.say(&lobby, "sealed").await.unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), bob_events.next())
            .await
            .expect("an event in time")
            .expect("events go on");
        if let Event::Message { id: got, text, .. } = event {
            assert_eq!((got, text.as_str()), (id, "sealed"));
            break;
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let pki = TestPki::new("untrusted");
    let server = tls_server(&pki).await;
    let config = client_config(None).unwrap();
    let connector = TlsConnector::new(server.addr.to_string(), config).unwrap();
    let result = Client::connect_with(connector, ClientOptions::new()).await;
    assert!(result.is_err(), "an unknown issuer must not be accepted");
    server.stop().await;
}

#[tokio::test]
async fn plain_text_on_the_tls_port_fails_cleanly_and_quickly() {
    let pki = TestPki::new("plain");
    let server = tls_server(&pki).await;
    let started = Instant::now();
    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    plain.write_all(b"hello there\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server must close, not hang");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Whatever came back (a TLS alert, or nothing) is not a chat greeting.
    assert!(!String::from_utf8_lossy(&buf).contains("welcome"));
    server.stop().await;
}

#[test]
fn bad_certificate_files_are_clear_errors() {
    let pki = TestPki::new("files");
    let missing = server_config(&pki.path("nope.pem"), &pki.path("key.pem")).unwrap_err();
    assert!(
        matches!(missing, TransportError::TlsFile { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("nope.pem"), "{missing}");
    let mismatched = server_config(&pki.path("cert.pem"), &pki.path("other-key.pem")).unwrap_err();
    assert!(matches!(mismatched, TransportError::Tls(_)), "{mismatched}");
    let no_key = server_config(&pki.path("cert.pem"), &pki.path("cert.pem")).unwrap_err();
    assert!(matches!(no_key, TransportError::TlsFile { .. }), "{no_key}");
}
