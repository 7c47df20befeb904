//! An in-process transport: connections are `tokio::io::duplex` pipes.
//! For tests and examples that want the whole engine without sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::{Connection, Connector, Listener, PeerAddr, TransportError};

/// Bytes each direction of a pipe buffers before the writer waits.
const PIPE_CAPACITY: usize = 64 * 1024;

/// The accepting side of an in-memory transport.
#[derive(Debug)]
pub struct MemoryListener {
    incoming: mpsc::Receiver<Connection>,
}

/// Opens connections to a [`MemoryListener`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    outgoing: mpsc::Sender<Connection>,
    next_peer: Arc<AtomicU64>,
}

/// A listener and a connector joined to it.
pub fn channel() -> (MemoryListener, MemoryConnector) {
    let (tx, rx) = mpsc::channel(128);
    (
        MemoryListener { incoming: rx },
        MemoryConnector {
            outgoing: tx,
            next_peer: Arc::new(AtomicU64::new(1)),
        },
    )
}

impl Listener for MemoryListener {
    async fn accept(&mut self) -> Result<Connection, TransportError> {
        self.incoming
            .recv()
            .await
            .ok_or(TransportError::ListenerClosed)
    }

    fn local_addr(&self) -> String {
        "memory".to_owned()
    }
}

impl Connector for MemoryConnector {
    async fn connect(&self) -> Result<Connection, TransportError> {
        let n = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
        self.outgoing
            .send(Connection::from_stream(server, PeerAddr::Memory(n)))
            .await
            .map_err(|_| TransportError::ListenerClosed)?;
        Ok(Connection::from_stream(client, PeerAddr::Memory(0)))
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}
