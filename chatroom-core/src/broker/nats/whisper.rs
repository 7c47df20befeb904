//! Private messages to a nick held on another node: a NATS request to the
//! node named in the nick's claim, answered by that node once it has
//! queued the message for its session (or found no such session).

use std::sync::{Arc, OnceLock};

use async_nats::Client;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

use crate::protocol::{Nickname, Timestamp};
use crate::registry::{RegistryError, RoomRegistry};

use super::claims::Claim;
use super::{BrokerError, Inner, unavailable};

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

impl Inner {
    pub(super) async fn whisper(
        self: Arc<Self>,
        from: Nickname,
        to: Nickname,
        text: String,
        ts: Timestamp,
    ) -> Result<Nickname, BrokerError> {
        self.connected()?;
        let no_such_nick = || BrokerError::from(RegistryError::NoSuchNick(to.clone()));
        let entry = timeout(self.config.request_timeout, self.nicks.get(to.key()))
            .await
            .map_err(|e| unavailable("cannot look the nick up", e))?
            .map_err(|e| unavailable("cannot look the nick up", e))?;
        let Some(claim) = entry.and_then(|v| serde_json::from_slice::<Claim>(&v).ok()) else {
            return Err(no_such_nick());
        };
        if claim.instance == self.instance {
            // Claimed here, but the session has gone since.
            return Err(no_such_nick());
        }
        let request = Whisper {
            from,
            to: to.clone(),
            text,
            ts,
        };
        let payload = serde_json::to_vec(&request).expect("a whisper serializes");
        let reply = timeout(
            self.config.request_timeout,
            self.client
                .request(subject(&claim.instance), payload.into()),
        )
        .await
        .map_err(|e| unavailable("the nick's server did not answer", e))?
        // No responder: the claim outlived its node (until the lease ends).
        .map_err(|_| no_such_nick())?;
        match serde_json::from_slice::<Answer>(&reply.payload) {
            Ok(Answer::Delivered(nick)) => Ok(nick),
            Ok(Answer::NoSuchNick) => Err(no_such_nick()),
            Err(e) => Err(unavailable("malformed answer to a whisper", e)),
        }
    }
}
