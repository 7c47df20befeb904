//! TLS through the real binary: `--tls-cert`/`--tls-key` with certificates
//! made here (none are checked in), a client that trusts the test CA, and
//! clear start-up errors for bad files.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chatroom_core::client::{Client, ClientOptions};
use chatroom_core::protocol::{Nickname, RoomName};
use chatroom_core::testing::TestPki;
use chatroom_core::transport::{TlsConnector, tls};

const BIN: &str = env!("CARGO_BIN_EXE_chatroom-server");

fn server(pki: &TestPki, cert: &str, key: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(pki.path(cert))
        .arg("--tls-key")
        .arg(pki.path(key))
        .env("CHATROOM_HISTORY", "memory")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn listening(child: &mut Child) -> String {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening addr=").nth(1) {
                let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server listens")
}

#[tokio::test]
async fn the_binary_serves_chat_over_tls() {
    let pki = TestPki::new("binary-serve");
    let mut child = server(&pki, "cert.pem", "key.pem").spawn().unwrap();
    let addr = listening(&mut child);
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
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn missing_or_mismatched_keys_are_clear_errors_at_start() {
    let pki = TestPki::new("binary-bad");
    for (cert, key, expected) in [
        ("cert.pem", "missing.pem", "missing.pem"),
        ("cert.pem", "other-key.pem", "tls setup failed"),
    ] {
        let output = server(&pki, cert, key).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.lines().count() == 1 && stderr.starts_with("error: "),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{stderr}");
    }
}
