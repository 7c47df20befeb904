//! One established connection, and writing frames to it.

use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

use crate::transport::{BoxReader, BoxWriter, LineFramer};

/// One established connection.
pub(super) struct Link {
    pub(super) reader: FramedRead<BoxReader, LineFramer>,
    pub(super) writer: BoxWriter,
    /// The longest line the server accepts, from `welcome`.
    pub(super) max_line_len: usize,
}

/// Writes `bytes` (whole frames) and flushes them.
pub(super) async fn write_frame(writer: &mut BoxWriter, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
