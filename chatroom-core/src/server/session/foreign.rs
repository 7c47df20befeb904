//! Moderation for a session of another dialect (IRC): the same checks,
//! changes, store writes, log lines and room announcements as a native
//! request, so that the rules cannot differ between dialects.
//!
//! The moderation code works on a [`Session`]; this builds a short-lived
//! one that stands for the other dialect's session for one request. It
//! shares that session's id, nick, account, address and queue, so whatever
//! the request answers (an `ok`, a log read, a server-wide ban's event)
//! lands in the caller's queue, where its writer renders it; a refusal
//! comes back to the caller to phrase in its own dialect.

use std::net::IpAddr;
use std::sync::Arc;

use crate::protocol::{ClientMessage, ErrorCode, Nickname, RoomName};
use crate::registry::{Outbox, SessionId};

use super::super::shared::Shared;
use super::super::writer::Dialect;
use super::state::Session;

/// Who asks for a moderation request, as the other dialect knows them.
#[derive(Debug)]
pub(crate) struct Requester<'a> {
    pub(crate) id: SessionId,
    pub(crate) nick: &'a Nickname,
    pub(crate) account: Option<&'a Nickname>,
    pub(crate) ip: Option<IpAddr>,
    /// The requester's queue, for what the request answers.
    pub(crate) outbox: &'a Outbox,
}

impl Requester<'_> {
    /// The stand-in session.
    fn session(&self, shared: &Arc<Shared>) -> Session {
        let mut session = Session::new(
            shared,
            self.id,
            self.nick.clone(),
            Dialect::Text,
            self.outbox.clone(),
            self.ip,
        );
        session.account = self.account.cloned();
        session
    }
}

/// Makes `who` the owner of `room`, which it just joined and which had
/// `before` members, if it was empty and ownerless: the same rule as in
/// every dialect.
pub(crate) async fn claim(
    shared: &Arc<Shared>,
    who: &Requester<'_>,
    room: &RoomName,
    before: usize,
) {
    if who.account.is_some() {
        who.session(shared).claim(room, before).await;
    }
}

/// Runs `request` (one of the moderation requests) for `who`. A refusal
/// comes back as its error code and readable message.
pub(crate) async fn moderate(
    shared: &Arc<Shared>,
    who: &Requester<'_>,
    request: ClientMessage,
) -> Result<(), (ErrorCode, String)> {
    let mut session = who.session(shared);
    // Not `moderate_more` directly: `moderate` covers every request and
    // hands the rest on.
    match session.moderate(request, None).await {
        Ok(_) => Ok(()),
        Err(failure) => Err((failure.code, failure.message)),
    }
}
