//! The history store's promise, held against the real binary: a message
//! acknowledged more than `PROMISED` before the server process is killed
//! with SIGKILL is in the history after a restart, in order, once.

mod common;

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::json_client::JsonClient;
use common::server::Server;
use serde_json::json;

/// The window docs/operations.md promises: committed within this of the `ok`.
const PROMISED: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn acknowledged_messages_survive_sigkill() {
    // The history lives in the server's scratch directory, which the
    // restart below keeps.
    let mut server = Server::builder()
        .listen("127.0.0.1:0")
        .env("CHATROOM_RATE_PER_SEC", "100000")
        .env("CHATROOM_RATE_BURST", "100000")
        .start();
    let mut reader = JsonClient::hello_in(server.addr(), "writer", "crash", DEADLINE);
    let mut writer = reader.conn().writer();

    // Publish continuously; a reader thread notes when each `ok` arrived.
    let (acks_tx, acks) = mpsc::channel::<(u64, String, Instant)>();
    let listener = thread::spawn(move || {
        loop {
            let Some(frame) = reader.try_next() else {
                return;
            };
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
    server.kill();
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

    server.restart();
    let mut client = JsonClient::hello_in(server.addr(), "reader", "crash", DEADLINE);
    let mut stored: Vec<(u64, String)> = Vec::new();
    loop {
        let after = stored.last().map_or(0, |(id, _)| *id);
        let ask = json!({"type": "history", "room": "crash", "after": after, "limit": 200});
        client.send(&ask);
        let page = client.next_where(|f| f["type"] == "history");
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
    drop(server);

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
