//! The async client API: a cloneable [`Client`] handle for requests and an
//! [`Events`] stream for everything the server says unasked.
//!
//! [`Client::connect`] opens a TCP connection, says `hello`, waits for
//! `welcome` and spawns one connection task. The task owns the socket: it
//! writes the requests that [`Client`] handles send it over a bounded
//! channel, tags each with a fresh `ref`, and routes the reply carrying that
//! `ref` back to the caller. Everything else (room messages, presence,
//! private messages, unsolicited errors, the end of the connection) becomes
//! an [`Event`]. The task answers the server's `ping` itself and, when
//! [`ClientOptions::with_reconnect`] asks for it, reconnects with backoff and
//! rejoins the rooms it was in.
//!
//! # Several servers
//!
//! [`Client::connect_any`] takes the addresses of several nodes of one
//! cluster. It connects to the first that welcomes it; each reconnect
//! attempt then tries every address once, starting with the one last
//! connected to, so a client of a node that dies carries on at another
//! node and resumes its rooms there from its cursors.
//!
//! This module uses `protocol` and `transport`; it never reaches into the
//! server or the registry.
//!
//! # Slow event consumers
//!
//! Events go through a bounded channel ([`ClientOptions::event_capacity`]).
//! The connection task never waits for room in it while connected: a task
//! that did would stop reading the socket, and a caller waiting for a reply
//! while not reading events would deadlock against it. When the channel is
//! full the event is dropped and counted, and [`Event::Lagged`] reports the
//! count before the next event that fits. The end of a connection
//! ([`Event::Disconnected`] and the reconnect events) is never dropped: the
//! task waits for room for those, since it has no socket to read then.
//!
//! # Examples
//!
//! ```no_run
//! use chatroom_core::client::{Client, ClientOptions, Event};
//! use chatroom_core::protocol::{Nickname, RoomName};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ClientOptions::new().with_nick(Nickname::new("alice")?);
//! let (client, mut events) = Client::connect("127.0.0.1:7878", options).await?;
//! let lobby = RoomName::new("lobby")?;
//! let members = client.join(&lobby).await?;
//! println!("in #lobby: {members:?}");
//! client.say(&lobby, "hello").await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Message { from, text, .. } = event {
//!         println!("<{from}> {text}");
//!     }
//! }
//! # Ok(()) }
//! ```

// One concern per file. The handle side: `handle` (the `Client` and its
// requests), `options`, `event`, `error`, `reply` (reading a reply as the
// answer a request expects). Shared by both sides: `command` (a request on
// its way to the task), `shared` (state both read), `handshake` and `link`
// (opening a connection and writing to it). The task side lives in
// `connection/`. Imports only point from the handle to the task and from
// both towards the leaf files; this file only re-exports.
mod command;
mod connection;
mod error;
mod event;
mod handle;
mod handshake;
mod link;
mod options;
mod reply;
mod shared;

pub use error::ClientError;
pub use event::{DisconnectReason, Event, Events};
pub use handle::Client;
pub use options::{
    ClientOptions, DEFAULT_COMMAND_CAPACITY, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EVENT_CAPACITY,
    DEFAULT_REQUEST_TIMEOUT, Reconnect,
};
