//! The writing half of a session: drains the outbound queue onto the socket.
//!
//! Everything a session sends (replies, room messages, presence) goes through
//! its bounded queue, so the order the peer sees is the order frames were
//! queued. Each wake-up takes every frame already queued (the queue's list
//! itself, swapped for the writer's empty one) and hands the shared,
//! already-encoded bytes to vectored writes of up to [`BATCH`] frames: no
//! copy and no allocation per delivered frame, and few syscalls under load.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::protocol::{ErrorCode, ServerMessage};
use crate::registry::{CutReason, Entry, Outbound, OutboxReceiver};
use crate::transport::BoxWriter;

/// Most frames handed to one vectored write: Linux's limit on the slices
/// of one `writev`. Under load a writer finds hundreds of frames waiting,
/// and on loopback every write also pays the receiving side of TCP, so
/// fewer, larger writes are most of what a delivery costs the kernel
/// (docs/benchmarks.md: 64 per write held the server to a write per ~55
/// frames). The slices (16 KiB) sit on the stack while the write is made.
const BATCH: usize = 1024;

/// The slices gathered for a batch of at most this many frames, the usual
/// case when the writer keeps up.
const SMALL_BATCH: usize = 64;

/// How long a cut-off peer's socket gets to take the notice and `bye`.
const NOTICE_WINDOW: Duration = Duration::from_millis(200);

/// Which rendering of a frame the peer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// One JSON object per line.
    Native,
    /// Readable lines for people on `nc` or `telnet`.
    Text,
}

impl Dialect {
    fn bytes(self, entry: &Entry) -> Option<&Bytes> {
        match self {
            Self::Native => Some(entry.json()),
            Self::Text => entry.text(),
        }
    }
}

/// How the writer ended.
#[derive(Debug)]
pub(crate) enum WriterEnd {
    /// Every sender was dropped and the queue was written out, or `bye`
    /// was written (nothing is written after it).
    Drained,
    /// The session was cut off (its queue overflowed).
    Cut(CutReason),
    /// Writing to the peer failed.
    Failed(io::Error),
}

/// Writes queued frames until the queue closes, the session is cut off, or
/// the peer stops taking bytes in a way the OS reports.
pub(crate) async fn run(
    mut writer: BoxWriter,
    mut rx: OutboxReceiver,
    dialect: Dialect,
    write_timeout: Duration,
) -> WriterEnd {
    // What is still to be written, front first. It lives out here so that a
    // cut-off in the middle of a write knows where the peer's stream stands.
    // It is empty whenever a batch is taken, so taking one swaps lists.
    let mut pending = Pending::new(dialect);
    // Bytes of the last batch, written and given back with the next take.
    let mut written = 0;
    loop {
        let taken = match rx.next_batch(&mut pending.frames, &mut written).await {
            Ok(taken) => taken,
            Err(reason) => return Box::pin(cut_off(writer, reason, dialect, pending)).await,
        };
        if taken.frames == 0 {
            let _ = writer.shutdown().await;
            return WriterEnd::Drained;
        }
        written = taken.bytes;
        // `bye` is the last frame a peer gets. Room traffic can still reach
        // the queue after it, from other sessions' threads, until the
        // session has left its rooms; that traffic is dropped here. (The
        // queue says whether a batch holds a `bye`, so the frames of an
        // ordinary batch are not looked at one by one.)
        if taken.bye
            && let Some(at) = pending.frames.iter().position(|f| f.is_bye())
        {
            pending.frames.truncate(at + 1);
        }
        // The encoded bytes stay shared with every other recipient and are
        // borrowed for the write: a delivery costs no copy and no
        // reference-count traffic beyond the queue's own `Arc`.
        let result = tokio::select! {
            biased;
            // A peer that stopped reading can park this write forever; the
            // cut-off must still win so the session ends.
            reason = rx.cut() => return Box::pin(cut_off(writer, reason, dialect, pending)).await,
            r = write_pending(&mut writer, &mut pending, write_timeout) => r,
        };
        if let Err(e) = result {
            return WriterEnd::Failed(e);
        }
        if taken.bye {
            let _ = writer.shutdown().await;
            return WriterEnd::Drained;
        }
    }
}

/// What one vectored write was offered.
#[derive(Debug, Default)]
struct Sent {
    /// Frames from the front, including those with nothing to write.
    frames: usize,
    /// Their bytes (of the front frame, what was left of it).
    bytes: usize,
}

/// Frames not yet written, front first, in the peer's dialect.
struct Pending {
    /// Frames without a rendering in `dialect` (a text client is not
    /// shown every frame) are skipped when written. A run of room messages
    /// joined into one buffer is one entry, and one slice.
    frames: VecDeque<Entry>,
    dialect: Dialect,
    /// Bytes of the front frame already written.
    front_written: usize,
}

