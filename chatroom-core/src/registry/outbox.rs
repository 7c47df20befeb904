//! The bounded per-session outbound queue and the shared, encode-once frame
//! that travels through it.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

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
        let json = protocol::encode(&frame);
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

/// Why a session's outbox was closed from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CutReason {
    /// The queue overflowed: the client reads slower than its rooms talk.
    SlowConsumer,
    /// Its nickname is held by a session of another node now (this node
    /// was cut off from the cluster longer than the nick's lease).
    NickLost,
}

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue was full; the session has been cut off.
    Full,
    /// The session is gone or already cut off.
    Closed,
}

/// The sending side of a session's queue. Cheap to clone; held by the
/// registry (for fanout) and by the session itself (for replies).
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Arc<Outbound>>,
    /// Bytes queued and not yet written; the writer subtracts what it wrote.
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    /// Fired when the session must be cut off; the writer watches it.
    cut: CancellationToken,
    reason: Arc<OnceLock<CutReason>>,
    /// Woken when a room held its traffic back because the queue was full
    /// (see [`Outbox::offer`]); the session then catches the member up.
    fell_behind: Arc<Notify>,
}

/// The receiving side of a session's queue, owned by its writer.
pub(crate) struct OutboxReceiver {
    rx: mpsc::Receiver<Arc<Outbound>>,
    queued_bytes: Arc<AtomicUsize>,
    cut: CancellationToken,
    reason: Arc<OnceLock<CutReason>>,
}

/// A queue that holds at most `max_frames` frames and about `max_bytes`
/// bytes (a single frame larger than `max_bytes` is still accepted into an
/// empty queue, so a large reply cannot wedge a session).
///
/// # Panics
/// When `max_frames` is zero.
pub(crate) fn outbox(max_frames: usize, max_bytes: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(max_frames);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let cut = CancellationToken::new();
    let reason = Arc::new(OnceLock::new());
    (
        Outbox {
            tx,
            queued_bytes: queued_bytes.clone(),
            max_bytes,
            cut: cut.clone(),
            reason: reason.clone(),
            fell_behind: Arc::new(Notify::new()),
        },
        OutboxReceiver {
            rx,
            queued_bytes,
            cut,
            reason,
        },
    )
}

impl Outbox {
    /// Queues `frame` without waiting. When the queue is full the session is
    /// cut off as a slow consumer (its writer then drops the backlog and
    /// closes the connection). Room traffic, which can be caught up later,
    /// goes through [`Outbox::offer`] instead.
    ///
    /// # Errors
    /// [`PushError::Full`] on overflow, [`PushError::Closed`] when the
    /// session is gone or was cut off before.
    pub(crate) fn push(&self, frame: &Arc<Outbound>) -> Result<(), PushError> {
        let pushed = self.offer(frame);
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
        // The reason is set before the token is cancelled, and reading it
        // is one atomic load; the token's own check takes a lock, which
        // showed up on the fanout path (docs/benchmarks.md).
        if self.reason.get().is_some() {
            return Err(PushError::Closed);
        }
        let len = frame.json().len();
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before + len > self.max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(PushError::Full);
        }
        match self.tx.try_send(frame.clone()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(_) => Err(PushError::Full),
                    mpsc::error::TrySendError::Closed(_) => Err(PushError::Closed),
                }
            }
        }
    }

    /// Queues `frame` once the queue is less than half full, waiting for
    /// the writer to make room as long as it takes; never cuts the session
    /// off. For a producer that can wait (a backlog being streamed, a
    /// session's catch-up): other rooms' traffic may fill the queue between
    /// a look and a push, so a full queue is waited out again.
    ///
    /// # Errors
    /// [`PushError::Closed`] when the session is gone or was cut off.
    pub(crate) async fn push_paced(&self, frame: &Arc<Outbound>) -> Result<(), PushError> {
        loop {
            while self.is_half_full() {
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
        self.fell_behind.notify_one();
    }

    /// Completes once a room has held traffic back since the last time this
    /// completed (a wake-up given while nobody waits is kept).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn behind(&self) {
        self.fell_behind.notified().await;
    }

    /// Cuts the session off: its writer stops sending queued frames and
    /// closes with `reason`. The first reason wins.
    pub(crate) fn cut_off(&self, reason: CutReason) {
        let _ = self.reason.set(reason);
        self.cut.cancel();
    }

    /// True when the queue holds half its frames or half its bytes: a
    /// producer that can wait (a backlog being streamed) waits then.
    pub(crate) fn is_half_full(&self) -> bool {
        let frames_free = self.tx.capacity();
        let frames_max = self.tx.max_capacity();
        frames_free < frames_max / 2
            || self.queued_bytes.load(Ordering::Relaxed) > self.max_bytes / 2
    }

    /// True once the session has been cut off or its writer is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.reason.get().is_some() || self.tx.is_closed()
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("queued_bytes", &self.queued_bytes.load(Ordering::Relaxed))
            .field("cut", &self.cut.is_cancelled())
            .finish()
    }
}

