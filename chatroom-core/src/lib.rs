//! # chatroom-core
//!
//! The engine behind `chatroom-server` and `chatroom-client`, for programs
//! that want to embed a chat server or talk to one.
//!
//! ## Layers
//!
//! ```text
//! protocol  ◄──  registry  ◄──  server ──►  transport
//!     ▲                                        ▲
//!     └──────────────  client  ────────────────┘
//! ```
//!
//! - [`protocol`]: what is said on the wire. Frames, names, limits, error
//!   codes, the JSON codec and the plain-text dialect. Pure: no runtime.
//! - [`transport`]: how bytes move. Listeners, connectors and line framing
//!   for TCP and an in-memory pipe. Knows nothing of messages.
//! - [`registry`]: who is in which room. Membership, nicknames, presence,
//!   per-room ids and encode-once fanout into bounded queues. No I/O.
//! - [`history`]: where room messages are kept: the store trait, a
//!   bounded in-memory store and (feature `sqlite`) a durable one.
//! - [`broker`]: where a room's messages and nick claims go to reach
//!   every node: in-process by default, NATS JetStream with `cluster`.
//! - [`server`]: the engine that joins them: accept loop, one session per
//!   connection, limits, graceful shutdown.
//! - [`client`]: the async client API.
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
