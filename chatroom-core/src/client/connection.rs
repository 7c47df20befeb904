//! The connection task: owns the socket, matches replies to requests by
//! `ref`, turns everything else into events, and reconnects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

use crate::protocol::{
    self, ClientFrame, ClientMessage, DEFAULT_MAX_LINE_LEN, ErrorCode, MessageId, Nickname,
    PROTOCOL_VERSION, RoomName, ServerFrame, ServerMessage,
};
use crate::transport::{BoxReader, BoxWriter, Connector, Frame, LineFramer};

use super::{ClientError, ClientOptions, Command, DisconnectReason, Event, Shared};

/// Most pending requests kept before answers for callers that gave up are
/// swept out of the table.
const PENDING_SWEEP: usize = 1024;

/// The `ref` of the `hello`, echoed on `welcome` or the error.
const HELLO_REF: &str = "hello";

/// What the server said in `welcome`.
#[derive(Debug)]
pub(super) struct Welcome {
    pub(super) nick: Nickname,
    pub(super) server: String,
}

/// One established connection.
pub(super) struct Link {
    reader: FramedRead<BoxReader, LineFramer>,
    writer: BoxWriter,
    /// The longest line the server accepts, from `welcome`.
    max_line_len: usize,
}

/// A request sent and not yet answered.
enum Pending {
    /// A caller's request; the caller holds the receiver.
    User {
        message: ClientMessage,
        reply: oneshot::Sender<Result<ServerMessage, ClientError>>,
    },
    /// A join the task sent itself after reconnecting.
    Rejoin(RoomName),
}

/// Only the `ref` of a frame that failed to decode.
#[derive(Deserialize)]
struct RefOnly {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// The wire `type` of a server message, for error messages.
pub(super) fn kind_of(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Welcome { .. } => "welcome",
        ServerMessage::Message { .. } => "message",
        ServerMessage::Private { .. } => "private",
        ServerMessage::Joined { .. } => "joined",
        ServerMessage::Left { .. } => "left",
        ServerMessage::NickChanged { .. } => "nick_changed",
        ServerMessage::Rooms { .. } => "rooms",
        ServerMessage::Members { .. } => "members",
        ServerMessage::History { .. } => "history",
        ServerMessage::Ok { .. } => "ok",
        ServerMessage::Error { .. } => "error",
        ServerMessage::Lagged { .. } => "lagged",
        ServerMessage::Notice { .. } => "notice",
        ServerMessage::Ping => "ping",
        ServerMessage::Pong => "pong",
        ServerMessage::Bye { .. } => "bye",
    }
}

/// Connects, says `hello` and waits for `welcome`, all within `timeout`.
pub(super) async fn handshake<C: Connector>(
    connector: &C,
    nick: Option<&Nickname>,
    timeout: Duration,
) -> Result<(Link, Welcome), ClientError> {
    tokio::time::timeout(timeout, handshake_inner(connector, nick))
        .await
        .unwrap_or(Err(ClientError::HandshakeTimeout { timeout }))
}

async fn handshake_inner<C: Connector>(
    connector: &C,
    nick: Option<&Nickname>,
) -> Result<(Link, Welcome), ClientError> {
    let conn = connector.connect().await?;
    let mut reader = FramedRead::new(conn.reader, LineFramer::new(DEFAULT_MAX_LINE_LEN));
    let mut writer = conn.writer;
    let hello = ClientFrame::with_ref(
        ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            nick: nick.cloned(),
            resume: BTreeMap::new(),
        },
        HELLO_REF,
    );
    write_frame(&mut writer, &protocol::encode(&hello))
        .await
        .map_err(|e| ClientError::Transport(e.into()))?;
    loop {
        let line = match reader.next().await {
            None => return Err(ClientError::HandshakeClosed),
            Some(Err(e)) => return Err(ClientError::Transport(e.into())),
            Some(Ok(Frame::TooLong { .. })) => continue,
            Some(Ok(Frame::Line(line))) => line,
        };
        let frame: ServerFrame = protocol::decode(&line)?;
        match frame.message {
            ServerMessage::Welcome {
                nick,
                server,
                max_line_len,
                ..
            } => {
                // Lines from the server are framed with at least the default
                // limit: `welcome` states what the server accepts, and its
                // own replies (a long member list) may be longer.
                reader
                    .decoder_mut()
                    .clone_from(&LineFramer::new(max_line_len.max(DEFAULT_MAX_LINE_LEN)));
                let link = Link {
                    reader,
                    writer,
                    max_line_len,
                };
                return Ok((link, Welcome { nick, server }));
            }
            ServerMessage::Error { code, message } => {
                return Err(ClientError::Server { code, message });
            }
            ServerMessage::Bye { reason } => return Err(ClientError::Refused { reason }),
            // Nothing else is expected before `welcome`; a newer server
            // may say more, so it is skipped.
            _ => {}
        }
    }
}