impl OutboxReceiver {
    /// Waits for queued frames or the cut-off, whichever comes first; a
    /// cut-off wins when both are ready. Moves up to `limit` frames into
    /// `buf`; `Ok(0)` means every sender is gone.
    ///
    /// # Errors
    /// The [`CutReason`] once the session has been cut off.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn next_batch(
        &mut self,
        buf: &mut Vec<Arc<Outbound>>,
        limit: usize,
    ) -> Result<usize, CutReason> {
        tokio::select! {
            biased;
            _ = self.cut.cancelled() => Err(self.reason.get().cloned().unwrap_or(CutReason::SlowConsumer)),
            n = self.rx.recv_many(buf, limit) => Ok(n),
        }
    }

    #[cfg(any(test, feature = "test-util"))]
    /// Takes frames that are already queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Arc<Outbound>> {
        self.rx.try_recv().ok()
    }

    /// Tells the queue that `bytes` of JSON-encoded frames left it.
    pub(crate) fn release(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Completes when the session is cut off.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn cut(&self) -> CutReason {
        self.cut.cancelled().await;
        self.reason
            .get()
            .cloned()
            .unwrap_or(CutReason::SlowConsumer)
    }

    #[cfg(test)]
    /// Why the session was cut off, if it was.
    pub(crate) fn cut_reason(&self) -> Option<CutReason> {
        self.reason.get().cloned()
    }
}

impl fmt::Debug for OutboxReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerMessage;

    #[test]
    fn overflow_by_frames_cuts_off() {
        let (tx, rx) = outbox(2, 1 << 20);
        let f = Outbound::message(ServerMessage::Pong);
        tx.push(&f).unwrap();
        tx.push(&f).unwrap();
        assert_eq!(tx.push(&f), Err(PushError::Full));
        assert_eq!(tx.push(&f), Err(PushError::Closed));
        assert_eq!(rx.cut_reason(), Some(CutReason::SlowConsumer));
    }

    #[test]
    fn overflow_by_bytes_cuts_off() {
        let f = Outbound::message(ServerMessage::Pong);
        let len = f.json().len();
        let (tx, rx) = outbox(100, len * 3);
        for _ in 0..3 {
            tx.push(&f).unwrap();
        }
        assert_eq!(tx.push(&f), Err(PushError::Full));
        rx.release(len);
        assert!(tx.is_closed());
    }

    #[test]
    fn text_rendering_is_lazy_and_shared() {
        let f = Outbound::message(ServerMessage::Pong);
        assert!(f.text().is_none());
        let f = Outbound::message(ServerMessage::Bye { reason: "x".into() });
        let a = f.text().unwrap().as_ptr();
        let b = f.text().unwrap().as_ptr();
        assert_eq!(a, b);
    }
}
