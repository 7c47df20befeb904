//! The bounded per-session outbound queue and the shared, encode-once frame
//! that travels through it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::task::AtomicWaker;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use crate::protocol::{self, ServerFrame, ServerMessage};

mod entry;

pub(crate) use entry::{Entry, JoinedRun};

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
    /// The frame is a `bye`: nothing is written after it. Worked out once
    /// here, so the queue can tell the writer without the writer looking
    /// at every frame it writes.
    bye: bool,
}

impl Outbound {
    /// Encodes `frame` and wraps it for sharing.
    pub fn new(frame: ServerFrame) -> Arc<Self> {
        let json = protocol::encode_server(&frame);
        let bye = matches!(frame.message, ServerMessage::Bye { .. });
        Arc::new(Self {
            frame,
            json,
            text: OnceLock::new(),
            bye,
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

    /// True for a `bye`, the last frame a session writes.
    pub(crate) fn is_bye(&self) -> bool {
        self.bye
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

/// A queue keeps at most this many slots once its writer has been parked
/// for [`KEEP_LISTS`]; a larger buffer, grown by a burst, is given back
/// then, so an idle connection holds no queue memory. (Not on every drain,
/// nor at every park: under load the writer empties the queue at every
/// batch and often parks between batches, and giving the buffer back each
/// time made every batch regrow it.) A slot is an [`Entry`], 16 bytes:
/// the queue's list and the writer's keep at most 256 bytes each. (At 64
/// slots, the joins' presence frames left idle connections of a room of
/// 100 about 300 bytes larger once slots grew from 8 bytes to 16.)
const KEEP_SLOTS: usize = 16;

/// How long a parked writer keeps lists larger than [`KEEP_SLOTS`].
const KEEP_LISTS: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes any queue may hold without drawing on the server's
/// [`QueueBudget`]: a member that keeps up never holds more, so the budget
/// is touched only by queues that are falling behind, and however many of
/// those have spent it, the others still get their room traffic. (The
/// catch-up of a member that fell behind is paced below this too.)
const UNBUDGETED_BYTES: usize = 64 * 1024;

/// Queues take their share of a [`QueueBudget`] in steps of this many
/// bytes, so the budget's counter is touched once per few kilobytes.
const CREDIT_STEP: usize = 4 * 1024;

/// Bytes of a session's own frames (replies, private messages) a queue may
/// hold beyond its share when the budget is spent. Room traffic gets none:
/// it is held back and caught up later. A session whose own frames pass
/// this while the budget is spent is not reading them, and is cut off as a
/// slow consumer.
const OWN_FRAMES_BEYOND_BUDGET: usize = 16 * 1024;

/// The bytes all sessions' queues may hold together beyond their first
/// [`UNBUDGETED_BYTES`] each (`queue_budget_bytes`): with it, the server's
/// queue memory is at most the budget plus a small amount per connection,
/// not `outbox_bytes` (twice over) per connection. Each queue reserves its
/// share in [`CREDIT_STEP`]s and gives back what it no longer needs when
/// its writer takes the next batch.
#[derive(Debug)]
pub(crate) struct QueueBudget {
    reserved: AtomicUsize,
    /// The most ever reserved at once: how close the server came to the
    /// budget (an operator sizes it by this).
    peak: AtomicUsize,
    max: usize,
}

impl QueueBudget {
    /// A budget of `max` bytes.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            reserved: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            max,
        })
    }

    /// A budget nothing exhausts (tests and tools).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX / 2)
    }

    /// Bytes the queues hold reserved now.
    pub(crate) fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    /// The most the queues held reserved at once since the server started.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, or nothing if that would overdraw it.
    fn reserve(&self, bytes: usize) -> bool {
        let before = self.reserved.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.max {
            self.reserved.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        self.peak.fetch_max(before + bytes, Ordering::Relaxed);
        true
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.reserved.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

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
    frames: Mutex<Frames>,
    max_frames: usize,
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
    /// The server's budget for all queues.
    budget: Arc<QueueBudget>,
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.budget.give_back(self.frames.get_mut().credit);
    }
}

/// What the queue's lock guards: the list and its byte count, kept
/// together so a push checks and counts under the one lock it takes anyway
/// (a separate atomic counter was a second contended cache line per
/// delivery).
#[derive(Default)]
struct Frames {
    /// Frames, and runs of room messages joined into one entry (a run
    /// takes one slot: the byte bound is what bounds its memory).
    list: VecDeque<Entry>,
    /// JSON bytes of the frames queued and of those the writer took and has
    /// not yet written: what the byte bound counts.
    bytes: usize,
    /// Bytes of the frames queued since the writer's last take.
    fresh: usize,
    /// A `bye` was queued since the writer's last take.
    bye: bool,
    /// Bytes of the server's [`QueueBudget`] this queue holds: what `bytes`
    /// has beyond [`UNBUDGETED_BYTES`], rounded up to a step, except for a
    /// session's own frames queued while the budget was spent.
    credit: usize,
}

/// What one take handed the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Entries (frames, or joined runs) moved to the writer's list; 0 only
    /// when every sender is gone and the queue is empty.
    pub(crate) frames: usize,
    /// Their JSON bytes, which the writer gives back with its next take.
    pub(crate) bytes: usize,
    /// One of them is a `bye`.
    pub(crate) bye: bool,
}

impl Queue {
    fn frames(&self) -> MutexGuard<'_, Frames> {
        // A lock without poisoning: std's checks the thread's panic state
        // on every lock and unlock, which is on every delivery here, and
        // nothing panics while holding this one.
        self.frames.lock()
    }

