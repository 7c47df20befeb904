//! The one in-process test harness of this workspace: an engine on a free
//! loopback port ([`TestServer`]), an async line client that speaks either
//! dialect ([`Peer`], and [`Talker`] for a peer that only writes), and a
//! private CA with a certificate it signed ([`TestPki`]).
//!
//! This crate's own integration tests, the client's tests and the server
//! binary's tests all use these, so that a change to how a test waits or
//! connects is made once. Tests that drive the `chatroom-server`
//! executable keep their process harness in `chatroom-server/tests/common/`.
//!
//! Behind the `test-util` feature. **Not part of the stable API**: it
//! changes whenever the tests need it to, and it panics instead of
//! returning errors, as a test helper should.
//!
//! # Waiting
//! Everything that waits for the server has a deadline, so that a hang
//! fails the test instead of stalling it: one line for a [`Peer`] (its
//! [`Peer::wait`], [`WAIT`] unless [`Peer::set_wait`] says otherwise), a
//! graceful shutdown for a [`TestServer`] ([`TestServer::stop`]).

mod peer;
#[cfg(feature = "tls")]
mod pki;
mod server;

pub use peer::{Peer, Talker, WAIT};
#[cfg(feature = "tls")]
pub use pki::TestPki;
pub use server::TestServer;

pub use crate::registry::rig::FanoutRig;
