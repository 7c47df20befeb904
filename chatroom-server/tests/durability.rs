//! The history store's promise, held against the real binary: a message
//! acknowledged more than `PROMISED` before the server process is killed
//! with SIGKILL is in the history after a restart, in order, once.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_chatroom-server");
/// The window docs/operations.md promises: committed within this of the `ok`.
const PROMISED: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(10);

/// Starts the binary on a free port with its data under `dir`.
fn start(dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .env("CHATROOM_DATA_DIR", dir)
        .env("CHATROOM_RATE_PER_SEC", "100000")
        .env("CHATROOM_RATE_BURST", "100000")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chatroom-server");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening addr=").nth(1) {
                let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(DEADLINE).expect("server listens");
    (child, addr.parse().expect("a socket address"))
}

/// A native client that said hello and joined `room`.
fn join(addr: SocketAddr, nick: &str, room: &str) -> (TcpStream, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    writeln!(
        stream,
        "{}",
        json!({"type": "hello", "version": 1, "nick": nick})
    )
    .unwrap();
    writeln!(
        stream,
        "{}",
        json!({"type": "join", "room": room, "history": 0})
    )
    .unwrap();
    let mut client = (stream, reader);
    while next(&mut client.1)["type"] != "members" {}
    client
}

fn next(reader: &mut BufReader<TcpStream>) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line in time");
    serde_json::from_str(&line).unwrap_or(Value::Null)
}

#[test]
fn acknowledged_messages_survive_sigkill() {
    let dir = std::env::temp_dir().join(format!("chatroom-durability-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut server, addr) = start(&dir);
    let (mut writer, mut reader) = join(addr, "writer", "crash");

    // Publish continuously; a reader thread notes when each `ok` arrived.
    let (acks_tx, acks) = mpsc::channel::<(u64, String, Instant)>();
    let listener = thread::spawn(move || {
        loop {
            let frame = next(&mut reader);
            if frame.is_null() {
                return;
            }
            if frame["type"] == "ok"
                && let (Some(id), Some(text)) = (frame["id"].as_u64(), frame["ref"].as_str())
            {
                let _ = acks_tx.send((id, text.to_owned(), Instant::now()));
            }
        }
    });
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_millis(800) {
        let text = format!("m{sent}");
        let frame = json!({"ref": text, "type": "say", "room": "crash", "text": text});
        if writeln!(writer, "{frame}").is_err() {
            break;
        }
        sent += 1;
        if sent.is_multiple_of(100) {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let killed_at = Instant::now();
    let status = Command::new("kill")
        .args(["-KILL", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = server.wait();
    drop(writer);
    let _ = listener.join();
    let acked: Vec<(u64, String, Instant)> = acks.try_iter().collect();
    let promised: Vec<&(u64, String, Instant)> = acked
        .iter()
        .filter(|(_, _, at)| *at + PROMISED <= killed_at)
        .collect();
    assert!(
        promised.len() > 100,
        "too few messages to test: {}",
        promised.len()
    );

    let (mut server, addr) = start(&dir);
    let (mut client, mut reader) = join(addr, "reader", "crash");
    let mut stored: Vec<(u64, String)> = Vec::new();
    loop {
        let after = stored.last().map_or(0, |(id, _)| *id);
        let ask = json!({"type": "history", "room": "crash", "after": after, "limit": 200});
        writeln!(client, "{ask}").unwrap();
        let page = loop {
            let f = next(&mut reader);
            if f["type"] == "history" {
                break f;
            }
        };
        for m in page["messages"].as_array().unwrap() {
            stored.push((
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
            ));
        }
        if page["more"] != true {
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);

    // Stored: ids 1..=n with no gap and no duplicate, each with its text.
    let ids: Vec<u64> = stored.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    for (id, text, _) in &promised {
        let (_, kept) = &stored.get(*id as usize - 1).unwrap_or_else(|| {
            panic!(
                "acknowledged message {id} lost (stored up to {})",
                ids.len()
            )
        });
        assert_eq!(kept, text);
    }
    eprintln!(
        "sent {sent}, acknowledged {}, promised {}, stored {}",
        acked.len(),
        promised.len(),
        stored.len()
    );
}