impl Pending {
    fn new(dialect: Dialect) -> Self {
        Self {
            frames: VecDeque::new(),
            dialect,
            front_written: 0,
        }
    }

    /// The frame's bytes in this dialect; empty when it has no rendering.
    fn bytes<'a>(&self, frame: &'a Entry) -> &'a [u8] {
        self.dialect.bytes(frame).map_or(&[], |b| &b[..])
    }

    /// One vectored write of the frames at the front: up to
    /// [`SMALL_BATCH`] of them, or up to [`BATCH`] when more are waiting.
    /// The slices are gathered on the stack at every poll: nothing is
    /// allocated per write, and nothing is kept in the writer's future,
    /// whose size every idle connection pays. (Two sizes so that the
    /// common short batch does not fill 16 KiB of slices.)
    ///
    /// `sent` says what was offered: the frames from the front it covers
    /// (with those that have nothing to write) and their bytes.
    fn poll_write(
        &self,
        writer: Pin<&mut (dyn AsyncWrite + Send)>,
        cx: &mut Context<'_>,
        sent: &mut Sent,
    ) -> Poll<io::Result<usize>> {
        if self.frames.len() <= SMALL_BATCH {
            self.poll_write_up_to::<SMALL_BATCH>(writer, cx, sent)
        } else {
            self.poll_write_up_to::<BATCH>(writer, cx, sent)
        }
    }

    fn poll_write_up_to<const N: usize>(
        &self,
        writer: Pin<&mut (dyn AsyncWrite + Send)>,
        cx: &mut Context<'_>,
        sent: &mut Sent,
    ) -> Poll<io::Result<usize>> {
        let mut slices = [IoSlice::new(&[]); N];
        let mut n = 0;
        *sent = Sent::default();
        for frame in &self.frames {
            let bytes = self.bytes(frame);
            let bytes = if sent.frames == 0 {
                &bytes[self.front_written..]
            } else {
                bytes
            };
            if !bytes.is_empty() {
                if n == N {
                    break;
                }
                slices[n] = IoSlice::new(bytes);
                n += 1;
                sent.bytes += bytes.len();
            }
            sent.frames += 1;
        }
        writer.poll_write_vectored(cx, &slices[..n])
    }

    /// Drops the front frames that have nothing (left) to write.
    fn skip_written(&mut self) {
        while let Some(front) = self.frames.front() {
            if self.bytes(front).len() > self.front_written {
                return;
            }
            self.frames.pop_front();
            self.front_written = 0;
        }
    }
}

/// Writes `pending` with vectored writes, dropping what has been written.
/// A write that takes no byte for `stall` fails with `TimedOut`: a peer
/// that reads nothing at all is dead, not slow (a slow one falls behind
/// and is caught up), and one that reads a little resets the clock.
///
/// # Cancel safety
/// Cancel-safe: `pending` is updated only after a write returns, so after a
/// cancellation it holds exactly the bytes the peer has not been sent.
async fn write_pending(
    writer: &mut BoxWriter,
    pending: &mut Pending,
    stall: Duration,
) -> io::Result<()> {
    loop {
        pending.skip_written();
        if pending.frames.is_empty() {
            break;
        }
        let mut sent = Sent::default();
        let mut written = within(
            stall,
            std::future::poll_fn(|cx| pending.poll_write(writer.as_mut(), cx, &mut sent)),
        )
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if written == sent.bytes {
            // Everything offered went: the usual case, no frame looked at
            // again.
            pending.frames.drain(..sent.frames);
            pending.front_written = 0;
            continue;
        }
        // A short write: whole frames first, then at most one partly
        // written.
        while let Some(front) = pending.frames.front() {
            let left = pending.bytes(front).len() - pending.front_written;
            if written < left {
                pending.front_written += written;
                break;
            }
            written -= left;
            pending.frames.pop_front();
            pending.front_written = 0;
        }
    }
    within(stall, writer.flush()).await
}

