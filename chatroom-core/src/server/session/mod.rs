//! One connection from its first byte to its close.
//!
//! A session is one task that reads frames one at a time and handles each
//! before reading the next (so a client that sends faster than it is served
//! is slowed by TCP, not buffered), plus a writer task that drains its
//! bounded queue ([`super::writer`]). The session never touches another
//! session's socket: everything it says to others goes through
//! [`super::rooms::Rooms`] into their queues.
//!
//! The walk of one connection, file by file:
//! - [`opening`]: what the first bytes say it is (native, text, or HTTP,
//!   which [`super::web`] serves and may hand back as a WebSocket);
//! - [`handshake`]: a native `hello` or a text client's greeting, ending
//!   in a registered [`Session`];
//! - `requests` and `text`: one request at a time, one function per kind;
//! - `says`: the `say` pipeline that keeps answers in request order;
//! - `reply`: the answers and errors themselves.

mod handshake;
mod opening;
mod reply;
mod requests;
mod says;
#[cfg(test)]
mod tests;
mod text;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::protocol::{
    ErrorCode, MAX_TEXT_LEN, Nickname, PROTOCOL_VERSION, RoomName, ServerMessage,
};
use crate::registry::{CutReason, Outbox, Room, SessionId, outbox};
use crate::transport::{BoxReader, BoxWriter, Connection, Frame, LineFramer, PeerAddr};

use super::rate::TokenBucket;
use super::rooms::Member;
use super::shared::Shared;
use super::web;
use super::writer::{self, Dialect, WriterEnd};
use opening::Opening;
use reply::{Failure, bye, push};
use says::Says;

/// Read buffer a connection starts with; the framer grows it for long lines
/// up to the line limit. Small, because idle connections are the common case.
const INITIAL_READ_BUFFER: usize = 1024;

/// How long a session that ended (other than by shutdown) waits for its
/// writer to flush the last frames, such as an error and `bye`.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

type Reader = FramedRead<BoxReader, LineFramer>;

/// Why a session ended; logged, and shown to the rooms it leaves.
#[derive(Debug)]
enum End {
    PeerClosed,
    Quit(Option<String>),
    ReadFailed(std::io::Error),
    WriteFailed(std::io::Error),
    SlowConsumer,
    NickLost,
    TooManyErrors,
    IdleTimeout,
    HandshakeTimeout,
    UnsupportedVersion,
    Shutdown,
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
            Self::TooManyErrors => f.write_str("disconnected: too many errors"),
            Self::IdleTimeout => f.write_str("disconnected: idle"),
            Self::HandshakeTimeout => f.write_str("no hello in time"),
            Self::UnsupportedVersion => f.write_str("unsupported protocol version"),
            Self::Shutdown => f.write_str("server shutting down"),
        }
    }
}

/// What handling one frame asks of the loop.
enum Flow {
    Continue,
    Close(End),
}

/// Aborts the writer task if the session is dropped first (for example when
/// the server's shutdown deadline aborts the session).
struct WriterTask(JoinHandle<WriterEnd>);

impl Drop for WriterTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves one connection until it closes or `shutdown` fires: tells its
/// kind from its first bytes, then runs a chat session or the web side.
pub(crate) async fn serve(shared: Arc<Shared>, conn: Connection, shutdown: CancellationToken) {
    let Connection {
        reader,
        writer,
        peer,
        ..
    } = conn;
    let limits = &shared.limits;
    let mut reader = framed(reader, limits.max_line_len);
    let opening = tokio::select! {
        _ = shutdown.cancelled() => return,
        opening = opening::sniff(&mut reader, limits.sniff) => opening,
    };
    match opening {
        Opening::Closed => {}
        Opening::Http(first_line) if limits.web => {
            let parts = reader.into_parts();
            let mut read = BytesMut::from(&first_line[..]);
            read.extend_from_slice(&parts.read_buf);
            let upgraded = web::serve(limits, read.freeze(), parts.io, writer, peer).await;
            if let Some(ws) = upgraded {
                // A WebSocket's messages are already lines of the native
                // dialect.
                let reader = framed(ws.reader, limits.max_line_len);
                chat(
                    &shared,
                    reader,
                    ws.writer,
                    ws.peer,
                    Dialect::Native,
                    None,
                    shutdown,
                )
                .await;
            }
        }
        Opening::Http(first_line) => {
            let mut line = first_line;
            line.truncate(line.len() - 1);
            let first = Some(Frame::Line(line));
            chat(
                &shared,
                reader,
                writer,
                peer,
                Dialect::Text,
                first,
                shutdown,
            )
            .await;
        }
        Opening::Chat(dialect, first) => {
            chat(&shared, reader, writer, peer, dialect, first, shutdown).await;
        }
    }
}

