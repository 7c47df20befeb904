//! The writing half of a session: drains the outbound queue onto the socket.
//!
//! Everything a session sends (replies, room messages, presence) goes through
//! its bounded queue, so the order the peer sees is the order frames were
//! queued. Each wake-up takes every frame already queued (up to a batch) and
//! hands the shared, already-encoded bytes to one vectored write: no copy and
//! no allocation per delivered frame, and few syscalls under load.

use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::protocol::{ErrorCode, ServerMessage};
use crate::registry::{CutReason, Outbound, OutboxReceiver};
use crate::transport::BoxWriter;

/// Most frames taken from the queue for one write. Stays well under the
/// kernel's iovec limit (1024 on Linux).
const BATCH: usize = 128;

/// Which rendering of a frame the peer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// One JSON object per line.
    Native,
    /// Readable lines for people on `nc` or `telnet`.
    Text,
}

impl Dialect {
    fn bytes(self, frame: &Outbound) -> Option<&Bytes> {
        match self {
            Self::Native => Some(frame.json()),
            Self::Text => frame.text(),
        }
    }
}

/// How the writer ended.
#[derive(Debug)]
pub(crate) enum WriterEnd {
    /// Every sender was dropped and the queue was written out.
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
) -> WriterEnd {
    let mut batch: Vec<Arc<Outbound>> = Vec::new();
    loop {
        let n = match rx.next_batch(&mut batch, BATCH).await {
            Ok(n) => n,
            Err(reason) => return cut_off(writer, reason, dialect).await,
        };
        if n == 0 {
            let _ = writer.shutdown().await;
            return WriterEnd::Drained;
        }
        let queued: usize = batch.iter().map(|f| f.json().len()).sum();
        let result = tokio::select! {
            biased;
            // A peer that stopped reading can park this write forever; the
            // cut-off must still win so the session ends.
            reason = rx.cut() => return cut_off(writer, reason, dialect).await,
            r = write_batch(&mut writer, &batch, dialect) => r,
        };
        rx.release(queued);
        batch.clear();
        if batch.capacity() > 4 * BATCH {
            batch.shrink_to(BATCH);
        }
        if let Err(e) = result {
            return WriterEnd::Failed(e);
        }
    }
}

async fn write_batch(
    writer: &mut BoxWriter,
    batch: &[Arc<Outbound>],
    dialect: Dialect,
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch
        .iter()
        .filter_map(|f| dialect.bytes(f))
        .map(|b| IoSlice::new(b))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let written = writer.write_vectored(rest).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, written);
    }
    writer.flush().await
}

/// Tells a cut-off peer why, as far as its socket still takes bytes, and
/// closes. The backlog is dropped: it is what the peer could not read.
async fn cut_off(mut writer: BoxWriter, reason: CutReason, dialect: Dialect) -> WriterEnd {
    let (code, text) = match reason {
        CutReason::SlowConsumer => (
            ErrorCode::SlowConsumer,
            "you read too slowly to keep up; disconnecting",
        ),
    };
    let error = Outbound::message(ServerMessage::Error {
        code,
        message: text.to_owned(),
    });
    let bye = Outbound::message(ServerMessage::Bye {
        reason: "slow consumer".to_owned(),
    });
    let farewell = [error, bye];
    // The socket buffer is likely full; give the notice a moment, no more.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), async {
        write_batch(&mut writer, &farewell, dialect).await?;
        writer.shutdown().await
    })
    .await;
    WriterEnd::Cut(reason)
}
