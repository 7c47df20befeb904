//! Why a session ended, for every dialect's session: logged, shown to the
//! rooms it leaves, and counted by `/metrics`.

use std::fmt;

use tokio::task::JoinError;

use crate::registry::CutReason;

use super::writer::WriterEnd;

/// Why a session ended. Each dialect ends in its own subset of these.
#[derive(Debug)]
pub(super) enum End {
    PeerClosed,
    Quit(Option<String>),
    ReadFailed(std::io::Error),
    WriteFailed(std::io::Error),
    SlowConsumer,
    NickLost,
    /// A server operator's `kill`.
    Killed,
    TooManyErrors,
    IdleTimeout,
    /// IRC's form of an idle timeout: a `PING` went unanswered.
    PingTimeout,
    HandshakeTimeout,
    UnsupportedVersion,
    /// A native `hello` on a connection taken for a text one.
    LateHello,
    Shutdown,
}

impl End {
    /// Why the session ends, from how its writer task ended first.
    pub(super) fn from_writer(ended: Result<WriterEnd, JoinError>) -> Self {
        match ended {
            Ok(WriterEnd::Cut(CutReason::NickLost)) => Self::NickLost,
            Ok(WriterEnd::Cut(CutReason::Killed(_))) => Self::Killed,
            Ok(WriterEnd::Cut(_)) => Self::SlowConsumer,
            Ok(WriterEnd::Failed(e)) => Self::WriteFailed(e),
            // The session holds a sender, so the queue cannot have
            // drained; a panicked writer is reported as a failed write.
            Ok(WriterEnd::Drained) | Err(_) => {
                Self::WriteFailed(std::io::ErrorKind::BrokenPipe.into())
            }
        }
    }

    /// The reason as `/metrics` labels it (one of `metrics::END_REASONS`).
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::PeerClosed => "peer_closed",
            Self::Quit(_) => "quit",
            Self::ReadFailed(_) => "read_failed",
            Self::WriteFailed(_) => "write_failed",
            Self::SlowConsumer => "slow_consumer",
            Self::NickLost => "nick_lost",
            Self::Killed => "killed",
            Self::TooManyErrors => "too_many_errors",
            Self::IdleTimeout | Self::PingTimeout => "idle_timeout",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::UnsupportedVersion => "unsupported_version",
            Self::LateHello => "late_hello",
            Self::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("connection closed"),
            Self::Quit(Some(reason)) => write!(f, "quit: {reason}"),
            Self::Quit(None) => f.write_str("quit"),
            Self::ReadFailed(e) => write!(f, "read failed: {e}"),
            Self::WriteFailed(e) => write!(f, "write failed: {e}"),
            Self::SlowConsumer => f.write_str("disconnected: too slow"),
            Self::NickLost => f.write_str("disconnected: nickname taken elsewhere"),
            Self::Killed => f.write_str("disconnected by a server operator"),
            Self::TooManyErrors => f.write_str("disconnected: too many errors"),
            Self::IdleTimeout => f.write_str("disconnected: idle"),
            Self::PingTimeout => f.write_str("disconnected: ping timeout"),
            Self::HandshakeTimeout => f.write_str("no hello in time"),
            Self::UnsupportedVersion => f.write_str("unsupported protocol version"),
            Self::LateHello => f.write_str("native hello on a text connection"),
            Self::Shutdown => f.write_str("server shutting down"),
        }
    }
}
