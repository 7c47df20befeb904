//! How a session answers: replies, typed errors and `bye`, pushed into the
//! session's own queue in the order they are made.

use crate::protocol::{ErrorCode, ProtocolError, ServerFrame, ServerMessage};
use crate::registry::{Outbound, Outbox, RegistryError};

use super::super::accounts::AccountsError;
use super::super::rooms::RoomsError;

/// A request that failed, answered with an `error` frame.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) code: ErrorCode,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ProtocolError> for Failure {
    fn from(e: ProtocolError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<RoomsError> for Failure {
    fn from(e: RoomsError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<AccountsError> for Failure {
    fn from(e: AccountsError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<crate::broker::BrokerError> for Failure {
    fn from(e: crate::broker::BrokerError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Queues `message` as the answer to the request with `reference`.
pub(super) fn push(outbox: &Outbox, message: ServerMessage, reference: Option<String>) {
    // A failed push means the queue overflowed or the writer is gone; the
    // cut-off ends the session, so there is nothing more to do here.
    let _ = outbox.push(&Outbound::new(ServerFrame::reply(message, reference)));
}

/// Queues an `error` frame for `failure`.
pub(super) fn error(outbox: &Outbox, failure: Failure, reference: Option<String>) {
    push(
        outbox,
        ServerMessage::Error {
            code: failure.code,
            message: failure.message,
        },
        reference,
    );
}

/// Queues the `bye` that precedes a close.
pub(super) fn bye(outbox: &Outbox, reason: &str) {
    push(
        outbox,
        ServerMessage::Bye {
            reason: reason.to_owned(),
        },
        None,
    );
}

/// Only the `ref` of a frame that failed to decode, so the error can still
/// be matched to its request.
#[derive(serde::Deserialize)]
struct RefOnly {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// The `ref` of a line that did not decode as a request, when it has a
/// valid one.
pub(super) fn ref_of_bad_frame(line: &[u8]) -> Option<String> {
    serde_json::from_slice::<RefOnly>(line)
        .ok()
        .and_then(|r| r.reference)
        .filter(|r| crate::protocol::validate_ref(r).is_ok())
}