    /// Gives back `written` bytes the writer has written, then moves every
    /// queued frame to the back of `buf`. An empty `buf` trades places with
    /// the queue's list, so a batch moves no frame at all: the writer
    /// writes from the list the rooms filled, and its own emptied list
    /// takes the queue's place.
    fn take(&self, buf: &mut VecDeque<Entry>, written: usize) -> Taken {
        let mut guard = self.frames();
        let frames = &mut *guard;
        frames.bytes -= written;
        // What was written no longer needs its share of the budget.
        let keep = frames
            .bytes
            .saturating_sub(UNBUDGETED_BYTES)
            .next_multiple_of(CREDIT_STEP);
        if frames.credit > keep {
            self.budget.give_back(frames.credit - keep);
            frames.credit = keep;
        }
        let taken = Taken {
            frames: frames.list.len(),
            bytes: std::mem::take(&mut frames.fresh),
            bye: std::mem::take(&mut frames.bye),
        };
        if buf.is_empty() {
            std::mem::swap(&mut frames.list, buf);
        } else {
            buf.extend(frames.list.drain(..));
        }
        taken
    }

    /// Queues the whole of `run` (`bytes` of JSON, a `bye` among them if
    /// `bye`) when it fits within the room-traffic bounds with nothing to
    /// draw from the budget: one check for the run, where a frame at a
    /// time checks each, and one entry, `joined`, when the room joined the
    /// run's lines. False, with nothing queued, when it does not fit.
    #[inline]
    fn enqueue_run_locked(
        &self,
        frames: &mut Frames,
        run: &[Arc<Outbound>],
        bytes: usize,
        bye: bool,
        joined: Option<&Arc<JoinedRun>>,
    ) -> bool {
        // Past the byte bound the run goes a frame at a time, which lets a
        // single large frame into an empty queue and no more.
        let after = frames.bytes + bytes;
        if frames.list.len() + run.len() > self.max_frames
            || after > self.max_bytes
            || after > UNBUDGETED_BYTES + frames.credit
        {
            return false;
        }
        frames.bytes = after;
        frames.fresh += bytes;
        frames.bye |= bye;
        match joined {
            Some(joined) => frames.list.push_back(Entry::Run(joined.clone())),
            None => frames
                .list
                .extend(run.iter().map(|frame| Entry::Frame(frame.clone()))),
        }
        true
    }

