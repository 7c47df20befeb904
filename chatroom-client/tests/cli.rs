//! The `chatroom-client` binary, run non-interactively with piped stdin
//! against an in-process engine on 127.0.0.1 (or a scripted fake server
//! where a real one would refuse to send what is being tested).
//!
//! Every test runs under a timeout so that a hang fails instead of stalling CI.

use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use chatroom_core::client::{Client, ClientOptions, Event, Events};
use chatroom_core::protocol::{Nickname, RoomName};
use chatroom_core::server::{Server, ServerConfig};
use chatroom_core::testing::TestServer;
use chatroom_core::transport::TcpListener;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test timed out")
}

fn nick(s: &str) -> Nickname {
    Nickname::new(s).unwrap()
}

fn lobby() -> RoomName {
    RoomName::new("lobby").unwrap()
}

/// The binary with piped stdin, stdout and stderr.
fn client_binary(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_chatroom-client"))
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chatroom-client")
}

async fn api_client(server: &TestServer, name: &str) -> (Client, Events) {
    let options = ClientOptions::new().with_nick(nick(name));
    let (client, events) = Client::connect(server.addr.to_string(), options)
        .await
        .expect("connect");
    client.join(&lobby()).await.expect("join");
    (client, events)
}

/// The next message event's sender and text.
async fn next_message(events: &mut Events) -> (Nickname, String, bool) {
    loop {
        match events.next().await.expect("events ended") {
            Event::Message {
                from, text, action, ..
            } => return (from, text, action),
            _ => continue,
        }
    }
}

/// Reads stdout lines until one equals `wanted`; returns all read.
async fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, wanted: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.expect("read stdout") {
        let done = line == wanted;
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!("stdout ended before {wanted:?}; saw {seen:?}");
}

