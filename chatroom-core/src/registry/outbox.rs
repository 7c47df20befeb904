//! The bounded per-session outbound queue and the shared, encode-once frame
//! that travels through it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::task::AtomicWaker;
use tokio::sync::Notify;

use crate::protocol::{self, ServerFrame, ServerMessage};

/// A server frame encoded for the wire, shared by every recipient.
///
/// The JSON line is encoded once when the frame is made; the text-dialect
/// line is rendered at most once, by the first text session that needs it.
/// Recipients hold an `Arc`, so a room message costs one encoding whatever
/// the member count, and a delivery costs a reference count, not a copy.
pub struct Outbound {
    frame: ServerFrame,
    json: Bytes,
    text: OnceLock<Option<Bytes>>,
}

impl Outbound {
    /// Encodes `frame` and wraps it for sharing.
    pub fn new(frame: ServerFrame) -> Arc<Self> {
        let json = protocol::encode_server(&frame);
        Arc::new(Self {
            frame,
            json,
            text: OnceLock::new(),
        })
    }

    /// Shorthand for a frame that answers no request.
    pub fn message(message: ServerMessage) -> Arc<Self> {
        Self::new(ServerFrame::new(message))
    }

    /// The frame.
    pub fn frame(&self) -> &ServerFrame {
        &self.frame
    }

    /// The JSON line, with its `\n`.
    pub(crate) fn json(&self) -> &Bytes {
        &self.json
    }

    /// The text-dialect line with its `\r\n`, or `None` when text clients
    /// are not shown this frame.
    pub(crate) fn text(&self) -> Option<&Bytes> {
        self.text
            .get_or_init(|| {
                protocol::text::render(&self.frame.message).map(|mut line| {
                    line.push_str("\r\n");
                    Bytes::from(line)
                })
            })
            .as_ref()
    }
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}

/// How often a paced producer looks whether the writer has made room.
const PACE: std::time::Duration = std::time::Duration::from_millis(2);

/// Most bytes a paced producer lets wait in a queue. What it queues (a
/// backlog or a catch-up read back from the history store) is this
/// session's own copy, not shared with the room's other members, so it is
/// kept small: a thousand members catching up at once hold 64 MiB, not a
/// thousand full queues. The writer empties this much in one or two
/// writes, so it is no brake on a reader that keeps up.
const PACED_BYTES: usize = 64 * 1024;

/// A queue keeps at most this many slots while its writer is parked; a
/// larger buffer, grown by a burst, is given back when the writer finds the
/// queue empty and parks, so an idle connection holds no queue memory. (Not
/// on every drain: under load the writer empties the queue at every batch,
/// and giving the buffer back each time made every batch regrow it.)
pub(crate) const KEEP_SLOTS: usize = 64;

/// Why a session's outbox was closed from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CutReason {
    /// The queue overflowed: the client reads slower than its rooms talk.
    SlowConsumer,
    /// Its nickname is held by a session of another node now (this node
    /// was cut off from the cluster longer than the nick's lease).
    NickLost,
    /// A server operator disconnected it (`kill`); the reason, if the
    /// operator gave one, is shown to the session before it closes.
    Killed(Option<String>),
}

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue was full; the session has been cut off.
    Full,
    /// The session is gone or already cut off.
    Closed,
}

/// The queue both sides share.
///
/// A plain list under a lock, not a channel: a push is one uncontended lock
/// and one reference count, and the writer is woken only when the queue
/// turns from empty to non-empty. While the writer is busy writing, pushes
/// pile up without waking anyone, and the writer takes them all in its next
/// batch. (A channel wakes its receiver on every send; in a room of 100 that
/// was most of the cost of a delivery, docs/benchmarks.md.)
struct Queue {
    frames: Mutex<VecDeque<Arc<Outbound>>>,
    max_frames: usize,
    /// Bytes queued and not yet written; the writer subtracts what it wrote.
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    /// The writer, parked on an empty queue.
    writer: AtomicWaker,
    /// The writer, parked on a socket that takes no bytes: a cut-off must
    /// still reach it.
    writing: AtomicWaker,
    /// Set when the last [`Outbox`] is dropped.
    senders_gone: AtomicBool,
    /// Set when the [`OutboxReceiver`] is dropped.
    receiver_gone: AtomicBool,
    /// Set when the session must be cut off; both of the writer's wakers
    /// are woken after it is set. (A cancellation token did this before;
    /// its waiter list took a lock per batch on the write path.)
    reason: OnceLock<CutReason>,
    /// Woken when a room held its traffic back because the queue was full
    /// (see [`Outbox::offer`]); the session then catches the member up.
    fell_behind: Notify,
}

