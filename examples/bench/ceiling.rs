//! The reference ceiling: a broadcaster with no protocol at all.
//!
//! Every complete line a connection sends is appended to the outgoing
//! buffer of every other connection; each connection's writer sends all
//! that piled up since its last write in one `write_all`. It greets each
//! connection with `ready` once it is registered, so a client knows when it
//! will start receiving. There are no names, rooms, ids, limits on rate or
//! checks of any kind: what chatroom does on top of moving bytes is exactly
//! the difference between the two.
//!
//! Bounded all the same: a connection whose outgoing buffer passes
//! [`MAX_PENDING`] is dropped, and a line longer than [`MAX_LINE`] closes
//! its sender.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Most bytes waiting for one connection before it is dropped.
const MAX_PENDING: usize = 8 << 20;
/// Longest line accepted.
const MAX_LINE: usize = 64 << 10;
/// A read buffer that grew past this is freed once it is empty again, so
/// an idle connection holds no buffer at all.
const KEEP_BUFFER: usize = 16 << 10;

#[derive(Debug, Default)]
struct Hub {
    peers: Mutex<Vec<Arc<Peer>>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Peer {
    id: u64,
    out: Mutex<Vec<u8>>,
    wake: Notify,
    dead: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Peer {
    /// Appends `bytes`; false when the peer is over its limit (it is then
    /// marked dead and its writer closes it).
    fn push(&self, bytes: &[u8]) -> bool {
        let mut out = lock(&self.out);
        if out.len() + bytes.len() > MAX_PENDING {
            self.dead.store(true, Ordering::Relaxed);
            drop(out);
            self.wake.notify_one();
            return false;
        }
        let was_empty = out.is_empty();
        out.extend_from_slice(bytes);
        drop(out);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }
}

/// Serves `listener` until `stop` is cancelled.
pub(crate) async fn run(listener: TcpListener, stop: CancellationToken) -> io::Result<()> {
    let hub = Arc::new(Hub::default());
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors and the like: wait and go on.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let peer = Arc::new(Peer {
            id: hub.next_id.fetch_add(1, Ordering::Relaxed),
            out: Mutex::new(Vec::new()),
            wake: Notify::new(),
            dead: AtomicBool::new(false),
        });
        lock(&hub.peers).push(peer.clone());
        peer.push(b"ready\n");
        let done = CancellationToken::new();
        tokio::spawn(write_loop(wr, peer.clone(), done.clone(), stop.clone()));
        tokio::spawn(read_loop(rd, peer, hub.clone(), done, stop.clone()));
    }
}

fn remove(hub: &Hub, id: u64) {
    let mut peers = lock(&hub.peers);
    if let Some(i) = peers.iter().position(|p| p.id == id) {
        peers.swap_remove(i);
    }
}

async fn read_loop(
    rd: OwnedReadHalf,
    me: Arc<Peer>,
    hub: Arc<Hub>,
    done: CancellationToken,
    stop: CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let ready = tokio::select! {
            _ = stop.cancelled() => break,
            _ = done.cancelled() => break,
            r = rd.readable() => r,
        };
        if ready.is_err() {
            break;
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(buf.len().max(4096));
        }
        match rd.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
        let Some(last) = memchr::memrchr(b'\n', &buf) else {
            if buf.len() > MAX_LINE {
                break;
            }
            continue;
        };
        let lines = &buf[..=last];
        {
            // Under the hub's lock, so that every peer gets the lines of
            // all senders in one order.
            let peers = lock(&hub.peers);
            for peer in peers.iter() {
                if peer.id != me.id {
                    peer.push(lines);
                }
            }
        }
        buf.drain(..=last);
        if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
            buf = Vec::new();
        }
    }
    remove(&hub, me.id);
    done.cancel();
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    me: Arc<Peer>,
    done: CancellationToken,
    stop: CancellationToken,
) {
    let mut spare: Vec<u8> = Vec::new();
    loop {
        std::mem::swap(&mut *lock(&me.out), &mut spare);
        if me.dead.load(Ordering::Relaxed) {
            break;
        }
        if spare.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = done.cancelled() => break,
                _ = me.wake.notified() => continue,
            }
        }
        let written = tokio::select! {
            _ = done.cancelled() => break,
            w = wr.write_all(&spare) => w,
        };
        if written.is_err() {
            break;
        }
        spare.clear();
        if spare.capacity() > KEEP_BUFFER {
            spare = Vec::new();
        }
    }
    done.cancel();
    let _ = wr.shutdown().await;
}
