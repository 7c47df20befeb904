//! Private messages to a nick held on another node: a NATS request to the
//! node named in the nick's claim, answered by that node once it has
//! queued the message for its session (or found no such session).

use std::sync::{Arc, OnceLock};

use async_nats::Client;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::protocol::{Nickname, Timestamp};
use crate::registry::RoomRegistry;

/// The subject a node answers whispers for its sessions on.
pub(super) fn subject(instance: &str) -> String {
    format!("chatroom.whisper.{instance}")
}

/// A whisper on its way to another node.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Whisper {
    pub(super) from: Nickname,
    pub(super) to: Nickname,
    pub(super) text: String,
    pub(super) ts: Timestamp,
}

/// The holder's node's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Answer {
    /// Queued for the holder, whose nick is spelt so.
    Delivered(Nickname),
    /// Nobody on that node holds the nick (any more).
    NoSuchNick,
}

/// Answers the whispers sent to this node's sessions.
pub(super) async fn serve(
    client: Client,
    mut requests: async_nats::Subscriber,
    registry: Arc<OnceLock<RoomRegistry>>,
) {
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else {
            continue;
        };
        let answer = match serde_json::from_slice::<Whisper>(&request.payload) {
            Ok(w) => match registry.get() {
                Some(registry) => match registry.deliver_private(w.from, &w.to, w.text, w.ts) {
                    Ok(nick) => Answer::Delivered(nick),
                    Err(_) => Answer::NoSuchNick,
                },
                None => Answer::NoSuchNick,
            },
            Err(e) => {
                tracing::warn!(error = %e, "skipped a malformed whisper");
                continue;
            }
        };
        let bytes = serde_json::to_vec(&answer).expect("an answer serializes");
        if let Err(e) = client.publish(reply, bytes.into()).await {
            tracing::debug!(error = %e, "could not answer a whisper");
        }
    }
}
