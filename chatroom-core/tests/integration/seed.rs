use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use chatroom_core::testing::{Peer, TestServer};

/// The tutorial's client, carried here: select() on stdin and the socket,
/// print what arrives, send typed lines and echo them as `<You>line`.
const SEED_CLIENT: &str = include_str!("seed_client.py");

#[tokio::test]
async fn the_seed_tutorial_client_chats_through_the_server() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let server = TestServer::start().await;
    let mut watcher = Peer::text(server.addr).await;
    let port = server.addr.port().to_string();

    let mut child = Command::new("python3")
        .args(["-u", "-c", SEED_CLIENT, "127.0.0.1", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("seed client printed in time")
            .expect("seed client still running")
    };

    // Greeted as the seed's server greeted it, then placed in the lobby.
    assert!(next().await.starts_with("* welcome to chatroom, you are "));
    let joined = next().await;
    let nick = joined
        .strip_prefix("* ")
        .and_then(|l| l.strip_suffix(" joined #lobby"))
        .expect("joined line")
        .to_owned();
    watcher.until_line(&format!("* {nick} joined #lobby")).await;

    stdin.write_all(b"hello from python\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(next().await, "<You>hello from python");
    assert_eq!(watcher.line().await, format!("<{nick}> hello from python"));

    watcher.send("hi seed").await;
    assert_eq!(next().await, format!("<{}> hi seed", watcher.nick()));

    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    server.stop().await;
}
