//! The one harness every test of the `chatroom-server` executable uses.
//!
//! It lives here, in the binary's own tests, and not in
//! `chatroom_core::testing`: only this crate's tests drive the executable
//! (Cargo gives its path, `CARGO_BIN_EXE_chatroom-server`, to this crate's
//! tests alone). What does not need the executable comes from
//! `chatroom_core::testing`, the harness every test of the workspace
//! shares: the async line client (`Peer`) and the test PKI (`TestPki`).
//!
//! - [`server`]: start the binary with any arguments, settings and
//!   environment, wait for its `listening addr=` line, read its log,
//!   signal, stop, kill and restart it ([`log`] keeps its stderr,
//!   [`resources`] reads its memory and descriptors, [`temp`] gives the
//!   scratch directories).
//! - Clients: [`json_client`] (native dialect), [`text_client`] (as on
//!   `nc`) and [`irc_client`] (raw IRC lines) over blocking sockets
//!   ([`line_conn`]); for cases with hundreds
//!   of connections, the shared async line client,
//!   `chatroom_core::testing::Peer`. TLS is tested through
//!   `chatroom_core::client`, the certificate a server shows through
//!   [`tls_client`], and WebSocket through a real browser ([`browser`])
//!   and the page's socket alone ([`web_client`]).
//! - Real programs of others: [`tmux`] runs one on a terminal, [`irssi`]
//!   is the IRC client run there.
//! - [`admin`]: the admin endpoint (`admin_listen`): plain HTTP `GET`s
//!   and reading samples out of `/metrics`.
//! - What one test file's cases share: [`abuse`] and [`probe`] for the
//!   abuse suite, [`nats`], [`cluster`], [`cluster_auth`] and [`operator`]
//!   for cluster mode.

// Each test file is a crate of its own that uses only some of these.
#![allow(dead_code)]

pub(crate) mod abuse;
pub(crate) mod admin;
pub(crate) mod browser;
pub(crate) mod cluster;
pub(crate) mod cluster_auth;
pub(crate) mod irc_client;
pub(crate) mod irssi;
pub(crate) mod json_client;
pub(crate) mod line_conn;
pub(crate) mod log;
pub(crate) mod nats;
pub(crate) mod operator;
pub(crate) mod probe;
pub(crate) mod resources;
pub(crate) mod server;
pub(crate) mod temp;
pub(crate) mod text_client;
pub(crate) mod tls_client;
pub(crate) mod tmux;
pub(crate) mod web_client;
