//! The IRC dialect's connections: a listener of its own (`irc_listen`),
//! the same rooms, nicks, history and limits as every other dialect.
//!
//! The walk of one connection, file by file:
//! - [`register`]: `CAP`, `PASS`, `NICK`, `USER` until the nick is held,
//!   with [`login`] for `PASS` and SASL PLAIN;
//! - [`session`]: the registered connection's loop and its end;
//! - `commands`, `channels`, `messages`, `users`, `history`: one command
//!   each;
//! - [`writer`] and [`render`]: the queue drained and each frame shown as
//!   IRC lines for this connection;
//! - [`reply`]: how the session's own lines keep their place in the queue.
//!
//! Lines are parsed and built in `protocol::irc`, which guarantees that
//! nothing a user says can end a line or start a command.

pub(super) mod away;
mod channels;
mod commands;
mod conn;
mod history;
mod login;
mod messages;
mod moderate;
mod modes;
mod names;
mod register;
mod render;
mod reply;
mod session;
mod users;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::protocol::irc::{MAX_LINE_LEN, MAX_TAGS_LEN};
use crate::transport::{Connection, LineFramer};

use super::shared::Shared;
use conn::WriterTask;
use names::Names;
use render::Render;
use session::{End, IrcSession};

/// Read buffer a connection starts with; the framer grows it up to the
/// line limit.
const INITIAL_READ_BUFFER: usize = 1024;

/// How long a session that ended (other than by shutdown) waits for its
/// writer to flush the closing line.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Serves one connection of an IRC listener until it closes or `shutdown`
/// fires.
pub(crate) async fn serve(shared: Arc<Shared>, conn: Connection, shutdown: CancellationToken) {
    let Connection {
        reader,
        mut writer,
        peer,
        ..
    } = conn;
    let names = Names::new(&shared.limits.server_name);
    let framer = LineFramer::new(MAX_TAGS_LEN + MAX_LINE_LEN);
    let mut reader = FramedRead::with_capacity(reader, framer, INITIAL_READ_BUFFER);
    let registered = tokio::select! {
        _ = shutdown.cancelled() => None,
        r = register::register(&shared, &names, &mut reader, &mut writer, &peer) => r,
    };
    let Some(registered) = registered else {
        let _ = writer.shutdown().await;
        return;
    };
    let mut session = IrcSession::new(&shared, names.clone(), &registered);
    session.peer_ip = peer.ip();
    session.account = registered.account.clone();
    let seen = super::moderation::Seen {
        account: registered.account.clone(),
        ip: peer.ip(),
    };
    shared.moderation.saw(session.id, seen);
    let render = Render::new(registered.nick.clone(), names, registered.caps);
    let mut writer_task = WriterTask(tokio::spawn(writer::run(
        writer,
        registered.rx,
        render,
        shared.limits.write_timeout,
    )));
    shared.irc_away.enter(
        &registered.nick,
        registered.id,
        &registered.outbox,
        registered.caps.away_notify,
    );
    drop(registered.outbox);
    tracing::info!(%peer, nick = %session.nick, dialect = "irc", "connected");
    shared.metrics.irc_connected();
    session.greet();
    let end = session.run(&mut reader, &mut writer_task, &shutdown).await;
    tracing::info!(%peer, nick = %session.nick, reason = %end, "disconnected");
    shared.metrics.irc_disconnected(end.label());
    session.finish(&end);
    if !writer_task.0.is_finished() {
        if matches!(end, End::Shutdown) {
            let _ = (&mut writer_task.0).await;
        } else {
            let _ = tokio::time::timeout(CLOSE_LINGER, &mut writer_task.0).await;
        }
    }
}
