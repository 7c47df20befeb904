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
//! - `reply`: the answers and errors themselves;
//! - [`foreign`]: moderation asked for by another dialect's session.

mod account;
mod admission;
mod catch_up;
pub(super) mod foreign;
mod handshake;
mod moderate;
mod opening;
mod reply;
mod requests;
mod roles;
mod says;
mod state;
#[cfg(test)]
mod tests;
mod text;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::protocol::{ErrorCode, ServerMessage};
use crate::registry::outbox;
use crate::transport::{BoxReader, BoxWriter, Connection, Frame, LineFramer, PeerAddr};

use super::shared::Shared;
#[cfg(feature = "web")]
use super::web;
use super::writer::{self, Dialect, WriterEnd};
use opening::{Opening, Reader};
use reply::{Failure, bye, push};
use state::{End, Flow, Session};

/// Read buffer a connection starts with; the framer grows it for long lines
/// up to the line limit. Small, because idle connections are the common case.
const INITIAL_READ_BUFFER: usize = 256;

/// A session that has heard nothing for this long, with nothing half-read,
/// gives its read buffer back: most connections are idle most of the time,
/// and the buffer was a sixth of an idle one's memory. The next line costs
/// one short read more (the framer asks for room as soon as it sees a
/// partial line, see `LineFramer`).
const QUIET_READ_BUFFER: Duration = Duration::from_secs(1);