async fn write_frame(writer: &mut BoxWriter, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// The connection task's state, which outlives each connection.
pub(super) struct Task<C> {
    /// One connector per server address; never empty.
    connectors: Vec<C>,
    /// The connector of the current (or last) connection.
    current: usize,
    options: ClientOptions,
    /// Requests from the [`super::Client`] handles; closed when the last
    /// handle is dropped.
    commands: mpsc::Receiver<Command>,
    /// Events to [`super::Events`]; a dropped receiver only discards them.
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    /// Rooms joined, by folded name, to rejoin after a reconnect.
    rooms: BTreeMap<String, RoomName>,
    /// The last message id seen in each joined room, by folded name: where
    /// a rejoin resumes, so nothing said while away is missed or repeated.
    cursors: HashMap<String, MessageId>,
    /// Rejoins whose cursor the server refused (it lost its history): they
    /// are sent again as plain joins.
    plain_rejoins: Vec<RoomName>,
    /// Requests in flight on the current connection, by `ref`.
    pending: HashMap<String, Pending>,
    next_ref: u64,
    /// Events dropped since the last one delivered.
    missed: u64,
    /// Rejoins still unanswered after a reconnect, and the rooms rejoined.
    rejoining: Option<(usize, Vec<RoomName>)>,
    /// Set once a `quit` was sent or every handle is gone: no reconnecting.
    quitting: bool,
    /// True once every handle has been dropped.
    handles_gone: bool,
}

impl<C: Connector> Task<C> {
    pub(super) fn new(
        connectors: Vec<C>,
        current: usize,
        options: ClientOptions,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            connectors,
            current,
            options,
            commands,
            events,
            shared,
            rooms: BTreeMap::new(),
            cursors: HashMap::new(),
            plain_rejoins: Vec::new(),
            pending: HashMap::new(),
            next_ref: 1,
            missed: 0,
            rejoining: None,
            quitting: false,
            handles_gone: false,
        }
    }

    pub(super) async fn run(mut self, mut link: Link) {
        loop {
            let reason = self.serve(&mut link).await;
            drop(link);
            self.fail_pending();
            self.rejoining = None;
            tracing::debug!(%reason, "disconnected");
            self.emit_surely(Event::Disconnected { reason }).await;
            if self.quitting || self.handles_gone {
                return;
            }
            match self.reconnect().await {
                Some(next) => link = next,
                None => return,
            }
        }
    }

    /// Serves one connection until it ends.
    async fn serve(&mut self, link: &mut Link) -> DisconnectReason {
        loop {
            tokio::select! {
                frame = link.reader.next() => match frame {
                    None => return DisconnectReason::Closed,
                    Some(Err(e)) => return DisconnectReason::Failed(Arc::new(e)),
                    Some(Ok(Frame::TooLong { max })) => self.emit(Event::Error {
                        code: ErrorCode::FrameTooLong,
                        message: format!("the server sent a line longer than {max} bytes; it was dropped"),
                    }),
                    Some(Ok(Frame::Line(line))) => {
                        if let Some(end) = self.on_line(link, &line).await {
                            return end;
                        }
                    }
                },
                command = self.commands.recv(), if !self.handles_gone => match command {
                    Some(command) => {
                        if let Err(e) = self.send(link, command).await {
                            return DisconnectReason::Failed(Arc::new(e));
                        }
                    }
                    None => {
                        // Every handle is gone: nobody can make requests, so
                        // leave politely and read until the server closes.
                        self.handles_gone = true;
                        self.quitting = true;
                        let quit = ClientFrame::new(ClientMessage::Quit { reason: None });
                        if let Err(e) = write_frame(&mut link.writer, &protocol::encode(&quit)).await {
                            return DisconnectReason::Failed(Arc::new(e));
                        }
                    }
                },
            }
        }
    }

    /// Tags a request with a fresh `ref` and writes it.
    async fn send(&mut self, link: &mut Link, command: Command) -> std::io::Result<()> {
        let Command { message, reply } = command;
        if reply.is_closed() {
            return Ok(());
        }
        let reference = self.fresh_ref();
        let frame = ClientFrame::with_ref(message, reference.clone());
        let bytes = protocol::encode(&frame);
        let len = bytes.len() - 1;
        if len > link.max_line_len {
            let _ = reply.send(Err(ClientError::TooLong {
                len,
                max: link.max_line_len,
            }));
            return Ok(());
        }
        if matches!(frame.message, ClientMessage::Quit { .. }) {
            self.quitting = true;
        }
        if self.pending.len() >= PENDING_SWEEP {
            self.pending.retain(|_, p| match p {
                Pending::User { reply, .. } => !reply.is_closed(),
                Pending::Rejoin(_) => true,
            });
        }
        self.pending.insert(
            reference,
            Pending::User {
                message: frame.message,
                reply,
            },
        );
        write_frame(&mut link.writer, &bytes).await
    }

    fn fresh_ref(&mut self) -> String {
        let r = self.next_ref;
        self.next_ref += 1;
        r.to_string()
    }

    /// Handles one line from the server; returns how the connection ended
    /// when this line ends it.
    async fn on_line(&mut self, link: &mut Link, line: &Bytes) -> Option<DisconnectReason> {
        let frame: ServerFrame = match protocol::decode(line) {
            Ok(frame) => frame,
            Err(e) => {
                // A frame from a newer server, or garbage. If it answers a
                // request, that request fails; otherwise it is skipped.
                let reference = serde_json::from_slice::<RefOnly>(line)
                    .ok()
                    .and_then(|r| r.reference);
                match reference.and_then(|r| self.pending.remove(&r)) {
                    Some(Pending::User { reply, .. }) => {
                        let _ = reply.send(Err(ClientError::Protocol(e)));
                    }
                    Some(Pending::Rejoin(room)) => self.rejoined(room, false),
                    None => {
                        tracing::debug!(error = %e, "undecodable frame from the server skipped")
                    }
                }
                return None;
            }
        };
        let ServerFrame { reference, message } = frame;
        if let Some(pending) = reference.and_then(|r| self.pending.remove(&r)) {
            // `bye` answers a `quit` with its ref, and still ends the link.
            let ended = match &message {
                ServerMessage::Bye { reason } => Some(DisconnectReason::Bye {
                    reason: reason.clone(),
                }),
                _ => None,
            };
            self.on_reply(pending, message);
            if ended.is_none()
                && !self.plain_rejoins.is_empty()
                && let Err(e) = self.send_rejoins(link, false).await
            {
                return Some(DisconnectReason::Failed(Arc::new(e)));
            }
            return ended;
        }
        match message {
            ServerMessage::Ping => {
                let pong = protocol::encode(&ClientFrame::new(ClientMessage::Pong));
                if let Err(e) = write_frame(&mut link.writer, &pong).await {
                    return Some(DisconnectReason::Failed(Arc::new(e)));
                }
            }
            ServerMessage::Bye { reason } => {
                // A `bye` without a ref: the server is closing on its own
                // (shutdown, a cut-off); any pending quit is answered too.
                let quits: Vec<String> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| {
                        matches!(
                            p,
                            Pending::User {
                                message: ClientMessage::Quit { .. },
                                ..
                            }
                        )
                    })
                    .map(|(r, _)| r.clone())
                    .collect();
                for r in quits {
                    if let Some(Pending::User { reply, .. }) = self.pending.remove(&r) {
                        let _ = reply.send(Ok(ServerMessage::Bye {
                            reason: reason.clone(),
                        }));
                    }
                }
                return Some(DisconnectReason::Bye { reason });
            }
            ServerMessage::NickChanged { old, new } => {
                if old.key() == self.shared.nick().key() {
                    self.shared.set_nick(new.clone());
                }
                self.emit(Event::NickChanged { old, new });
            }
            ServerMessage::Message { ref room, id, .. } => {
                // A message at or below the cursor was seen before the
                // connection was lost; the resume must not show it twice.
                let cursor = self.cursors.entry(room.key()).or_insert(0);
                if id > *cursor {
                    *cursor = id;
                    if let Some(event) = event_of(message) {
                        self.emit(event);
                    }
                }
            }
            other => {
                if let Some(event) = event_of(other) {
                    self.emit(event);
                }
            }
        }
        None
    }

    /// Moves the resume cursor of `room` forward to `id`.
    fn seen(&mut self, room: &RoomName, id: MessageId) {
        let cursor = self.cursors.entry(room.key()).or_insert(0);
        *cursor = (*cursor).max(id);
    }

    /// Routes a reply to whoever waits for it, and keeps the task's view of
    /// rooms and nickname current.
    fn on_reply(&mut self, pending: Pending, reply: ServerMessage) {
        let (message, tx) = match pending {
            Pending::Rejoin(room) => {
                match &reply {
                    ServerMessage::Members { last_id, .. } => {
                        if let Some(id) = last_id {
                            self.seen(&room, *id);
                        }
                        self.rejoined(room, true);
                    }
                    ServerMessage::Error {
                        code: ErrorCode::BadCursor,
                        ..
                    } => {
                        // The server no longer has the room's past (it
                        // restarted without its history): join afresh.
                        self.cursors.remove(&room.key());
                        self.plain_rejoins.push(room);
                    }
                    ServerMessage::Error { code, message } => {
                        self.emit(Event::Error {
                            code: *code,
                            message: format!("cannot rejoin #{room}: {message}"),
                        });
                        self.rejoined(room, false);
                    }
                    _ => self.rejoined(room, false),
                }
                return;
            }
            Pending::User { message, reply } => (message, reply),
        };
        if let ServerMessage::Error { code, message } = reply {
            let _ = tx.send(Err(ClientError::Server { code, message }));
            return;
        }
        match (&message, &reply) {
            (ClientMessage::Join { room, .. }, ServerMessage::Members { last_id, .. }) => {
                self.rooms.insert(room.key(), room.clone());
                if let Some(id) = last_id {
                    self.seen(room, *id);
                }
            }
            (
                ClientMessage::Say { .. },
                ServerMessage::Ok {
                    room: Some(room),
                    id: Some(id),
                },
            ) => {
                let (room, id) = (room.clone(), *id);
                self.seen(&room, id);
            }
            (ClientMessage::Leave { room }, ServerMessage::Ok { .. }) => {
                self.rooms.remove(&room.key());
                self.cursors.remove(&room.key());
            }
            (ClientMessage::Nick { nick }, ServerMessage::Ok { .. }) => {
                self.shared.set_nick(nick.clone());
            }
            _ => {}
        }
        let _ = tx.send(Ok(reply));
    }

    /// Counts one rejoin answered; announces the reconnect after the last.
    fn rejoined(&mut self, room: RoomName, ok: bool) {
        if !ok {
            self.rooms.remove(&room.key());
        }
        let Some((left, rooms)) = self.rejoining.as_mut() else {
            return;
        };
        if ok {
            rooms.push(room);
        }
        *left -= 1;
        if *left == 0 {
            let rooms = std::mem::take(rooms);
            self.rejoining = None;
            self.emit(Event::Reconnected {
                nick: self.shared.nick(),
                rooms,
            });
        }
    }

    /// Answers every request in flight: the connection is gone. A `quit`
    /// in flight has what it asked for.
    fn fail_pending(&mut self) {
        for (_, pending) in self.pending.drain() {
            if let Pending::User { message, reply } = pending {
                let result = match message {
                    ClientMessage::Quit { .. } => Ok(ServerMessage::Bye {
                        reason: "connection closed".to_owned(),
                    }),
                    _ => Err(ClientError::Disconnected),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Delivers an event without waiting; a full channel drops it and
    /// counts it (see the module docs).
    fn emit(&mut self, event: Event) {
        if self.missed > 0 {
            match self.events.try_send(Event::Lagged {
                missed: self.missed,
            }) {
                Ok(()) => self.missed = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.missed += 1;
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            self.missed += 1;
        }
    }

    /// Delivers an event that must not be lost, waiting for room; requests
    /// that arrive meanwhile are refused, since there is no connection.
    async fn emit_surely(&mut self, event: Event) {
        if self.missed > 0 {
            let lagged = Event::Lagged {
                missed: self.missed,
            };
            self.missed = 0;
            self.emit_surely_one(lagged).await;
        }
        self.emit_surely_one(event).await;
    }

    async fn emit_surely_one(&mut self, event: Event) {
        // A clone, so waiting for room does not borrow the task.
        let events = self.events.clone();
        loop {
            tokio::select! {
                permit = events.reserve() => {
                    if let Ok(permit) = permit {
                        permit.send(event);
                    }
                    return;
                }
                command = self.commands.recv(), if !self.handles_gone => self.refuse(command),
            }
        }
    }

    /// Answers a request that arrives while there is no connection.
    fn refuse(&mut self, command: Option<Command>) {
        match command {
            Some(Command { message, reply }) => {
                if matches!(message, ClientMessage::Quit { .. }) {
                    self.quitting = true;
                }
                let _ = reply.send(Err(ClientError::Closed {
                    request: Box::new(message),
                }));
            }
            None => {
                self.handles_gone = true;
                self.quitting = true;
            }
        }
    }

    /// Waits for `delay` while refusing requests; false when the client
    /// quit or every handle is gone meanwhile.
    async fn pause(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return !self.quitting,
                command = self.commands.recv(), if !self.handles_gone => {
                    self.refuse(command);
                    if self.quitting {
                        return false;
                    }
                }
            }
        }
    }

    /// Reconnects with backoff, says `hello` with the current nick, and
    /// sends a join for each room. `None` when the policy gives up or the
    /// client quit meanwhile.
    async fn reconnect(&mut self) -> Option<Link> {
        let policy = self.options.reconnect.clone()?;
        let mut delay = policy.initial_delay;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            if policy.max_attempts.is_some_and(|max| attempt > max) {
                return None;
            }
            self.emit_surely(Event::Reconnecting { attempt, delay })
                .await;
            if !self.pause(delay).await {
                return None;
            }
            if let Some(link) = self.reconnect_round(attempt).await {
                return Some(link);
            }
            delay = (delay * 2).min(policy.max_delay);
        }
    }

    /// One reconnect attempt: tries every server once, starting with the
    /// one last connected to.
    async fn reconnect_round(&mut self, attempt: u32) -> Option<Link> {
        let count = self.connectors.len();
        for step in 0..count {
            let index = (self.current + step) % count;
            let nick = self.shared.nick();
            let connector = &self.connectors[index];
            let server = connector.describe();
            match handshake(connector, Some(&nick), self.options.connect_timeout).await {
                Ok((mut link, welcome)) => {
                    self.current = index;
                    self.shared.set_nick(welcome.nick);
                    self.shared.set_server_name(welcome.server);
                    self.shared.set_server_addr(server.clone());
                    match self.rejoin(&mut link).await {
                        Ok(()) => return Some(link),
                        Err(e) => tracing::debug!(%server, error = %e, "rejoin failed"),
                    }
                }
                Err(e) => {
                    tracing::debug!(attempt, %server, error = %e, "reconnect failed");
                }
            }
        }
        None
    }

    /// Sends a join for every room the client was in, resuming after the
    /// last message seen in each; [`Event::Reconnected`] follows once all
    /// are answered.
    async fn rejoin(&mut self, link: &mut Link) -> std::io::Result<()> {
        let rooms: Vec<RoomName> = self.rooms.values().cloned().collect();
        if rooms.is_empty() {
            self.emit(Event::Reconnected {
                nick: self.shared.nick(),
                rooms: Vec::new(),
            });
            return Ok(());
        }
        self.rejoining = Some((rooms.len(), Vec::new()));
        self.plain_rejoins = rooms;
        let result = self.send_rejoins(link, true).await;
        if result.is_err() {
            self.pending.clear();
            self.rejoining = None;
        }
        result
    }

    /// Sends the joins queued in `plain_rejoins`, with their cursors when
    /// `resume` is true.
    async fn send_rejoins(&mut self, link: &mut Link, resume: bool) -> std::io::Result<()> {
        let mut out = Vec::new();
        for room in std::mem::take(&mut self.plain_rejoins) {
            let reference = self.fresh_ref();
            let after = if resume {
                self.cursors.get(&room.key()).copied()
            } else {
                None
            };
            let join = ClientMessage::Join {
                room: room.clone(),
                key: None,
                history: None,
                after,
            };
            protocol::encode_into(&ClientFrame::with_ref(join, reference.clone()), &mut out);
            self.pending.insert(reference, Pending::Rejoin(room));
        }
        write_frame(&mut link.writer, &out).await
    }
}

/// The event for a frame that answers no request; `None` for frames that
/// carry nothing for the application.
fn event_of(message: ServerMessage) -> Option<Event> {
    let event = match message {
        ServerMessage::Message {
            room,
            id,
            from,
            text,
            ts,
            action,
        } => Event::Message {
            room,
            id,
            from,
            text,
            ts,
            action,
        },
        ServerMessage::Private { from, to, text, ts } => Event::Private { from, to, text, ts },
        ServerMessage::Joined { room, nick } => Event::Joined { room, nick },
        ServerMessage::Left { room, nick, reason } => Event::Left { room, nick, reason },
        ServerMessage::NickChanged { old, new } => Event::NickChanged { old, new },
        ServerMessage::Lagged { room, first, last } => Event::FellBehind { room, first, last },
        ServerMessage::Notice { text } => Event::Notice { text },
        ServerMessage::Error { code, message } => Event::Error { code, message },
        // Replies whose caller gave up, and frames with no meaning here.
        _ => return None,
    };
    Some(event)
}