#[tokio::test]
async fn piped_lines_reach_others_and_received_messages_print_as_plain_lines() {
    within(async {
        let server = TestServer::start().await;
        let (bob, mut bob_events) = api_client(&server, "bob").await;
        let addr = server.addr.to_string();
        let mut child = client_binary(&["--server", &addr, "--nick", "alice"]);
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();

        let joined = read_until(&mut stdout, "* in #lobby: alice, bob").await;
        assert_eq!(joined, ["* in #lobby: alice, bob"]);

        stdin.write_all(b"hello from alice\n").await.unwrap();
        assert_eq!(
            next_message(&mut bob_events).await,
            (nick("alice"), "hello from alice".to_owned(), false)
        );

        bob.say(&lobby(), "hi alice").await.unwrap();
        bob.action(&lobby(), "waves").await.unwrap();
        read_until(&mut stdout, "<bob> hi alice").await;
        read_until(&mut stdout, "* bob waves").await;

        stdin.write_all(b"/me waves back\n/who\n").await.unwrap();
        assert_eq!(
            next_message(&mut bob_events).await,
            (nick("alice"), "waves back".to_owned(), true)
        );
        drop(stdin);
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status:?}");
        let rest: Vec<String> = {
            let mut rest = Vec::new();
            while let Some(line) = stdout.next_line().await.unwrap() {
                rest.push(line);
            }
            rest
        };
        assert!(
            rest.contains(&"* in #lobby: alice, bob".to_owned()),
            "{rest:?}"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn end_of_input_waits_until_every_line_is_acknowledged() {
    within(async {
        let server = TestServer::start().await;
        let (_bob, mut bob_events) = api_client(&server, "bob").await;
        let addr = server.addr.to_string();
        let mut child = client_binary(&["--server", &addr, "--nick", "alice"]);
        let mut stdin = child.stdin.take().unwrap();
        let mut input = String::new();
        for i in 0..60 {
            input.push_str(&format!("line {i}\n"));
        }
        // More lines than the server's burst allowance, and the input ends
        // at once: the client must still deliver all of them, in order.
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        for i in 0..60 {
            let (from, text, _) = next_message(&mut bob_events).await;
            assert_eq!((from, text), (nick("alice"), format!("line {i}")));
        }
        let output = child.wait_with_output().await.unwrap();
        assert!(output.status.success(), "{output:?}");
        assert!(output.stderr.is_empty(), "{output:?}");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn several_servers_are_tried_in_turn() {
    within(async {
        let server = TestServer::start().await;
        let (_bob, mut bob_events) = api_client(&server, "bob").await;
        // A port that was free a moment ago: nothing listens there now.
        let dead = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("127.0.0.1:{}", probe.local_addr().unwrap().port())
        };
        let servers = format!("{dead},{}", server.addr);
        let mut child = client_binary(&["--server", &servers, "--nick", "alice"]);
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        read_until(&mut stdout, "* in #lobby: alice, bob").await;
        stdin.write_all(b"via the second\n").await.unwrap();
        assert_eq!(
            next_message(&mut bob_events).await,
            (nick("alice"), "via the second".to_owned(), false)
        );
        drop(stdin);
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status:?}");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_server_exits_1_with_one_line() {
    within(async {
        // A port that was free a moment ago: nothing listens there now.
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let output = Command::new(env!("CARGO_BIN_EXE_chatroom-client"))
            .args(["--server", &addr])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr:?}");
        assert!(
            lines[0].starts_with(&format!("error: cannot connect to {addr}: ")),
            "{stderr:?}"
        );
        assert!(lines[0].to_lowercase().contains("refused"), "{stderr:?}");
        assert!(output.stdout.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_taken_nick_exits_1_and_says_so() {
    within(async {
        let server = TestServer::start().await;
        let (_alice, _events) = api_client(&server, "alice").await;
        let addr = server.addr.to_string();
        let output = Command::new(env!("CARGO_BIN_EXE_chatroom-client"))
            .args(["--server", &addr, "--nick", "alice"])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
        assert!(stderr.contains("nick alice is taken"), "{stderr:?}");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn server_shutdown_is_reported_and_ends_the_client() {
    within(async {
        let server = TestServer::start().await;
        let addr = server.addr.to_string();
        let mut child = client_binary(&["--server", &addr, "--nick", "alice"]);
        let _stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        read_until(&mut stdout, "* in #lobby: alice").await;
        server.stop().await;
        read_until(&mut stdout, "! disconnected: the server is shutting down").await;
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(3));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        assert_eq!(
            stderr.trim_end(),
            "error: disconnected: the server is shutting down"
        );
    })
    .await;
}

#[tokio::test]
async fn after_a_lost_connection_every_missed_line_is_shown_once() {
    use chatroom_core::history::{SqliteStore, SyncMode};
    use std::sync::Arc;

    within(async {
        let dir = std::env::temp_dir().join(format!("chatroom-cli-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let durable = || {
            let store = SqliteStore::open(&dir, SyncMode::Normal).expect("store opens");
            Server::with_history(ServerConfig::default(), Arc::new(store)).expect("config")
        };
        let server = TestServer::serve(durable()).await;
        let addr = server.addr.to_string();
        let mut child = client_binary(&["--server", &addr, "--nick", "watcher", "--reconnect"]);
        let _stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        read_until(&mut stdout, "* in #lobby: watcher").await;
        let (talker, _events) = api_client(&server, "talker").await;
        talker.say(&lobby(), "before").await.unwrap();
        read_until(&mut stdout, "<talker> before").await;
        drop(talker);
        server.stop().await;

        let server = TestServer::serve_at(&addr, durable()).await;
        let (talker, _events) = api_client(&server, "talker").await;
        // More lines than a plain rejoin would replay.
        for i in 1..=30 {
            talker.say(&lobby(), &format!("away {i}")).await.unwrap();
        }
        let seen = read_until(&mut stdout, "<talker> away 30").await;
        let said: Vec<&String> = seen.iter().filter(|l| l.starts_with("<talker>")).collect();
        let expected: Vec<String> = (1..=30).map(|i| format!("<talker> away {i}")).collect();
        assert_eq!(said, expected.iter().collect::<Vec<_>>(), "{seen:?}");
        talker.say(&lobby(), "live").await.unwrap();
        let seen = read_until(&mut stdout, "<talker> live").await;
        assert!(!seen.iter().any(|l| l.contains("before")), "{seen:?}");
        server.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test]
async fn tls_with_a_private_ca_carries_the_chat() {
    use chatroom_core::testing::TestPki;
    use chatroom_core::transport::{TlsConnector, TlsListener, tls};

    within(async {
        let pki = TestPki::new("client-cli");
        let config = tls::server_config(&pki.path("cert.pem"), &pki.path("key.pem")).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = tcp.local_socket_addr();
        let addr = bound.to_string();
        let engine = Server::new(ServerConfig::default()).unwrap();
        let server = TestServer::serve_on(engine, TlsListener::new(tcp, config), bound);

        let connector = TlsConnector::new(
            addr.clone(),
            tls::client_config(Some(&pki.path("ca.pem"))).unwrap(),
        )
        .unwrap();
        let options = ClientOptions::new().with_nick(nick("bob"));
        let (bob, mut bob_events) = Client::connect_with(connector, options).await.unwrap();
        bob.join(&lobby()).await.unwrap();

        let ca_path = pki.path("ca.pem");
        let ca_arg = ca_path.to_str().unwrap();
        let mut child = client_binary(&["--server", &addr, "--nick", "alice", "--tls-ca", ca_arg]);
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        read_until(&mut stdout, "* in #lobby: alice, bob").await;
        stdin.write_all(b"over tls\n").await.unwrap();
        assert_eq!(
            next_message(&mut bob_events).await,
            (nick("alice"), "over tls".to_owned(), false)
        );
        drop(stdin);
        assert!(child.wait().await.unwrap().success());

        // Without the CA the certificate is not trusted: a clear failure.
        let mut untrusted = client_binary(&["--server", &addr, "--nick", "eve", "--tls"]);
        drop(untrusted.stdin.take());
        let status = untrusted.wait().await.unwrap();
        assert_eq!(status.code(), Some(1));
        server.stop().await;
    })
    .await;
}

/// Writes one JSON frame as a line.
async fn send_json(writer: &mut tokio::net::tcp::OwnedWriteHalf, frame: serde_json::Value) {
    let mut line = frame.to_string();
    line.push('\n');
    writer.write_all(line.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn escape_sequences_in_received_strings_are_not_printed_raw() {
    within(async {
        // A real engine refuses control characters in text, so a scripted
        // server plays the hostile one.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut child = client_binary(&["--server", &addr, "--nick", "alice"]);
        let _stdin = child.stdin.take().unwrap();

        let (socket, _) = listener.accept().await.unwrap();
        let (reader, mut writer) = socket.into_split();
        let mut from_client = BufReader::new(reader).lines();
        let hello = from_client.next_line().await.unwrap().unwrap();
        assert!(hello.contains("\"hello\""), "{hello}");
        send_json(
            &mut writer,
            serde_json::json!({"type": "welcome", "version": 1, "nick": "alice",
                "server": "evil", "max_line_len": 16384, "max_text_len": 4096}),
        )
        .await;
        let join: serde_json::Value =
            serde_json::from_str(&from_client.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(join["type"], "join");
        send_json(
            &mut writer,
            serde_json::json!({"ref": join["ref"], "type": "members", "room": "lobby",
                "members": ["alice", "mallory"]}),
        )
        .await;
        let hostile = "\u{1b}[2J\u{1b}]0;pwned\u{7} clear\u{9b}1m\u{202e}txt";
        send_json(
            &mut writer,
            serde_json::json!({"type": "message", "room": "lobby", "id": 1, "from": "mallory",
                "text": hostile, "ts": 0}),
        )
        .await;
        send_json(
            &mut writer,
            serde_json::json!({"type": "left", "room": "lobby", "nick": "mallory",
                "reason": "\u{1b}[1A\u{1b}[2K"}),
        )
        .await;
        send_json(
            &mut writer,
            serde_json::json!({"type": "notice", "text": "a\u{1b}c\nb"}),
        )
        .await;
        send_json(
            &mut writer,
            serde_json::json!({"type": "error", "code": "internal", "message": "\u{1b}[5mblink"}),
        )
        .await;
        send_json(
            &mut writer,
            serde_json::json!({"type": "bye", "reason": "\u{1b}[?1049h"}),
        )
        .await;
        drop(writer);

        let output = child.wait_with_output().await.unwrap();
        for stream in [&output.stdout, &output.stderr] {
            assert!(
                !stream.iter().any(|b| *b == 0x1b || *b == 0x07),
                "raw control bytes printed: {:?}",
                String::from_utf8_lossy(stream)
            );
            let text = String::from_utf8(stream.clone()).unwrap();
            assert!(
                !text.contains('\u{9b}') && !text.contains('\u{202e}'),
                "{text:?}"
            );
        }
        let stdout = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                "* in #lobby: alice, mallory",
                "<mallory> ^[[2J^[]0;pwned^G clear\\u{9b}1m\\u{202e}txt",
                "* mallory left #lobby (^[[1A^[[2K)",
                "* a^[c",
                "* b",
                "! ^[[5mblink",
                "! disconnected: ^[[?1049h",
            ]
        );
        assert_eq!(output.status.code(), Some(3));
    })
    .await;
}

/// A UDP port free now, for a multicast DNS of the test's own.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

#[tokio::test]
async fn discover_lists_a_server_on_loopback_and_connects_to_the_pick() {
    use chatroom_core::discovery::{Announcement, Service};
    within(async {
        let server = TestServer::start().await;
        let (_bob, mut bob_events) = api_client(&server, "bob").await;
        let mdns_port = free_udp_port();
        // A second server is announced too, so the pick matters; nothing
        // listens there.
        let services = [
            Service::new("b-classroom", server.addr),
            Service::new("a-elsewhere", "127.0.0.1:9".parse().unwrap()),
        ];
        let announcement = Announcement::start("testhost", &services, mdns_port).unwrap();
        let port = mdns_port.to_string();
        let mut child = client_binary(&[
            "--discover",
            "--discover-loopback",
            "--discover-port",
            &port,
            "--pick",
            "2",
            "--nick",
            "alice",
        ]);
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let connecting = format!("* connecting to b-classroom  {}", server.addr);
        let listed = read_until(&mut stdout, &connecting).await;
        let expected = [
            "* servers found:".to_owned(),
            "*   1) a-elsewhere  127.0.0.1:9".to_owned(),
            format!("*   2) b-classroom  {}", server.addr),
            connecting,
        ];
        assert_eq!(listed, expected);
        read_until(&mut stdout, "* in #lobby: alice, bob").await;
        stdin.write_all(b"found you\n").await.unwrap();
        assert_eq!(
            next_message(&mut bob_events).await,
            (nick("alice"), "found you".to_owned(), false)
        );
        drop(stdin);
        assert!(child.wait().await.unwrap().success());
        tokio::task::spawn_blocking(move || announcement.stop())
            .await
            .unwrap();
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn discover_with_no_server_exits_1_with_one_line() {
    within(async {
        let port = free_udp_port().to_string();
        let output = Command::new(env!("CARGO_BIN_EXE_chatroom-client"))
            .args([
                "--discover",
                "--discover-loopback",
                "--discover-secs",
                "0.5",
            ])
            .args(["--discover-port", &port])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.trim_end(),
            "error: no chatroom server answered within 0.5 s"
        );
    })
    .await;
}
