//! # chatroom-core
//!
//! The engine behind `chatroom-server` and `chatroom-client`, for programs
//! that want to embed a chat server or talk to one.
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

pub mod broker;
pub mod client;
pub mod history;
pub mod protocol;
pub mod registry;
pub mod server;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod transport;
