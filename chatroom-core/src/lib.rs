//! # chatroom-core
//!
//! The engine behind `chatroom-server` and `chatroom-client`, for programs
//! that want to embed a chat server or talk to one.
//!
//! ```toml
//! [dependencies]
//! chatroom-core = "0.1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! ## Quick start
//!
//! ### A server inside your tokio app
//!
//! [`Server::new`](server::Server::new) builds the engine (history in
//! memory), [`Server::run`](server::Server::run) serves a listener until the
//! future it is given completes, then says `bye` to every client and
//! returns. Here the app stops it after one client has said hello:
//!
//! ```
//! use chatroom_core::client::{Client, ClientOptions};
//! use chatroom_core::protocol::RoomName;
//! use chatroom_core::server::{Server, ServerConfig};
//! use chatroom_core::transport::TcpListener;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let listener = TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_socket_addr();
//!     let server = Server::new(ServerConfig::default().with_server_name("embedded".to_owned()))?;
//!     let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//!     let serving = tokio::spawn(server.run(listener, async { stopped.await.ok(); }));
//!
//!     // The rest of the app runs here; `nc` or chatroom-client can connect.
//!     let (client, _events) = Client::connect(addr.to_string(), ClientOptions::new()).await?;
//!     client.say(&RoomName::new("lobby")?, "hello").await.ok();
//!
//!     stop.send(()).ok(); // graceful shutdown: clients are told `bye`
//!     serving.await??;
//!     Ok(())
//! }
//! ```
//!
//! ### A bot
//!
//! The client API is a cloneable [`Client`](client::Client) for requests
//! and an [`Events`](client::Events) stream for what the server says
//! unasked. This bot answers `!ping` in every room it is in:
//!
//! ```
//! use chatroom_core::client::{Client, ClientOptions, Event};
//! use chatroom_core::protocol::{Nickname, RoomName};
//! # use chatroom_core::server::{Server, ServerConfig};
//! # use chatroom_core::transport::TcpListener;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let listener = TcpListener::bind("127.0.0.1:0").await?;
//! # let addr = listener.local_socket_addr().to_string();
//! # let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # let serving = tokio::spawn(Server::new(ServerConfig::default())?.run(listener, async { stopped.await.ok(); }));
//! # let asker = tokio::spawn(ask_for_pong(addr.clone(), stop));
//! let options = ClientOptions::new().with_nick(Nickname::new("pingbot")?);
//! let (bot, mut events) = Client::connect(addr, options).await?;
//! bot.join(&RoomName::new("lobby")?).await?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Message { room, text, .. } if text == "!ping" => {
//!             bot.say(&room, "pong").await?;
//!         }
//!         Event::Disconnected { reason } => println!("bot: {reason}"),
//!         _ => {}
//!     }
//! }
//! # asker.await??;
//! # serving.await??;
//! # Ok(())
//! # }
//! # // Someone in the lobby asks, waits for the answer, and stops the server.
//! # async fn ask_for_pong(
//! #     addr: String,
//! #     stop: tokio::sync::oneshot::Sender<()>,
//! # ) -> Result<(), chatroom_core::client::ClientError> {
//! #     let lobby = RoomName::new("lobby").unwrap();
//! #     let options = ClientOptions::new().with_nick(Nickname::new("alice").unwrap());
//! #     let (alice, mut events) = Client::connect(addr, options).await?;
//! #     alice.join(&lobby).await?;
//! #     // Until the bot is in the lobby, nobody answers.
//! #     while !alice.who(&lobby).await?.iter().any(|n| n.as_str() == "pingbot") {
//! #         tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! #     }
//! #     alice.say(&lobby, "!ping").await?;
//! #     while let Some(event) = events.next().await {
//! #         if let Event::Message { text, .. } = event {
//! #             assert_eq!(text, "pong");
//! #             break;
//! #         }
//! #     }
//! #     stop.send(()).ok();
//! #     Ok(())
//! # }
//! ```
//!
//! ### Testing your chat feature without sockets
//!
//! [`transport::memory::channel`] gives a listener and a connector joined by
//! in-process pipes: the whole engine runs, no port is opened. Here the
//! app's feature is a greeter that welcomes everyone who joins, and its
//! test (in your crate, an `async fn` under `#[tokio::test]`) checks that a
//! newcomer is greeted:
//!
//! ```
//! use chatroom_core::client::{Client, ClientError, ClientOptions, Event, Events};
//! use chatroom_core::protocol::{Nickname, RoomName};
//! use chatroom_core::server::{Server, ServerConfig};
//! use chatroom_core::transport::memory;
//!
//! /// The app's feature: welcome everyone who joins a room the bot is in.
//! async fn greeter(bot: Client, mut events: Events) -> Result<(), ClientError> {
//!     while let Some(event) = events.next().await {
//!         if let Event::Joined { room, nick } = event {
//!             if nick != bot.current_nick() {
//!                 bot.say(&room, format!("welcome, {nick}")).await?;
//!             }
//!         }
//!     }
//!     Ok(())
//! }
//!
//! // #[tokio::test]
//! async fn newcomers_are_greeted() -> Result<(), Box<dyn std::error::Error>> {
//!     let (listener, connector) = memory::channel();
//!     let server = Server::new(ServerConfig::default())?;
//!     tokio::spawn(server.run(listener, std::future::pending()));
//!     let lobby = RoomName::new("lobby")?;
//!
//!     let with_nick = |nick| Ok::<_, ClientError>(ClientOptions::new().with_nick(Nickname::new(nick)?));
//!     let (bot, bot_events) = Client::connect_with(connector.clone(), with_nick("greeter")?).await?;
//!     bot.join(&lobby).await?;
//!     tokio::spawn(greeter(bot, bot_events));
//!
//!     let (alice, mut events) = Client::connect_with(connector, with_nick("alice")?).await?;
//!     alice.join(&lobby).await?;
//!     while let Some(event) = events.next().await {
//!         if let Event::Message { from, text, .. } = event {
//!             assert_eq!((from.as_str(), text.as_str()), ("greeter", "welcome, alice"));
//!             return Ok(());
//!         }
//!     }
//!     Err("the connection ended before the greeting".into())
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! #     newcomers_are_greeted().await
//! # }
//! ```
//!
//! ### Cluster mode
//!
//! With the `cluster` feature, [`Server::builder`](server::Server::builder)
//! joins a node to a NATS server (with JetStream) named in
//! [`ClusterConfig`](server::ClusterConfig): rooms, history and nicknames
//! are then shared by every node on it. (Not run as a test: it needs a
//! NATS server. `examples/cluster.rs` in the repository runs two nodes.)
//!
//! ```no_run
//! use chatroom_core::server::{ClusterConfig, Server, ServerConfig};
//! use chatroom_core::transport::TcpListener;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let cluster = ClusterConfig::default()
//!         .with_servers(vec!["nats://127.0.0.1:4222".to_owned()])
//!         .with_node_name("node-1");
//!     let config = ServerConfig::default().with_cluster(cluster);
//!     let server = Server::builder(config)?.build().await?;
//!     let listener = TcpListener::bind("0.0.0.0:7878").await?;
//!     server.run(listener, std::future::pending()).await?;
//!     Ok(())
//! }
//! ```
//!
//! ## Features
//!
//! | feature | default | what it brings | crates it adds |
//! |---------|---------|----------------|----------------|
//! | `web` | yes | the web page at `/` and the WebSocket endpoint at `/ws` on the chat port | tokio-tungstenite, httparse |
//! | `sqlite` | no | `history::SqliteStore`, the durable history store that [`Server::builder`](server::Server::builder) opens for `history = "sqlite"` | rusqlite (builds SQLite's C source) |
//! | `tls` | no | `transport::tls`: TLS listeners and connectors | rustls (ring), tokio-rustls, rustls-native-certs |
//! | `cluster` | no | cluster mode over NATS JetStream: the NATS broker and history store that [`Server::builder`](server::Server::builder) assembles when `cluster.servers` is set | async-nats |
//! | `discovery` | no | `discovery`: announcing a server and finding servers on the LAN by multicast DNS (`_chatroom._tcp`) | mdns-sd |
//! | `test-util` | no | `testing`: helpers for tests of programs built on this crate (not a stable API) | rcgen |
//!
//! With `default-features = false` the crate is the protocol, the registry,
//! the in-memory and TCP transports, the in-memory history store, the
//! server engine and the client API, on tokio alone. Without `web` the
//! `web` and `web_origins` settings are still accepted, so config files
//! work with any build, but do nothing: an HTTP request line on the chat
//! port is read as text-dialect chat, as with `web = false`. A setting that
//! needs a missing feature (`history = "sqlite"` without `sqlite`, a
//! cluster without `cluster`) is refused by
//! [`ServerBuilder::build`](server::ServerBuilder::build) with a
//! [`ServerError::Config`](server::ServerError::Config).
//!
//! The `chatroom-server` binary turns on `web`, `sqlite`, `tls`, `cluster`
//! and `discovery`; `chatroom-client` `tls` and `discovery`.
//!
//! ## Layers
//!
//! ```text
//!                 server ─────────────────────► transport
//!    (session, rooms, writer, web, builder)
//!       │            │            │
//!       ▼            ▼            ▼
//!    broker ───► registry ───► history
//!       │            │            │
//!       └────────────┴─────┬──────┘
//!                          ▼
//!                      protocol ◄──── client ────► transport
//! ```
//!
//! - [`protocol`]: what is said on the wire. Frames, names, limits, error
//!   codes, the JSON codec and the plain-text dialect. Pure: no runtime.
//! - [`transport`]: how bytes move. Listeners, connectors and line framing
//!   for TCP, TLS and an in-memory pipe. Knows nothing of messages.
//! - [`history`]: where room messages are kept: the store trait, a
//!   bounded in-memory store and (feature `sqlite`) a durable one.
//! - [`registry`]: who is in which room. Rooms, per-room ids and
//!   encode-once fanout into bounded queues. No I/O. Its public part is
//!   what a [`broker::Broker`] needs.
//! - [`broker`]: where a room's messages and nick claims go to reach
//!   every node: in-process by default, NATS JetStream with `cluster`.
//! - [`server`]: the engine that joins them: accept loop, one session per
//!   connection, the rooms handle over registry and broker, limits,
//!   graceful shutdown, and [`server::Server::builder`], which assembles a
//!   node (its store, or its cluster) from a [`server::ServerConfig`].
//! - [`client`]: the async client API.
//!
//! The path of one message: a session reads a line, decodes it into a
//! request and asks its rooms handle to `say` it; the broker publishes it
//! (on one node, straight into [`registry::Room::publish`]), which stamps
//! the room's next id, encodes the frame once and pushes the same bytes
//! into every member's bounded queue; each member's writer sends what its
//! queue holds in one vectored write. docs/architecture.md has the details.
//!
//! Dependencies point one way, as drawn; CI checks it.

pub mod accounts;
pub mod broker;
pub mod client;
#[cfg(feature = "discovery")]
pub mod discovery;
pub mod history;
pub mod protocol;
pub mod registry;
pub mod server;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod transport;

// The README's Rust examples run as doc-tests too. The package's README is
// the workspace's (chatroom-core/README.md links to it), so this path holds
// both in the repository and in the published crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