/// `io` if it completes within `stall`, else `TimedOut`. The timer is armed
/// only when the first poll finds the socket full: a writable socket, the
/// usual case, costs no timer.
async fn within<T>(stall: Duration, io: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    let mut io = std::pin::pin!(io);
    if let std::task::Poll::Ready(done) = futures::poll!(io.as_mut()) {
        return done;
    }
    // Boxed: a timer held inline would size every writer's future (and so
    // every idle connection) for a wait only a full socket needs.
    Box::pin(tokio::time::timeout(stall, io))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Tells a cut-off peer why, as far as its socket still takes bytes, and
/// closes. The backlog is dropped: it is what the peer could not read. A
/// frame that was partly written is finished first, so the notice starts on
/// a line of its own.
async fn cut_off(
    mut writer: BoxWriter,
    reason: CutReason,
    dialect: Dialect,
    mut pending: Pending,
) -> WriterEnd {
    let (code, text, why) = match &reason {
        CutReason::SlowConsumer => (
            ErrorCode::SlowConsumer,
            "you read too slowly to keep up; disconnecting".to_owned(),
            "slow consumer".to_owned(),
        ),
        CutReason::Killed(None) => (
            ErrorCode::Killed,
            "a server operator disconnected you".to_owned(),
            "killed".to_owned(),
        ),
        CutReason::Killed(Some(reason)) => (
            ErrorCode::Killed,
            format!("a server operator disconnected you: {reason}"),
            format!("killed: {reason}"),
        ),
        CutReason::NickLost => (
            ErrorCode::NickTaken,
            "your nickname was taken on another server while this one was cut off \
             from the cluster; disconnecting"
                .to_owned(),
            "nick taken".to_owned(),
        ),
    };
    let error = Outbound::message(ServerMessage::Error {
        code,
        message: text,
    });
    let bye = Outbound::message(ServerMessage::Bye { reason: why });
    // Only the front frame can have been started; the rest are dropped.
    pending
        .frames
        .truncate(usize::from(pending.front_written > 0));
    pending.frames.extend(
        [error, bye]
            .into_iter()
            .map(Entry::Frame)
            .filter(|f| dialect.bytes(f).is_some()),
    );
    // The socket buffer is likely full; give the notice a moment, no more.
    let _ = tokio::time::timeout(NOTICE_WINDOW, async {
        write_pending(&mut writer, &mut pending, NOTICE_WINDOW).await?;
        writer.shutdown().await
    })
    .await;
    WriterEnd::Cut(reason)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use tokio::io::AsyncWrite;

    use crate::protocol::ServerMessage;
    use crate::registry::{Outbound, QueueBudget, outbox};

    /// A socket that takes at most `per_write` bytes a write and records
    /// how many slices each vectored write was offered.
    #[derive(Clone, Default)]
    struct Recorder {
        bytes: Arc<Mutex<Vec<u8>>>,
        slices: Arc<Mutex<Vec<usize>>>,
        per_write: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.slices.lock().unwrap().push(bufs.len());
            let mut out = self.bytes.lock().unwrap();
            let mut took = 0;
            for buf in bufs {
                let n = buf.len().min(self.per_write - took);
                out.extend_from_slice(&buf[..n]);
                took += n;
                if took == self.per_write {
                    break;
                }
            }
            Poll::Ready(Ok(took))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A backlog of thousands of frames goes out in writes of up to
    /// `BATCH` slices (not the small batch's 64), every byte once and in
    /// order, across writes the socket takes only part of.
    #[tokio::test]
    async fn a_long_backlog_goes_out_in_large_writes_in_order() {
        let (tx, rx) = outbox(4096, 1 << 24, QueueBudget::unlimited());
        let mut expected = Vec::new();
        for i in 0..3000 {
            let frame = Outbound::message(ServerMessage::Notice {
                text: format!("line {i}"),
            });
            expected.extend_from_slice(frame.json());
            tx.push(&frame).unwrap();
        }
        drop(tx);
        let socket = Recorder {
            per_write: 50_000,
            ..Recorder::default()
        };
        let end = super::run(
            Box::pin(socket.clone()),
            rx,
            super::Dialect::Native,
            std::time::Duration::from_secs(1),
        )
        .await;
        assert!(matches!(end, super::WriterEnd::Drained), "{end:?}");
        assert!(*socket.bytes.lock().unwrap() == expected);
        let slices = socket.slices.lock().unwrap();
        let most = *slices.iter().max().unwrap();
        assert!(most > super::SMALL_BATCH && most <= super::BATCH, "{most}");
        assert!(
            slices.len() < 3000 / super::SMALL_BATCH,
            "{} writes",
            slices.len()
        );
    }

    /// Every connection's writer task holds this future while idle: the
    /// rare paths (a cut-off's notice, a write to a full socket) are boxed
    /// so that their state does not size it. (It was 848 bytes with them
    /// inline.)
    #[test]
    fn the_writers_future_stays_small() {
        let (_tx, rx) = outbox(4, 1024, QueueBudget::unlimited());
        let sink: crate::transport::BoxWriter = Box::pin(tokio::io::sink());
        let writer = super::run(
            sink,
            rx,
            super::Dialect::Native,
            std::time::Duration::from_secs(1),
        );
        let size = std::mem::size_of_val(&writer);
        assert!(size <= 512, "the writer's future is {size} bytes");
    }
}