/// How long a session that ended (other than by shutdown) waits for its
/// writer to flush the last frames, such as an error and `bye`.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// How long a closing session goes on reading, and dropping, what the peer
/// still sends once its last frames are out. Closing a socket with unread
/// input resets the connection, and a reset makes the peer's system drop
/// what it has received but not yet read: the very error and `bye` that
/// say why it was closed (a client that floods is the usual case).
const DRAIN_ON_CLOSE: Duration = Duration::from_secs(1);

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
    let window = opening::Window {
        short: limits.sniff,
        long: limits.browser_sniff,
        is_browser: || {
            limits.web
                && peer
                    .ip()
                    .is_some_and(|ip| shared.browsers.is_recent(ip, Instant::now()))
        },
    };
    let opening = tokio::select! {
        _ = shutdown.cancelled() => return,
        opening = opening::sniff(&mut reader, window) => opening,
    };
    match opening {
        Opening::Closed => {}
        #[cfg(feature = "web")]
        Opening::Http(first_line) if limits.web => {
            if let Some(ip) = peer.ip() {
                shared.browsers.saw(ip, Instant::now());
            }
            let parts = reader.into_parts();
            let mut read = bytes::BytesMut::from(&first_line[..]);
            read.extend_from_slice(&parts.read_buf);
            let origins = shared.tuning.web_origins();
            let upgraded = Box::pin(web::serve(
                limits,
                &origins,
                read.freeze(),
                parts.io,
                writer,
                peer,
            ))
            .await;
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
        // Also where the crate is built without `web`: the line is chat.
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

/// Reads and drops what the peer still sends, until it closes or for
/// [`DRAIN_ON_CLOSE`], whichever comes first (see there for why).
async fn drain(reader: Reader) {
    use tokio::io::AsyncReadExt;
    let mut io = reader.into_inner();
    // On the heap, and only now: an idle session's future stays small.
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(DRAIN_ON_CLOSE, async {
        while io.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await;
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
    let (tx, rx) = outbox(
        limits.outbox_frames,
        limits.outbox_bytes,
        shared.queue_budget.clone(),
    );
    let mut writer_task = WriterTask(tokio::spawn(writer::run(
        writer,
        rx,
        dialect,
        limits.write_timeout,
    )));

    // A text client's first line may have arrived during the sniff; it is
    // handled before anything else is read.
    let mut first_text = None;
    // Boxed: the session lives across every await below, and the future's
    // layout would otherwise hold it more than once.
    let session = match dialect {
        Dialect::Text => {
            first_text = first_line;
            Box::pin(handshake::text(shared, peer, tx))
                .await
                .map(Box::new)
        }
        Dialect::Native => {
            tokio::select! {
                _ = shutdown.cancelled() => None,
                s = Box::pin(handshake::native(shared, peer, tx, &mut reader, first_line)) => s.map(Box::new),
            }
        }
    };
    let Some(mut session) = session else {
        // The handshake failed and said why; let the writer flush that.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer_task.0).await;
        if writer_task.0.is_finished() && !shutdown.is_cancelled() {
            drain(reader).await;
        }
        return;
    };
    tracing::info!(%peer, nick = %session.nick, ?dialect, "connected");
    shared.metrics.connected(dialect);

    let first = match first_text {
        Some(frame) => Some(Box::pin(session.on_frame(frame)).await),
        None => None,
    };
    let end = match first {
        Some(Flow::Close(end)) => end,
        _ => session.run(&mut reader, &mut writer_task, &shutdown).await,
    };
    tracing::info!(%peer, nick = %session.nick, reason = %end, "disconnected");
    shared.metrics.disconnected(dialect, end.label());
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
    let peer_gone = matches!(end, End::PeerClosed | End::ReadFailed(_));
    if writer_task.0.is_finished() && !peer_gone && !matches!(end, End::Shutdown) {
        drain(reader).await;
    }
}

impl Session {
    async fn run(
        &mut self,
        reader: &mut Reader,
        writer: &mut WriterTask,
        shutdown: &CancellationToken,
    ) -> End {
        loop {
            // A run of held `say`s ends once no whole line is left to
            // read: the next read may take a while.
            if self.held.is_some() && memchr::memchr(b'\n', reader.read_buffer()).is_none() {
                self.end_run();
            }
            let holds_buffer =
                reader.read_buffer().is_empty() && reader.read_buffer().capacity() > 0;
            let mut deadline = self.next_deadline();
            if holds_buffer {
                deadline = deadline.min(self.last_heard + QUIET_READ_BUFFER);
            }
            let flow = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    bye(&self.outbox, "server shutting down");
                    return End::Shutdown;
                }
                ended = &mut writer.0 => return End::from_writer(ended),
                item = reader.next() => match item {
                    None => return End::PeerClosed,
                    Some(Err(e)) => return End::ReadFailed(e),
                    // On the heap: the handlers' states would otherwise
                    // size every idle session's future (docs/benchmarks.md,
                    // idle connections).
                    Some(Ok(frame)) => {
                        self.more_read = memchr::memchr(b'\n', reader.read_buffer()).is_some();
                        let held = self.held_says;
                        let flow = Box::pin(self.on_frame(frame)).await;
                        // A line that added no `say` to the run (refused,
                        // rate-limited, anything else) ends it: a run is
                        // consecutive `say`s, so a client flooding past its
                        // rate cannot keep its accepted lines waiting.
                        if self.held_says == held {
                            self.end_run();
                        }
                        flow
                    }
                },
                done = self.says.next(), if !self.says.is_empty() => self.on_said(done),
                () = self.outbox.behind() => {
                    self.shared.metrics.lagged();
                    Box::pin(self.on_behind()).await
                }
                _ = tokio::time::sleep_until(deadline) => {
                    // Checked again now: the read above may have taken the
                    // start of a line into the buffer while this slept, and
                    // dropping it would cut that line.
                    if holds_buffer
                        && reader.read_buffer().is_empty()
                        && Instant::now() >= self.last_heard + QUIET_READ_BUFFER
                    {
                        *reader.read_buffer_mut() = bytes::BytesMut::new();
                    }
                    self.on_silence()
                }
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
        self.shared.metrics.left(self.rooms.len() as u64);
        self.shared.moderation.gone(self.id);
        self.shared
            .rooms
            .depart(self.id, &self.nick, self.rooms.values(), reason, silently);
    }
}