    /// Queues `run` a frame at a time within the room-traffic bounds,
    /// under the lock the caller holds, up to the first that does not fit.
    fn enqueue_each_locked<'a>(
        &self,
        frames: &mut Frames,
        run: impl Iterator<Item = &'a Arc<Outbound>>,
    ) -> (usize, Option<PushError>) {
        let mut queued = 0;
        for frame in run {
            if let Err(e) = self.enqueue_locked(frames, frame, self.max_frames, self.max_bytes, 0) {
                return (queued, Some(e));
            }
            queued += 1;
        }
        (queued, None)
    }

    /// Queues `frame` under the lock the caller holds, within the bounds
    /// given (see [`Outbox::enqueue`]).
    #[inline]
    fn enqueue_locked(
        &self,
        frames: &mut Frames,
        frame: &Arc<Outbound>,
        max_frames: usize,
        max_bytes: usize,
        beyond_budget: usize,
    ) -> Result<(), PushError> {
        let len = frame.json().len();
        if frames.list.len() >= max_frames || (frames.bytes > 0 && frames.bytes + len > max_bytes) {
            return Err(PushError::Full);
        }
        if frames.bytes + len > UNBUDGETED_BYTES + frames.credit
            && !draw_on_budget(&self.budget, frames, len, beyond_budget)
        {
            return Err(PushError::Full);
        }
        frames.bytes += len;
        frames.fresh += len;
        frames.bye |= frame.is_bye();
        frames.list.push_back(Entry::Frame(frame.clone()));
        Ok(())
    }

    /// Gives back the queue's buffer when it is empty and large; called by
    /// a writer that has been parked a while.
    fn shrink_if_idle(&self) {
        let mut frames = self.frames();
        if frames.list.is_empty() && frames.list.capacity() > KEEP_SLOTS {
            frames.list = VecDeque::new();
        }
    }
}

