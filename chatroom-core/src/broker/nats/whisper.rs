//! Private messages to a nick held on another node: a NATS request to the
//! node named in the nick's claim, answered by that node once it has
//! queued the message for its session (or found no such session).

use std::sync::{Arc, OnceLock};

use async_nats::Client;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::protocol::{Nickname, Timestamp};
use crate::registry::{RegistryError, RoomRegistry};

use super::claims::Claims;
use super::link::Link;
use crate::broker::{BrokerError, Outage};

/// The subject a node answers whispers for its sessions on.
fn subject(instance: &str) -> String {
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

/// Starts answering the whispers sent to this node's sessions.
///
/// # Errors
/// [`BrokerError::Unavailable`] when the subscription cannot be made.
pub(super) async fn start(link: &Link) -> Result<JoinHandle<()>, BrokerError> {
    let requests = link
        .client
        .subscribe(subject(&link.instance))
        .await
        .map_err(|e| Outage::Subscribe {
            what: "whispers",
            source: e.into(),
        })?;
    Ok(tokio::spawn(serve(
        link.client.clone(),
        requests,
        link.registry.clone(),
    )))
}

/// Answers the whispers sent to this node's sessions.
async fn serve(
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

/// Hands a whisper to the node that holds `to`, and returns `to` as its
/// holder spells it.
///
/// # Errors
/// [`RegistryError::NoSuchNick`] when no other node holds `to`,
/// [`BrokerError::Unavailable`] when NATS or that node cannot be asked.
pub(super) async fn send(
    link: &Link,
    claims: &Claims,
    from: Nickname,
    to: Nickname,
    text: String,
    ts: Timestamp,
) -> Result<Nickname, BrokerError> {
    link.connected()?;
    let no_such_nick = || BrokerError::from(RegistryError::NoSuchNick(to.clone()));
    let Some(instance) = claims.holder_elsewhere(&to).await? else {
        return Err(no_such_nick());
    };
    let request = Whisper {
        from,
        to: to.clone(),
        text,
        ts,
    };
    let payload = serde_json::to_vec(&request).expect("a whisper serializes");
    let reply = timeout(
        link.config.request_timeout,
        link.client.request(subject(&instance), payload.into()),
    )
    .await
    .map_err(|e| Outage::WhisperTimedOut(e.into()))?
    // No responder: the claim outlived its node (until the lease ends).
    .map_err(|_| no_such_nick())?;
    match serde_json::from_slice::<Answer>(&reply.payload) {
        Ok(Answer::Delivered(nick)) => Ok(nick),
        Ok(Answer::NoSuchNick) => Err(no_such_nick()),
        Err(e) => Err(Outage::MalformedAnswer(e).into()),
    }
}