impl Queue {
    fn frames(&self) -> MutexGuard<'_, VecDeque<Arc<Outbound>>> {
        // Nothing panics while holding the lock; a poisoned lock still
        // holds a consistent list.
        self.frames.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves every queued frame to the back of `buf`; the number moved.
    /// An empty `buf` trades places with the queue's list, so a batch moves
    /// no frame at all: the writer writes from the list the rooms filled,
    /// and its own emptied list takes the queue's place.
    fn take(&self, buf: &mut VecDeque<Arc<Outbound>>) -> usize {
        let mut frames = self.frames();
        let n = frames.len();
        if buf.is_empty() {
            std::mem::swap(&mut *frames, buf);
        } else {
            buf.extend(frames.drain(..));
        }
        n
    }

    /// Gives back the queue's buffer when it is empty and large; called by
    /// a writer about to park.
    fn shrink_if_idle(&self) {
        let mut frames = self.frames();
        if frames.is_empty() && frames.capacity() > KEEP_SLOTS {
            *frames = VecDeque::new();
        }
    }
}

/// Keeps count of the senders: dropped with the last [`Outbox`] clone, it
/// tells the writer that nothing more will come.
struct Senders {
    queue: Arc<Queue>,
}

impl Drop for Senders {
    fn drop(&mut self) {
        self.queue.senders_gone.store(true, Ordering::Release);
        self.queue.writer.wake();
    }
}

/// The sending side of a session's queue. Cheap to clone; held by the
/// registry (for fanout) and by the session itself (for replies).
#[derive(Clone)]
pub(crate) struct Outbox {
    senders: Arc<Senders>,
}

/// The receiving side of a session's queue, owned by its writer.
pub(crate) struct OutboxReceiver {
    queue: Arc<Queue>,
}

/// A queue that takes room traffic up to `max_frames` frames and about
/// `max_bytes` bytes, and the session's own frames up to twice that (a
/// single frame larger than the byte bound is still accepted into an empty
/// queue, so a large reply cannot wedge a session).
///
/// # Panics
/// When `max_frames` is zero.
pub(crate) fn outbox(max_frames: usize, max_bytes: usize) -> (Outbox, OutboxReceiver) {
    assert!(max_frames > 0, "an outbox holds at least one frame");
    let queue = Arc::new(Queue {
        frames: Mutex::new(VecDeque::new()),
        max_frames,
        queued_bytes: AtomicUsize::new(0),
        max_bytes,
        writer: AtomicWaker::new(),
        writing: AtomicWaker::new(),
        senders_gone: AtomicBool::new(false),
        receiver_gone: AtomicBool::new(false),
        reason: OnceLock::new(),
        fell_behind: Notify::new(),
    });
    (
        Outbox {
            senders: Arc::new(Senders {
                queue: queue.clone(),
            }),
        },
        OutboxReceiver { queue },
    )
}

impl Outbox {
    fn queue(&self) -> &Queue {
        &self.senders.queue
    }