/// Extends `frames`' share of the budget to cover `len` more bytes; false
/// when the budget is spent and that would leave more than `beyond_budget`
/// bytes uncovered. Out of line: only a queue past its first
/// [`UNBUDGETED_BYTES`] comes here.
#[cold]
#[inline(never)]
fn draw_on_budget(
    budget: &QueueBudget,
    frames: &mut Frames,
    len: usize,
    beyond_budget: usize,
) -> bool {
    let need = (frames.bytes + len).saturating_sub(UNBUDGETED_BYTES);
    let more = need.next_multiple_of(CREDIT_STEP) - frames.credit;
    if budget.reserve(more) {
        frames.credit += more;
        return true;
    }
    need <= frames.credit + beyond_budget
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
/// queue, so a large reply cannot wedge a session); all of it within its
/// share of `budget`, see [`QueueBudget`].
///
/// # Panics
/// When `max_frames` is zero.
pub(crate) fn outbox(
    max_frames: usize,
    max_bytes: usize,
    budget: Arc<QueueBudget>,
) -> (Outbox, OutboxReceiver) {
    assert!(max_frames > 0, "an outbox holds at least one frame");
    let queue = Arc::new(Queue {
        frames: Mutex::new(Frames::default()),
        max_frames,
        max_bytes,
        writer: AtomicWaker::new(),
        writing: AtomicWaker::new(),
        senders_gone: AtomicBool::new(false),
        receiver_gone: AtomicBool::new(false),
        reason: OnceLock::new(),
        fell_behind: Notify::new(),
        budget,
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
        let pushed = self.enqueue(
            frame,
            2 * queue.max_frames,
            2 * queue.max_bytes,
            OWN_FRAMES_BEYOND_BUDGET,
        );
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
    #[inline]
    pub(crate) fn offer(&self, frame: &Arc<Outbound>) -> Result<(), PushError> {
        let queue = self.queue();
        self.enqueue(frame, queue.max_frames, queue.max_bytes, 0)
    }

    /// Queues `frame` if the queue then holds at most `max_frames` frames
    /// and about `max_bytes` bytes, and its share of the budget covers it
    /// (or misses it by at most `beyond_budget` bytes). Inlined into the
    /// rooms' fanout loop: this is the per-delivery cost of a message.
    #[inline]
    fn enqueue(
        &self,
        frame: &Arc<Outbound>,
        max_frames: usize,
        max_bytes: usize,
        beyond_budget: usize,
    ) -> Result<(), PushError> {
        let queue = self.queue();
        // Reading the reason is one atomic load.
        if queue.reason.get().is_some() || queue.receiver_gone.load(Ordering::Relaxed) {
            return Err(PushError::Closed);
        }
        let was_empty = {
            let mut guard = queue.frames();
            let frames = &mut *guard;
            let was_empty = frames.list.is_empty();
            queue.enqueue_locked(frames, frame, max_frames, max_bytes, beyond_budget)?;
            was_empty
        };
        // A writer with frames still queued comes back for them without
        // being told; only one that may be parked on an empty queue is.
        if was_empty {
            queue.writer.wake();
        }
        Ok(())
    }

    /// Offers a whole run of frames, `bytes` of JSON in all (a `bye` among
    /// them if `bye`), as [`Outbox::offer_run`] does, checking the bounds
    /// once for the run when it fits whole; then the run is queued as the
    /// one entry `joined` when there is one. A run that does not fit whole
    /// is offered a frame at a time.
    pub(crate) fn offer_slice(
        &self,
        run: &[Arc<Outbound>],
        bytes: usize,
        bye: bool,
        joined: Option<&Arc<JoinedRun>>,
    ) -> (usize, Option<PushError>) {
        self.offer_locked(|queue, frames| {
            if queue.enqueue_run_locked(frames, run, bytes, bye, joined) {
                (run.len(), None)
            } else {
                queue.enqueue_each_locked(frames, run.iter())
            }
        })
    }

    /// Offers `frames` in order, as [`Outbox::offer`] does each, under one
    /// lock and with at most one wake-up: a room delivering a run of
    /// messages at once (see `Room::publish_held`) pays the lock and the
    /// checks once per member rather than once per message. Stops at the
    /// first frame that does not fit.
    ///
    /// Returns how many frames were queued, and the error that stopped it
    /// if one did.
    pub(crate) fn offer_run<'a>(
        &self,
        run: impl Iterator<Item = &'a Arc<Outbound>>,
    ) -> (usize, Option<PushError>) {
        self.offer_locked(|queue, frames| queue.enqueue_each_locked(frames, run))
    }

    /// Runs `enqueue` under the queue's lock unless the session is closed,
    /// then wakes the writer if the queue was empty and is not any more.
    fn offer_locked(
        &self,
        enqueue: impl FnOnce(&Queue, &mut Frames) -> (usize, Option<PushError>),
    ) -> (usize, Option<PushError>) {
        let queue = self.queue();
        if queue.reason.get().is_some() || queue.receiver_gone.load(Ordering::Relaxed) {
            return (0, Some(PushError::Closed));
        }
        let (was_empty, offered) = {
            let mut guard = queue.frames();
            let frames = &mut *guard;
            (frames.list.is_empty(), enqueue(queue, frames))
        };
        if was_empty && offered.0 > 0 {
            queue.writer.wake();
        }
        offered
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
                // Filled in between, or the server's queue budget is spent:
                // wait, do not spin.
                Err(PushError::Full) => tokio::time::sleep(PACE).await,
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
        let frames = queue.frames();
        frames.bytes > queue.max_bytes / 2 || frames.list.len() > queue.max_frames / 2
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queue().frames().bytes
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
            .field("queued_bytes", &queue.frames().bytes)
            .field("cut", &queue.reason.get().is_some())
            .finish()
    }
}

impl OutboxReceiver {
    /// Waits for queued frames or the cut-off, whichever comes first; a
    /// cut-off wins when both are ready. First gives back the `written`
    /// bytes of the last batch (what its [`Taken::bytes`] said, once it is
    /// written), then moves every queued frame to the back of `buf` (the
    /// queue's bounds bound it). A [`Taken`] of no frames means every
    /// sender is gone and the queue is empty.
    ///
    /// # Errors
    /// The [`CutReason`] once the session has been cut off.
    ///
    /// # Cancel safety
    /// Cancel-safe: frames move into `buf` only when this completes. The
    /// written bytes are given back at the first poll, and `written` is 0
    /// from then on.
    pub(crate) async fn next_batch(
        &mut self,
        buf: &mut VecDeque<Entry>,
        written: &mut usize,
    ) -> Result<Taken, CutReason> {
        let queue = &*self.queue;
        if buf.capacity() <= KEEP_SLOTS {
            return std::future::poll_fn(|cx| Self::poll_batch(queue, cx, buf, written)).await;
        }
        // A burst left large lists. They are kept while frames keep coming
        // (regrowing them batch after batch was a reallocation every few
        // deliveries) and given back once the queue has been empty for
        // `KEEP_LISTS`, so an idle connection holds no queue memory. The
        // timer is armed only when the writer parks with large lists.
        // Boxed: a timer held inline would size every writer's future, and
        // so every idle connection, for the rare wait that needs one.
        let wait = std::future::poll_fn(|cx| Self::poll_batch(queue, cx, buf, written));
        if let Ok(taken) = Box::pin(tokio::time::timeout(KEEP_LISTS, wait)).await {
            return taken;
        }
        queue.shrink_if_idle();
        if buf.is_empty() {
            *buf = VecDeque::new();
        }
        std::future::poll_fn(|cx| Self::poll_batch(queue, cx, buf, written)).await
    }

    fn poll_batch(
        queue: &Queue,
        cx: &mut Context<'_>,
        buf: &mut VecDeque<Entry>,
        written: &mut usize,
    ) -> Poll<Result<Taken, CutReason>> {
        // `written` is given back by the first take and is 0 after it, so
        // a wait that is polled again, or started over, gives it back once.
        if let Some(reason) = queue.reason.get() {
            return Poll::Ready(Err(reason.clone()));
        }
        // Read before looking at the list: a sender's last push happens
        // before it is dropped, so "gone and empty" is really the end.
        let gone = queue.senders_gone.load(Ordering::Acquire);
        let taken = queue.take(buf, std::mem::take(written));
        if taken.frames > 0 || gone {
            return Poll::Ready(Ok(taken));
        }
        // Register, then look again: a push (or a cut-off) between the
        // first look and the registration woke nobody, or the waker left
        // before.
        queue.writer.register(cx.waker());
        if let Some(reason) = queue.reason.get() {
            return Poll::Ready(Err(reason.clone()));
        }
        let gone = queue.senders_gone.load(Ordering::Acquire);
        let taken = queue.take(buf, 0);
        if taken.frames > 0 || gone {
            Poll::Ready(Ok(taken))
        } else {
            Poll::Pending
        }
    }

    #[cfg(any(test, feature = "test-util"))]
    /// Takes frames that are already queued, without waiting, one by one
    /// (a joined run is taken a frame at a time).
    pub(crate) fn try_recv(&mut self) -> Option<Arc<Outbound>> {
        let mut frames = self.queue.frames();
        let frame = match frames.list.pop_front()? {
            Entry::Frame(frame) => frame,
            Entry::Run(run) => {
                let (first, rest) = run.frames().split_first()?;
                for frame in rest.iter().rev() {
                    frames.list.push_front(Entry::Frame(frame.clone()));
                }
                first.clone()
            }
        };
        let len = frame.json().len();
        frames.bytes -= len;
        frames.fresh = frames.fresh.saturating_sub(len);
        Some(frame)
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
    /// The entries queued right now, left in the queue.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.queue.frames().list.iter().cloned().collect()
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
        let dropped = std::mem::take(&mut self.queue.frames().list);
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
