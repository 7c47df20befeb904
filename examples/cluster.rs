//! Two chat nodes of one cluster in one process: two `Server`s built from
//! their settings by `Server::builder`, on two loopback ports, sharing one
//! NATS. A client on each node; one says a line, the other hears it, and
//! the example prints it and exits.
//!
//! ```text
//! nats-server -js &
//! cargo run -p chatroom-examples --example cluster -- [--nats URL]
//! ```
//!
//! The NATS URL is `--nats URL`, else the `NATS_URL` variable, else
//! `nats://127.0.0.1:4222`. NATS must have JetStream on (`-js`). The exit
//! status is 1 when the line does not arrive within 20 seconds.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use chatroom_core::client::{Client, ClientOptions, Event};
use chatroom_core::protocol::{Nickname, RoomName};
use chatroom_core::server::{ClusterConfig, Server, ServerConfig};
use chatroom_core::transport::TcpListener;
use tokio::sync::watch;

/// Any error, sendable between tasks.
type BoxError = Box<dyn Error + Send + Sync>;

/// How long the nodes may take to agree that both clients are in the room
/// and to carry the line across.
const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let nats = nats_url(std::env::args().skip(1))?;
    let heard = run(&nats).await?;
    println!("{heard}");
    Ok(())
}

/// `--nats URL`, else `NATS_URL`, else the local default.
fn nats_url(mut args: impl Iterator<Item = String>) -> Result<String, BoxError> {
    match (args.next().as_deref(), args.next()) {
        (Some("--nats"), Some(url)) => Ok(url),
        (None, _) => {
            Ok(std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()))
        }
        _ => Err("usage: cluster [--nats URL]".into()),
    }
}

/// Runs two nodes on NATS at `nats`, has a client of the first say a line
/// to a client of the second, stops both nodes, and returns what the
/// second client heard.
///
/// # Errors
/// When a node cannot start, a client cannot connect, or the line does not
/// arrive within [`DEADLINE`].
pub(crate) async fn run(nats: &str) -> Result<String, BoxError> {
    let (stop, stopped) = watch::channel(false);
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for name in ["n1", "n2"] {
        let config = ServerConfig::default().with_server_name(name).with_cluster(
            ClusterConfig::default()
                .with_servers(vec![nats.to_owned()])
                .with_node_name(name),
        );
        // With `cluster.servers` set, the builder connects to NATS and keeps
        // history in JetStream; no local store is opened.
        let server = Server::builder(config)?.build().await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_socket_addr());
        let mut stopped = stopped.clone();
        nodes.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            server.run(listener, shutdown).await
        }));
    }
    let heard = tokio::time::timeout(DEADLINE, exchange(addrs[0], addrs[1]))
        .await
        .unwrap_or_else(|_| Err(format!("the line did not arrive within {DEADLINE:?}").into()));
    let _ = stop.send(true);
    for node in nodes {
        node.await??;
    }
    heard
}

/// A client on `first` says a line in a room; a client on `second` hears it.
async fn exchange(first: SocketAddr, second: SocketAddr) -> Result<String, BoxError> {
    // Names and text unique to this run: NATS keeps rooms and nick claims
    // between runs, and an old line must not pass for this one.
    let run = std::process::id();
    let room = RoomName::parse_typed("cluster-example")?;
    let line = format!("hello from node n1 (run {run})");
    let options = |nick: String| -> Result<ClientOptions, BoxError> {
        Ok(ClientOptions::new().with_nick(Nickname::new(nick)?))
    };
    let (ann, mut ann_events) =
        Client::connect(first.to_string(), options(format!("ann{run}"))?).await?;
    ann.join(&room).await?;
    let (bob, mut bob_events) =
        Client::connect(second.to_string(), options(format!("bob{run}"))?).await?;
    bob.join(&room).await?;
    // Once ann's node has heard that bob joined, both nodes follow the room.
    let bob_nick = bob.current_nick();
    loop {
        match ann_events.next().await {
            Some(Event::Joined { nick, .. }) if nick == bob_nick => break,
            Some(_) => {}
            None => return Err("ann's connection closed".into()),
        }
    }
    ann.say(&room, line.clone()).await?;
    let heard = loop {
        match bob_events.next().await {
            Some(Event::Message { from, text, .. }) if text == line => {
                break format!("{bob_nick} on n2 heard {from} on n1: {text}");
            }
            Some(_) => {}
            None => return Err("bob's connection closed".into()),
        }
    };
    ann.quit(None).await?;
    bob.quit(None).await?;
    Ok(heard)
}
