//! The writing half of an IRC session: drains the session's queue, renders
//! each frame for this connection ([`Render`]) and writes the lines.
//!
//! The engine's writer writes encoded frames as they are; an IRC line
//! depends on the connection (its capabilities, its own nick), so this one
//! renders as it drains. The queue, its limits and its cut-off are the
//! same as every other session's.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::registry::{CutReason, Entry, OutboxReceiver};
use crate::transport::BoxWriter;

use super::super::writer::WriterEnd;
use super::render::Render;

/// How long a cut-off peer's socket gets to take the closing line.
const NOTICE_WINDOW: Duration = Duration::from_millis(200);

/// Bytes rendered and not yet written.
struct Pending {
    buf: Vec<u8>,
    written: usize,
}

/// Writes queued frames until the queue closes, `bye` is written, the
/// session is cut off, or the peer stops taking bytes.
pub(super) async fn run(
    mut writer: BoxWriter,
    mut rx: OutboxReceiver,
    mut render: Render,
    write_timeout: Duration,
) -> WriterEnd {
    let mut batch: VecDeque<Entry> = VecDeque::new();
    let mut pending = Pending {
        buf: Vec::new(),
        written: 0,
    };
    // Bytes of the last batch, written and given back with the next take.
    let mut written = 0;
    loop {
        let taken = match rx.next_batch(&mut batch, &mut written).await {
            Ok(taken) => taken,
            Err(reason) => return Box::pin(cut_off(writer, reason, &render, pending)).await,
        };
        if taken.frames == 0 {
            let _ = writer.shutdown().await;
            return WriterEnd::Drained;
        }
        written = taken.bytes;
        let mut said_bye = false;
        // A joined run of room messages is rendered a message at a time.
        for entry in batch.drain(..) {
            for frame in entry.frames() {
                // Room traffic can reach the queue after `bye` until the
                // session has left its rooms; it is dropped.
                if !said_bye {
                    said_bye = render.render(frame, &mut pending.buf);
                }
            }
        }
        let result = tokio::select! {
            biased;
            reason = rx.cut() => return Box::pin(cut_off(writer, reason, &render, pending)).await,
            r = write_pending(&mut writer, &mut pending, write_timeout) => r,
        };
        if pending.buf.capacity() > 64 * 1024 {
            pending.buf.shrink_to(4096);
        }
        if let Err(e) = result {
            return WriterEnd::Failed(e);
        }
        if said_bye {
            let _ = writer.shutdown().await;
            return WriterEnd::Drained;
        }
    }
}

/// Writes what `pending` holds. A write that takes no byte for `stall`
/// fails with `TimedOut`.
///
/// # Cancel safety
/// Cancel-safe: `pending.written` moves only after a write returned.
async fn write_pending(
    writer: &mut BoxWriter,
    pending: &mut Pending,
    stall: Duration,
) -> io::Result<()> {
    while pending.written < pending.buf.len() {
        let n = tokio::time::timeout(stall, writer.write(&pending.buf[pending.written..]))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        pending.written += n;
    }
    pending.buf.clear();
    pending.written = 0;
    tokio::time::timeout(stall, writer.flush())
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Tells a cut-off peer why, as far as its socket still takes bytes, and
/// closes. A line that was partly written is finished first, so the
/// closing line stands on its own.
async fn cut_off(
    mut writer: BoxWriter,
    reason: CutReason,
    render: &Render,
    mut pending: Pending,
) -> WriterEnd {
    let why = match &reason {
        CutReason::SlowConsumer => "you read too slowly to keep up".to_owned(),
        CutReason::NickLost => "your nickname was taken on another server".to_owned(),
        CutReason::Killed(None) => "a server operator disconnected you".to_owned(),
        CutReason::Killed(Some(reason)) => {
            format!("a server operator disconnected you: {reason}")
        }
    };
    let keep = if pending.written > 0 {
        let rest = &pending.buf[pending.written..];
        rest.windows(2)
            .position(|w| w == b"\r\n")
            .map_or(pending.buf.len(), |at| pending.written + at + 2)
    } else {
        0
    };
    pending.buf.truncate(keep);
    pending
        .buf
        .extend_from_slice(render.closing(&why).as_bytes());
    let _ = tokio::time::timeout(NOTICE_WINDOW, async {
        write_pending(&mut writer, &mut pending, NOTICE_WINDOW).await?;
        writer.shutdown().await
    })
    .await;
    WriterEnd::Cut(reason)
}
