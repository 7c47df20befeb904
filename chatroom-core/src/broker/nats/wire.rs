//! What a room looks like in JetStream: its stream's and subject's names,
//! and the payload of a `say` there. Shared by the feed that reads a
//! room, the publisher that writes it and the history store that pages it.

use async_nats::jetstream;
use serde::{Deserialize, Serialize};

use crate::protocol::{HistoryEntry, MessageId, Nickname, Timestamp};

/// The stream that holds a room's messages.
pub(super) fn stream_name(room_key: &str) -> String {
    format!("CHATROOM_{room_key}")
}

/// The one subject of a room's stream.
pub(super) fn subject(room_key: &str) -> String {
    format!("chatroom.room.{room_key}")
}

/// Whether JetStream answered that the stream does not exist (as opposed
/// to not answering at all).
pub(super) fn stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// What a `say` looks like in a room's stream.
#[derive(Serialize, Deserialize)]
pub(super) struct Wire {
    pub(super) from: Nickname,
    pub(super) text: String,
    pub(super) ts: Timestamp,
    pub(super) action: bool,
    /// The publishing node's instance, so it can leave the sender out.
    pub(super) node: String,
    /// The publish on that node, matched to the sending session.
    pub(super) token: u64,
}

impl Wire {
    /// The history entry of this `say`, stored at `id`.
    pub(super) fn into_entry(self, id: MessageId) -> HistoryEntry {
        HistoryEntry {
            id,
            from: self.from,
            text: self.text,
            ts: self.ts,
            action: self.action,
        }
    }
}