    /// Queues a frame of the session's own (a reply, a private message, a
    /// presence notice) without waiting. It may use the queue's bounds
    /// twice over: room traffic stops at the bounds ([`Outbox::offer`]) and
    /// is caught up later, so a queue full of it must still take the
    /// session's own frames, or a member that fell behind would be cut off
    /// for saying something. Past twice the bounds the session is cut off
    /// as a slow consumer (its writer then drops the backlog and closes the
    /// connection).
    ///
    /// # Errors
    /// [`PushError::Full`] on overflow, [`PushError::Closed`] when the
    /// session is gone or was cut off before.
    pub(crate) fn push(&self, frame: &Arc<Outbound>) -> Result<(), PushError> {
        let queue = self.queue();
        let pushed = self.enqueue(frame, 2 * queue.max_frames, 2 * queue.max_bytes);
        if pushed == Err(PushError::Full) {
            self.cut_off(CutReason::SlowConsumer);
        }
        pushed
    }

    /// Queues `frame` without waiting, or says the queue is full and leaves
    /// the session as it is: the caller (a room) holds its traffic back and
    /// tells the session with [`Outbox::fell_behind`].
    ///
    /// # Errors
    /// [`PushError::Full`] when the queue holds its most frames or bytes,
    /// [`PushError::Closed`] when the session is gone or was cut off.
    pub(crate) fn offer(&self, frame: &Arc<Outbound>) -> Result<(), PushError> {
        let queue = self.queue();
        self.enqueue(frame, queue.max_frames, queue.max_bytes)
    }

    /// Queues `frame` if the queue then holds at most `max_frames` frames
    /// and about `max_bytes` bytes.
    fn enqueue(
        &self,
        frame: &Arc<Outbound>,
        max_frames: usize,
        max_bytes: usize,
    ) -> Result<(), PushError> {
        let queue = self.queue();
        // The reason is set before the token is cancelled, and reading it
        // is one atomic load; the token's own check takes a lock, which
        // showed up on the fanout path (docs/benchmarks.md).
        if queue.reason.get().is_some() || queue.receiver_gone.load(Ordering::Relaxed) {
            return Err(PushError::Closed);
        }
        let len = frame.json().len();
        let before = queue.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before + len > max_bytes {
            queue.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(PushError::Full);
        }
        let was_empty = {
            let mut frames = queue.frames();
            if frames.len() >= max_frames {
                drop(frames);
                queue.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                return Err(PushError::Full);
            }
            frames.push_back(frame.clone());
            frames.len() == 1
        };
        // A writer with frames still queued comes back for them without
        // being told; only one that may be parked on an empty queue is.
        if was_empty {
            queue.writer.wake();
        }
        Ok(())
    }

    /// Queues `frame` once the queue is less than half full and holds less
    /// than [`PACED_BYTES`], waiting for the writer to make room as long as
    /// it takes; never cuts the session off. For a producer that can wait (a backlog being streamed, a
    /// session's catch-up): other rooms' traffic may fill the queue between
    /// a look and a push, so a full queue is waited out again.
    ///
    /// # Errors
    /// [`PushError::Closed`] when the session is gone or was cut off.
    pub(crate) async fn push_paced(&self, frame: &Arc<Outbound>) -> Result<(), PushError> {
        loop {
            while self.is_half_full() || self.queued_bytes() > PACED_BYTES {
                if self.is_closed() {
                    return Err(PushError::Closed);
                }
                tokio::time::sleep(PACE).await;
            }
            match self.offer(frame) {
                Err(PushError::Full) => {}
                done => return done,
            }
        }
    }

    /// Tells the session that a room held traffic back from it.
    pub(crate) fn fell_behind(&self) {
        self.queue().fell_behind.notify_one();
    }