fn framed(reader: BoxReader, max_line_len: usize) -> Reader {
    FramedRead::with_capacity(reader, LineFramer::new(max_line_len), INITIAL_READ_BUFFER)
}

/// Runs a chat session once the dialect is known.
async fn chat(
    shared: &Arc<Shared>,
    mut reader: Reader,
    writer: BoxWriter,
    peer: PeerAddr,
    dialect: Dialect,
    first_line: Option<Frame>,
    shutdown: CancellationToken,
) {
    let limits = &shared.limits;
    let (tx, rx) = outbox(limits.outbox_frames, limits.outbox_bytes);
    let mut writer_task = WriterTask(tokio::spawn(writer::run(writer, rx, dialect)));

    // A text client's first line may have arrived during the sniff; it is
    // handled before anything else is read.
    let mut first_text = None;
    let session = match dialect {
        Dialect::Text => {
            first_text = first_line;
            handshake::text(shared, peer, tx).await
        }
        Dialect::Native => {
            tokio::select! {
                _ = shutdown.cancelled() => None,
                s = handshake::native(shared, peer, tx, &mut reader, first_line) => s,
            }
        }
    };
    let Some(mut session) = session else {
        // The handshake failed and said why; let the writer flush that.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer_task.0).await;
        return;
    };
    tracing::info!(%peer, nick = %session.nick, ?dialect, "connected");

    let first = match first_text {
        Some(frame) => Some(session.on_frame(frame).await),
        None => None,
    };
    let end = match first {
        Some(Flow::Close(end)) => end,
        _ => session.run(&mut reader, &mut writer_task, &shutdown).await,
    };
    tracing::info!(%peer, nick = %session.nick, reason = %end, "disconnected");
    session.finish(&end);
    if !writer_task.0.is_finished() {
        // The writer drains what is queued (a `bye`, say) and closes. On
        // shutdown the server's deadline bounds this wait from outside;
        // otherwise a peer that stopped reading would keep its connection
        // and its slot for as long as it stays stalled, so the wait is
        // bounded here and the writer is aborted with the session.
        if matches!(end, End::Shutdown) {
            let _ = (&mut writer_task.0).await;
        } else {
            let _ = tokio::time::timeout(CLOSE_LINGER, &mut writer_task.0).await;
        }
    }
}

/// A registered session: the state one connection needs after its dialect
/// is known and its nick is registered.
struct Session {
    shared: Arc<Shared>,
    id: SessionId,
    nick: Nickname,
    dialect: Dialect,
    outbox: Outbox,
    /// The rooms joined, by folded name. Holding the room lets `say` take
    /// only the room's lock, never the registry's.
    rooms: HashMap<String, Arc<Room>>,
    /// The text dialect's current room, where plain lines go.
    current: Option<RoomName>,
    rate: TokenBucket,
    errors: TokenBucket,
    last_heard: Instant,
    pinged: bool,
    says: Says,
}

