//! The ban mask of a nick held on another node: a NATS request to the node
//! named in the nick's claim, answered by that node's engine, which alone
//! knows the session's account and address. Without it a ban made on one
//! node of a guest connected to another could name only the nick, which
//! the guest sheds by reconnecting under another.

use std::sync::{Arc, OnceLock};

use async_nats::Client;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::protocol::Nickname;

use super::claims::Claims;
use super::link::Link;
use crate::broker::{BrokerError, MaskSource, Outage};

/// The subject a node answers ban masks for its sessions on.
fn subject(instance: &str) -> String {
    format!("chatroom.mask.{instance}")
}

/// The question: which mask bans the session holding `nick`?
#[derive(Debug, Serialize, Deserialize)]
struct Question {
    nick: Nickname,
}

/// The holder's node's answer.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    /// The mask that fits the session best, as the engine computed it.
    Mask(String),
    /// Nobody on that node holds the nick (any more).
    NoSuchNick,
}

/// Starts answering the questions about this node's sessions; `source`
/// (set later by the engine) computes the answers.
///
/// # Errors
/// [`BrokerError::Unavailable`] when the subscription cannot be made.
pub(super) async fn start(
    link: &Link,
    source: Arc<OnceLock<MaskSource>>,
) -> Result<JoinHandle<()>, BrokerError> {
    let requests = link
        .client
        .subscribe(subject(&link.instance))
        .await
        .map_err(|e| Outage::Subscribe {
            what: "ban masks",
            source: e.into(),
        })?;
    Ok(tokio::spawn(serve(link.client.clone(), requests, source)))
}

/// Answers each question with what the engine says of the nick.
async fn serve(
    client: Client,
    mut requests: async_nats::Subscriber,
    source: Arc<OnceLock<MaskSource>>,
) {
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else {
            continue;
        };
        let question = match serde_json::from_slice::<Question>(&request.payload) {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "skipped a malformed ban question");
                continue;
            }
        };
        let answer = match source.get().and_then(|s| s(&question.nick)) {
            Some(mask) => Answer::Mask(mask),
            None => Answer::NoSuchNick,
        };
        let bytes = serde_json::to_vec(&answer).expect("an answer serializes");
        if let Err(e) = client.publish(reply, bytes.into()).await {
            tracing::debug!(error = %e, "could not answer a ban question");
        }
    }
}

/// Asks the node that holds `nick` for the mask that bans its session;
/// `None` when no other node holds `nick`. Takes at most the request
/// timeout in all.
///
/// # Errors
/// [`BrokerError::Unavailable`] when NATS, the claim or that node cannot be
/// asked in time, or the node answers nonsense.
pub(super) async fn ask(
    link: &Link,
    claims: &Claims,
    nick: Nickname,
) -> Result<Option<String>, BrokerError> {
    link.connected()?;
    let wait = link.config.request_timeout;
    timeout(wait, ask_holder(link, claims, nick))
        .await
        .map_err(|e| Outage::MaskUnanswered(e.into()))?
}

async fn ask_holder(
    link: &Link,
    claims: &Claims,
    nick: Nickname,
) -> Result<Option<String>, BrokerError> {
    let Some(instance) = claims.holder_elsewhere(&nick).await? else {
        return Ok(None);
    };
    let payload = serde_json::to_vec(&Question { nick }).expect("a question serializes");
    // No responder is a failure, not "nobody": only the node the claim
    // names can say whether the nick is held.
    let reply = link
        .client
        .request(subject(&instance), payload.into())
        .await
        .map_err(|e| Outage::MaskUnanswered(e.into()))?;
    match serde_json::from_slice::<Answer>(&reply.payload) {
        Ok(Answer::Mask(mask)) => Ok(Some(mask)),
        Ok(Answer::NoSuchNick) => Ok(None),
        Err(e) => Err(Outage::MalformedMask(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_they_are_written() {
        let mask = Answer::Mask("address:10.0.0.7".to_owned());
        let text = serde_json::to_string(&mask).unwrap();
        assert_eq!(text, r#"{"mask":"address:10.0.0.7"}"#);
        assert_eq!(serde_json::from_str::<Answer>(&text).unwrap(), mask);
        let none = serde_json::to_string(&Answer::NoSuchNick).unwrap();
        assert_eq!(none, r#""no_such_nick""#);
        assert_eq!(subject("abc"), "chatroom.mask.abc");
    }
}