    /// Completes once a room has held traffic back since the last time this
    /// completed (a wake-up given while nobody waits is kept).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn behind(&self) {
        self.queue().fell_behind.notified().await;
    }

    /// Cuts the session off: its writer stops sending queued frames and
    /// closes with `reason`. The first reason wins.
    pub(crate) fn cut_off(&self, reason: CutReason) {
        let queue = self.queue();
        let _ = queue.reason.set(reason);
        queue.writer.wake();
        queue.writing.wake();
    }

    /// True when the queue holds half its frames or half its bytes: a
    /// producer that can wait (a backlog being streamed) waits then.
    pub(crate) fn is_half_full(&self) -> bool {
        let queue = self.queue();
        queue.queued_bytes.load(Ordering::Relaxed) > queue.max_bytes / 2
            || queue.frames().len() > queue.max_frames / 2
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queue().queued_bytes.load(Ordering::Relaxed)
    }

    /// True once the session has been cut off or its writer is gone.
    pub(crate) fn is_closed(&self) -> bool {
        let queue = self.queue();
        queue.reason.get().is_some() || queue.receiver_gone.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.queue();
        f.debug_struct("Outbox")
            .field("queued_bytes", &queue.queued_bytes.load(Ordering::Relaxed))
            .field("cut", &queue.reason.get().is_some())
            .finish()
    }
}

impl OutboxReceiver {
    /// Waits for queued frames or the cut-off, whichever comes first; a
    /// cut-off wins when both are ready. Moves every queued frame to the
    /// back of `buf` (the queue's bounds bound it); `Ok(0)` means every
    /// sender is gone and the queue is empty.
    ///
    /// # Errors
    /// The [`CutReason`] once the session has been cut off.
    ///
    /// # Cancel safety
    /// Cancel-safe: frames move into `buf` only when this completes.
    pub(crate) async fn next_batch(
        &mut self,
        buf: &mut VecDeque<Arc<Outbound>>,
    ) -> Result<usize, CutReason> {
        let queue = &*self.queue;
        std::future::poll_fn(|cx| Self::poll_batch(queue, cx, buf)).await
    }

    fn poll_batch(
        queue: &Queue,
        cx: &mut Context<'_>,
        buf: &mut VecDeque<Arc<Outbound>>,
    ) -> Poll<Result<usize, CutReason>> {
        if let Some(reason) = queue.reason.get() {
            return Poll::Ready(Err(reason.clone()));
        }
        // Read before looking at the list: a sender's last push happens
        // before it is dropped, so "gone and empty" is really the end.
        let gone = queue.senders_gone.load(Ordering::Acquire);
        let n = queue.take(buf);
        if n > 0 || gone {
            return Poll::Ready(Ok(n));
        }
        // About to park: an idle connection keeps no large buffers.
        queue.shrink_if_idle();
        if buf.capacity() > KEEP_SLOTS {
            *buf = VecDeque::new();
        }
        // Register, then look again: a push (or a cut-off) between the
        // first look and the registration woke nobody, or the waker left
        // before.
        queue.writer.register(cx.waker());
        if let Some(reason) = queue.reason.get() {
            return Poll::Ready(Err(reason.clone()));
        }
        let gone = queue.senders_gone.load(Ordering::Acquire);
        let n = queue.take(buf);
        if n > 0 || gone {
            Poll::Ready(Ok(n))
        } else {
            Poll::Pending
        }
    }

    #[cfg(any(test, feature = "test-util"))]
    /// Takes frames that are already queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Arc<Outbound>> {
        self.queue.frames().pop_front()
    }

    /// Tells the queue that `bytes` of JSON-encoded frames left it.
    pub(crate) fn release(&self, bytes: usize) {
        self.queue.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Completes when the session is cut off.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn cut(&self) -> CutReason {
        let queue = &*self.queue;
        std::future::poll_fn(|cx| {
            if let Some(reason) = queue.reason.get() {
                return Poll::Ready(reason.clone());
            }
            queue.writing.register(cx.waker());
            match queue.reason.get() {
                Some(reason) => Poll::Ready(reason.clone()),
                None => Poll::Pending,
            }
        })
        .await
    }

    #[cfg(test)]
    /// Why the session was cut off, if it was.
    pub(crate) fn cut_reason(&self) -> Option<CutReason> {
        self.queue.reason.get().cloned()
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        self.queue.receiver_gone.store(true, Ordering::Relaxed);
        // Frames nobody will write are freed now, not when the last room
        // lets go of the sender.
        let dropped = std::mem::take(&mut *self.queue.frames());
        drop(dropped);
    }
}

impl fmt::Debug for OutboxReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