impl Session {
    fn new(
        shared: &Arc<Shared>,
        id: SessionId,
        nick: Nickname,
        dialect: Dialect,
        outbox: Outbox,
    ) -> Self {
        let limits = &shared.limits;
        let now = Instant::now();
        Self {
            shared: shared.clone(),
            id,
            nick,
            dialect,
            outbox,
            rooms: HashMap::new(),
            current: None,
            rate: TokenBucket::new(limits.rate_per_sec, limits.rate_burst, now),
            errors: TokenBucket::refilling_every(limits.error_refill, limits.max_errors, now),
            last_heard: now,
            pinged: false,
            says: Says::default(),
        }
    }

    /// This session as the rooms know it.
    fn member(&self) -> Member<'_> {
        Member {
            id: self.id,
            nick: &self.nick,
            outbox: &self.outbox,
        }
    }

    fn welcome(&self, reference: Option<String>) {
        let limits = &self.shared.limits;
        push(
            &self.outbox,
            ServerMessage::Welcome {
                version: PROTOCOL_VERSION,
                nick: self.nick.clone(),
                server: limits.server_name.clone(),
                max_line_len: limits.max_line_len,
                max_text_len: MAX_TEXT_LEN,
            },
            reference,
        );
    }

    async fn run(
        &mut self,
        reader: &mut Reader,
        writer: &mut WriterTask,
        shutdown: &CancellationToken,
    ) -> End {
        loop {
            let deadline = self.next_deadline();
            let flow = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    bye(&self.outbox, "server shutting down");
                    return End::Shutdown;
                }
                ended = &mut writer.0 => return match ended {
                    Ok(WriterEnd::Cut(CutReason::NickLost)) => End::NickLost,
                    Ok(WriterEnd::Cut(_)) => End::SlowConsumer,
                    Ok(WriterEnd::Failed(e)) => End::WriteFailed(e),
                    // The session holds a sender, so the queue cannot have
                    // drained; a panicked writer is reported as a failed write.
                    Ok(WriterEnd::Drained) | Err(_) => End::WriteFailed(std::io::ErrorKind::BrokenPipe.into()),
                },
                item = reader.next() => match item {
                    None => return End::PeerClosed,
                    Some(Err(e)) => return End::ReadFailed(e),
                    Some(Ok(frame)) => self.on_frame(frame).await,
                },
                done = self.says.next(), if !self.says.is_empty() => self.on_said(done),
                _ = tokio::time::sleep_until(deadline) => self.on_silence(),
            };
            if let Flow::Close(end) = flow {
                return end;
            }
        }
    }

    /// When the next keepalive action is due: a ping for a native client
    /// that has been quiet, then the idle cut-off.
    fn next_deadline(&self) -> Instant {
        let limits = &self.shared.limits;
        match self.dialect {
            Dialect::Native if !self.pinged => self.last_heard + limits.ping_interval,
            Dialect::Native => self.last_heard + limits.idle_timeout,
            Dialect::Text => match limits.text_idle_timeout {
                Some(t) => self.last_heard + t,
                // About 30 years: never, without overflowing Instant.
                None => Instant::now() + Duration::from_secs(1 << 30),
            },
        }
    }

    fn on_silence(&mut self) -> Flow {
        if Instant::now() < self.next_deadline() {
            return Flow::Continue;
        }
        if self.dialect == Dialect::Native && !self.pinged {
            self.pinged = true;
            push(&self.outbox, ServerMessage::Ping, None);
            return Flow::Continue;
        }
        self.fail(
            Failure::new(ErrorCode::IdleTimeout, "no data for too long"),
            None,
        );
        bye(&self.outbox, "idle timeout");
        Flow::Close(End::IdleTimeout)
    }

    /// Leaves every room (telling the others why) and frees the nick. The
    /// session's queue sender is dropped with `self`, which lets the writer
    /// drain and close.
    fn finish(self, end: &End) {
        let reason = match end {
            End::Quit(reason) => reason.clone(),
            other => Some(other.to_string()),
        };
        // The other nodes are told even at shutdown: for them this node's
        // members leave one by one, as they would from a node that stays.
        let silently = matches!(end, End::Shutdown);
        self.shared
            .rooms
            .depart(self.id, &self.nick, self.rooms.values(), reason, silently);
    }
}
