//! Why the broker refused a request, and, when the cluster was
//! unavailable, what failed.

use std::error::Error;
use std::fmt;
use std::path::PathBuf;

use crate::protocol::{ErrorCode, Nickname, RoomName};
use crate::registry::RegistryError;

/// An error of the library underneath (the NATS client's, a timeout's).
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// Why the broker refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The registry refused it (not in the room, nick taken on this node…).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Another node holds the nickname.
    #[error("nickname {0} is taken")]
    NickTaken(Nickname),
    /// The shared service cannot be reached or refused the request; nothing
    /// was done (a refused `say` was not delivered to anyone).
    // Shown with the outage's own cause rather than handing the outage out
    // as `source()`: a client is told this text alone, and the NATS
    // client's errors already print their causes.
    #[error("the cluster is unavailable: {}", Explained(.0))]
    Unavailable(Outage),
}

impl BrokerError {
    /// The protocol error code a client is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Registry(e) => e.code(),
            Self::NickTaken(_) => ErrorCode::NickTaken,
            Self::Unavailable(_) => ErrorCode::Internal,
        }
    }
}

impl From<Outage> for BrokerError {
    fn from(outage: Outage) -> Self {
        Self::Unavailable(outage)
    }
}

/// What failed while the cluster was unavailable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Outage {
    /// Credentials are given both in a server URL and in the settings.
    #[error("credentials are given both in a NATS server URL and in the settings; give them once")]
    CredentialsTwice,
    /// Two server URLs hold different credentials.
    #[error("the NATS server URLs hold different credentials; a node uses one set")]
    CredentialsDiffer,
    /// A file named in the settings cannot be read.
    #[error("cannot read NATS {what} {}", path.display())]
    Unreadable {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The credentials file is not a `.creds` file.
    #[error(
        "NATS credentials file {} is not a .creds file (a user JWT and its NKey seed)",
        path.display()
    )]
    NotCreds {
        /// The file.
        path: PathBuf,
        /// The parser's reason, which never quotes the file.
        #[source]
        source: std::io::Error,
    },
    /// The first connection to NATS failed.
    #[error("cannot connect to NATS")]
    Connect(#[source] Cause),
    /// The key-value bucket of nick claims cannot be made or opened.
    #[error("cannot open the nick bucket")]
    NickBucket(#[source] Cause),
    /// The key-value bucket of accounts and room rules, or the stream of
    /// the moderation log, cannot be made or opened.
    #[error("cannot open the account bucket or the moderation log")]
    AccountBucket(#[source] Cause),
    /// A subscription the node needs cannot be made.
    #[error("cannot subscribe to {what}")]
    Subscribe {
        /// What the subscription is for.
        what: &'static str,
        /// The NATS client's reason.
        #[source]
        source: Cause,
    },
    /// The node is not connected to NATS at the moment.
    #[error("no connection to NATS; nothing was sent")]
    Disconnected,
    /// A room's stream cannot be made or opened.
    #[error("cannot open the room's stream")]
    RoomStream(#[source] Cause),
    /// A `say` for a room this node does not receive.
    #[error("room {0} is not open on this node; join it again")]
    RoomNotOpen(RoomName),
    /// The queue of `say`s to NATS is full.
    #[error("too many messages waiting for NATS; nothing was sent")]
    QueueFull,
    /// The node stopped before the `say` was sent.
    #[error("the message was not sent: the node is stopping")]
    Stopping,
    /// NATS refused the `say`, or the client could not send it.
    #[error("the message was not sent")]
    NotSent(#[source] Cause),
    /// NATS did not acknowledge the `say` in time.
    #[error("NATS did not acknowledge the message in time; it may not have been sent")]
    AckTimedOut,
    /// A nick claim cannot be made.
    #[error("cannot claim the nick")]
    Claim(#[source] Cause),
    /// A nick's claim cannot be read.
    #[error("cannot look the nick up")]
    NickLookup(#[source] Cause),
    /// The node holding a whispered nick did not answer in time.
    #[error("the nick's server did not answer")]
    WhisperTimedOut(#[source] Cause),
    /// The node holding a whispered nick answered nonsense.
    #[error("malformed answer to a whisper")]
    MalformedAnswer(#[source] serde_json::Error),
    /// The node holding a nick to be banned could not be asked, or did
    /// not answer in time.
    #[error("the nick's server did not say whom to ban")]
    MaskUnanswered(#[source] Cause),
    /// The node holding a nick to be banned answered nonsense.
    #[error("malformed answer to a ban's question")]
    MalformedMask(#[source] serde_json::Error),
}

/// An error followed by its underlying error's own text.
struct Explained<'a>(&'a dyn Error);

impl fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        match self.0.source() {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_reads_with_its_cause_and_keeps_its_kind() {
        let e = BrokerError::from(Outage::Claim("deadline has elapsed".into()));
        assert_eq!(
            e.to_string(),
            "the cluster is unavailable: cannot claim the nick: deadline has elapsed"
        );
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(matches!(e, BrokerError::Unavailable(Outage::Claim(_))));
        let e = BrokerError::from(Outage::Disconnected);
        assert_eq!(
            e.to_string(),
            "the cluster is unavailable: no connection to NATS; nothing was sent"
        );
    }
}
