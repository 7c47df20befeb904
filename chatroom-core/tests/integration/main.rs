//! Engine tests over real TCP on 127.0.0.1: each test starts its own server
//! on a free port and stops it. The server and the line clients are the
//! workspace's shared harness, `chatroom_core::testing`.

/// Chat between native and text clients, rooms, commands and replies.
mod chat;
/// Line framing as clients really send it: split, glued, CRLF, too long.
mod framing;
/// Regressions found by the abuse suite and the fuzzers.
mod hardening;
/// History: backlog on join, pages, resume cursors, restarts, retention.
mod history;
/// Every configured limit triggers as documented and spares other clients.
mod limits;
/// The seed tutorial's Python client talks through the server.
mod seed;
/// Graceful shutdown: every client hears `bye`, the server stops in time.
mod shutdown;
/// TLS: certificates made by the test, chat over TLS, plain text refused.
#[cfg(feature = "tls")]
mod tls;
/// The page and the WebSocket endpoint on the chat port.
#[cfg(feature = "web")]
mod web;
