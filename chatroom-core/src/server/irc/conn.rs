//! The two halves of an IRC connection as the session holds them.

use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use crate::transport::{BoxReader, LineFramer};

use super::super::writer::WriterEnd;

/// An IRC connection's reader: lines of at most a tag section and an IRC
/// line, so what is buffered for one line stays bounded.
pub(super) type Reader = FramedRead<BoxReader, LineFramer>;

/// The writer task; aborted if the session is dropped first (for example
/// when the server's shutdown deadline aborts the session).
pub(super) struct WriterTask(pub(super) JoinHandle<WriterEnd>);

impl Drop for WriterTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
