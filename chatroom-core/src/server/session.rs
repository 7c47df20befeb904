//! One connection from its first byte to its close.
//!
//! A session is one task that reads frames one at a time and handles each
//! before reading the next (so a client that sends faster than it is served
//! is slowed by TCP, not buffered), plus a writer task that drains its
//! bounded queue ([`super::writer`]). The session never touches another
//! session's socket: everything it says to others goes through the registry
//! into their queues.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::broker::{self, BrokerError, Pending};
use crate::history::{Page, PageQuery};
use crate::protocol::text::{self, TextInput};
use crate::protocol::{
    self, ClientFrame, ClientMessage, ErrorCode, MAX_TEXT_LEN, MessageId, Nickname,
    PROTOCOL_VERSION, ProtocolError, RoomName, ServerFrame, ServerMessage,
};
use crate::registry::{
    Backlog, CutReason, Outbound, Outbox, Published, RegistryError, Room, SessionId, now_ms, outbox,
};
use crate::transport::{BoxReader, BoxWriter, Connection, Frame, LineFramer, PeerAddr};

use super::backlog::{self, BacklogError};
use super::rate::TokenBucket;
use super::writer::{self, Dialect, WriterEnd};
use super::{Shared, web};

/// Read buffer a connection starts with; the framer grows it for long lines
/// up to the line limit. Small, because idle connections are the common case.
const INITIAL_READ_BUFFER: usize = 1024;

/// How long a session that ended (other than by shutdown) waits for its
/// writer to flush the last frames, such as an error and `bye`.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

type Reader = FramedRead<BoxReader, LineFramer>;

/// Why a session ended; logged, and shown to the rooms it leaves.
#[derive(Debug)]
enum End {
    PeerClosed,
    Quit(Option<String>),
    ReadFailed(std::io::Error),
    WriteFailed(std::io::Error),
    SlowConsumer,
    NickLost,
    TooManyErrors,
    IdleTimeout,
    HandshakeTimeout,
    UnsupportedVersion,
    Shutdown,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("connection closed"),
            Self::Quit(Some(reason)) => write!(f, "quit: {reason}"),
            Self::Quit(None) => f.write_str("quit"),
            Self::ReadFailed(e) => write!(f, "read failed: {e}"),
            Self::WriteFailed(e) => write!(f, "write failed: {e}"),
            Self::SlowConsumer => f.write_str("disconnected: too slow"),
            Self::NickLost => f.write_str("disconnected: nickname taken elsewhere"),
            Self::TooManyErrors => f.write_str("disconnected: too many errors"),
            Self::IdleTimeout => f.write_str("disconnected: idle"),
            Self::HandshakeTimeout => f.write_str("no hello in time"),
            Self::UnsupportedVersion => f.write_str("unsupported protocol version"),
            Self::Shutdown => f.write_str("server shutting down"),
        }
    }
}

/// What handling one frame asks of the loop.
enum Flow {
    Continue,
    Close(End),
}

/// A request that failed, answered with an `error` frame.
struct Failure {
    code: ErrorCode,
    message: String,
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ProtocolError> for Failure {
    fn from(e: ProtocolError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<BacklogError> for Failure {
    fn from(e: BacklogError) -> Self {
        match e {
            BacklogError::Registry(e) => e.into(),
            other => Self::new(ErrorCode::Internal, other.to_string()),
        }
    }
}

fn bad_cursor(why: &str) -> Failure {
    Failure::new(ErrorCode::BadCursor, why)
}

fn future_cursor(id: MessageId, last: MessageId) -> Failure {
    Failure::new(
        ErrorCode::BadCursor,
        format!("id {id} is in the future: the room's last id is {last}"),
    )
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Only the `ref` of a frame that failed to decode, so the error can still
/// be matched to its request.
#[derive(Deserialize)]
struct RefOnly {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

fn ref_of_bad_frame(line: &[u8]) -> Option<String> {
    serde_json::from_slice::<RefOnly>(line)
        .ok()
        .and_then(|r| r.reference)
        .filter(|r| protocol::validate_ref(r).is_ok())
}

/// Aborts the writer task if the session is dropped first (for example when
/// the server's shutdown deadline aborts the session).
struct WriterTask(JoinHandle<WriterEnd>);

impl Drop for WriterTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A registered session: the state one connection needs after its dialect
/// is known and its nick is registered.
struct Session {
    shared: Arc<Shared>,
    id: SessionId,
    nick: Nickname,
    dialect: Dialect,
    outbox: Outbox,
    /// The rooms joined, by folded name. Holding the room lets `say` take
    /// only the room's lock, never the registry's.
    rooms: HashMap<String, Arc<Room>>,
    /// The text dialect's current room, where plain lines go.
    current: Option<RoomName>,
    rate: TokenBucket,
    errors: TokenBucket,
    last_heard: Instant,
    pinged: bool,
    /// `say`s waiting for the broker (a cluster's acknowledgement), oldest
    /// first; always empty on one node, whose broker answers at once.
    says: Says,
}

/// The `say`s in flight. Behind a mutex only so that `Session` stays `Sync`
/// (its `&self` methods are awaited in a spawned task); it is reached only
/// through `&mut`, so the mutex is never locked.
#[derive(Default)]
struct Says(std::sync::Mutex<FuturesOrdered<BoxFuture<'static, SayDone>>>);

impl Says {
    fn get(&mut self) -> &mut FuturesOrdered<BoxFuture<'static, SayDone>> {
        self.0.get_mut().unwrap_or_else(|p| p.into_inner())
    }
}

/// Most `say`s of one connection waiting for the broker at once.
const MAX_SAYS_IN_FLIGHT: usize = 64;

/// A `say` the broker answered: its outcome, room and `ref`.
type SayDone = (Result<Published, BrokerError>, RoomName, Option<String>);

/// What a connection's first bytes say it is.
enum Opening {
    /// A chat client, in this dialect, with the first line if one came.
    Chat(Dialect, Option<Frame>),
    /// An HTTP request (a browser): the bytes read so far.
    Http(Bytes),
    /// The peer closed before saying anything.
    Closed,
}

/// Serves one connection until it closes or `shutdown` fires.
pub(crate) async fn serve(shared: Arc<Shared>, conn: Connection, shutdown: CancellationToken) {
    let Connection {
        reader,
        writer,
        peer,
        ..
    } = conn;
    let limits = &shared.limits;
    let mut reader = FramedRead::with_capacity(
        reader,
        LineFramer::new(limits.max_line_len),
        INITIAL_READ_BUFFER,
    );
    let opening = tokio::select! {
        _ = shutdown.cancelled() => return,
        opening = sniff(&mut reader, limits.sniff) => opening,
    };
    match opening {
        Opening::Closed => {}
        Opening::Http(first_line) if limits.web => {
            let parts = reader.into_parts();
            let mut read = bytes::BytesMut::from(&first_line[..]);
            read.extend_from_slice(&parts.read_buf);
            web::serve(shared, read.freeze(), parts.io, writer, peer, shutdown).await;
        }
        Opening::Http(first_line) => {
            let mut line = first_line;
            line.truncate(line.len() - 1);
            let first = Some(Frame::Line(line));
            chat(shared, reader, writer, peer, Dialect::Text, first, shutdown).await;
        }
        Opening::Chat(dialect, first) => {
            chat(shared, reader, writer, peer, dialect, first, shutdown).await;
        }
    }
}

/// Serves a connection that speaks the native dialect and nothing else (a
/// WebSocket, whose messages are already lines).
pub(crate) async fn serve_native(
    shared: Arc<Shared>,
    conn: Connection,
    shutdown: CancellationToken,
) {
    let reader = FramedRead::with_capacity(
        conn.reader,
        LineFramer::new(shared.limits.max_line_len),
        INITIAL_READ_BUFFER,
    );
    chat(
        shared,
        reader,
        conn.writer,
        conn.peer,
        Dialect::Native,
        None,
        shutdown,
    )
    .await;
}

/// Runs a chat session once the dialect is known.
async fn chat(
    shared: Arc<Shared>,
    mut reader: Reader,
    writer: BoxWriter,
    peer: PeerAddr,
    dialect: Dialect,
    first_line: Option<Frame>,
    shutdown: CancellationToken,
) {
    let limits = &shared.limits;
    let (tx, rx) = outbox(limits.outbox_frames, limits.outbox_bytes);
    let mut writer_task = WriterTask(tokio::spawn(writer::run(writer, rx, dialect)));

    // A text client's first line may have arrived during the sniff; it is
    // handled before anything else is read.
    let mut first_text = None;
    let session = match dialect {
        Dialect::Text => {
            first_text = first_line;
            let Some(session) = Session::start_text(&shared, peer, tx).await else {
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer_task.0).await;
                return;
            };
            Some(session)
        }
        Dialect::Native => {
            tokio::select! {
                _ = shutdown.cancelled() => None,
                s = handshake(&shared, peer, tx, &mut reader, first_line) => s,
            }
        }
    };
    let Some(mut session) = session else {
        // The handshake failed and said why; let the writer flush that.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer_task.0).await;
        return;
    };
    tracing::info!(%peer, nick = %session.nick, ?dialect, "connected");

    let first = match first_text {
        Some(frame) => Some(session.on_frame(frame).await),
        None => None,
    };
    let end = match first {
        Some(Flow::Close(end)) => end,
        _ => session.run(&mut reader, &mut writer_task, &shutdown).await,
    };
    tracing::info!(%peer, nick = %session.nick, reason = %end, "disconnected");
    session.finish(&end);
    if !writer_task.0.is_finished() {
        // The writer drains what is queued (a `bye`, say) and closes. On
        // shutdown the server's deadline bounds this wait from outside;
        // otherwise a peer that stopped reading would keep its connection
        // and its slot for as long as it stays stalled, so the wait is
        // bounded here and the writer is aborted with the session.
        if matches!(end, End::Shutdown) {
            let _ = (&mut writer_task.0).await;
        } else {
            let _ = tokio::time::timeout(CLOSE_LINGER, &mut writer_task.0).await;
        }
    }
}

/// Decides the dialect from the first bytes, as docs/protocol.md states: a
/// `{` first is a native client; anything else, or silence for the sniff
/// window, is a person or the seed's client speaking text. Returns the first
/// complete line when one arrived during the window, or `None` when the
/// peer closed.
async fn sniff(reader: &mut Reader, window: Duration) -> Opening {
    let first = match tokio::time::timeout(window, reader.next()).await {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(Some(Err(_)) | None) => return Opening::Closed,
        Err(_) => None,
    };
    if let Some(Frame::Line(line)) = &first
        && is_http_request_line(line)
    {
        let mut bytes = bytes::BytesMut::from(&line[..]);
        bytes.extend_from_slice(b"\n");
        return Opening::Http(bytes.freeze());
    }
    let first_byte = match &first {
        Some(Frame::Line(line)) => line.first().copied(),
        Some(Frame::TooLong { .. }) => None,
        None => reader.read_buffer().first().copied(),
    };
    let dialect = if first_byte == Some(b'{') {
        Dialect::Native
    } else {
        Dialect::Text
    };
    Opening::Chat(dialect, first)
}

/// `GET /path HTTP/1.x`: a browser, not a person typing.
fn is_http_request_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.starts_with(b"GET /") && (line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0"))
}

/// A nick from the peer's address, as the seed named users by IP:
/// `127-0-0-1-50000`.
fn nick_for(peer: &PeerAddr) -> Nickname {
    let raw = match peer {
        PeerAddr::Net(addr) => {
            let ip: String = addr
                .ip()
                .to_string()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            format!("{}-{}", ip.trim_matches('-'), addr.port())
        }
        _ => "guest".to_owned(),
    };
    // Long IPv6 addresses keep their most specific end.
    let start = raw.len().saturating_sub(protocol::MAX_NICK_LEN);
    let trimmed = raw[start..].trim_start_matches('-');
    Nickname::new(trimmed).unwrap_or_else(|_| Nickname::new("guest").expect("valid literal"))
}

fn push(outbox: &Outbox, message: ServerMessage, reference: Option<String>) {
    // A failed push means the queue overflowed or the writer is gone; the
    // cut-off ends the session, so there is nothing more to do here.
    let _ = outbox.push(&Outbound::new(ServerFrame::reply(message, reference)));
}

fn error(outbox: &Outbox, failure: Failure, reference: Option<String>) {
    push(
        outbox,
        ServerMessage::Error {
            code: failure.code,
            message: failure.message,
        },
        reference,
    );
}

fn bye(outbox: &Outbox, reason: &str) {
    push(
        outbox,
        ServerMessage::Bye {
            reason: reason.to_owned(),
        },
        None,
    );
}

/// Waits for a valid `hello` and registers the client. Returns `None` when
/// the connection must close (it was told why).
async fn handshake(
    shared: &Arc<Shared>,
    peer: PeerAddr,
    outbox: Outbox,
    reader: &mut Reader,
    mut pending: Option<Frame>,
) -> Option<Session> {
    let limits = &shared.limits;
    let deadline = Instant::now() + limits.handshake_timeout;
    let mut errors = TokenBucket::refilling_every(limits.error_refill, limits.max_errors, deadline);
    loop {
        let frame = match pending.take() {
            Some(frame) => frame,
            None => match tokio::time::timeout_at(deadline, reader.next()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => {
                    tracing::debug!(%peer, error = %e, "read failed during handshake");
                    return None;
                }
                Ok(None) => return None,
                Err(_) => {
                    error(
                        &outbox,
                        Failure::new(ErrorCode::HandshakeRequired, "no hello in time"),
                        None,
                    );
                    bye(&outbox, "handshake timeout");
                    tracing::debug!(%peer, reason = %End::HandshakeTimeout, "closed");
                    return None;
                }
            },
        };
        let (failure, reference) = match hello_of(&frame) {
            Ok((version, nick, resume, reference)) => {
                if version != PROTOCOL_VERSION {
                    error(
                        &outbox,
                        Failure::new(
                            ErrorCode::UnsupportedVersion,
                            format!("this server speaks protocol version {PROTOCOL_VERSION}"),
                        ),
                        reference,
                    );
                    bye(&outbox, "unsupported protocol version");
                    tracing::debug!(%peer, reason = %End::UnsupportedVersion, "closed");
                    return None;
                }
                let (broker, registry) = (&*shared.broker, &shared.registry);
                let registered = match nick {
                    Some(nick) => broker::register(broker, registry, nick.clone(), outbox.clone())
                        .await
                        .map(|id| (id, nick)),
                    None => {
                        let base = Nickname::new("guest").expect("valid literal");
                        broker::register_unique(broker, registry, &base, outbox.clone()).await
                    }
                };
                match registered {
                    Ok((id, nick)) => {
                        let mut session = Session::new(shared, id, nick, Dialect::Native, outbox);
                        session.welcome(reference.clone());
                        session.resume(resume, reference).await;
                        return Some(session);
                    }
                    Err(e) => (Failure::from(e), reference),
                }
            }
            Err(failed) => failed,
        };
        error(&outbox, failure, reference);
        if !errors.try_take(Instant::now()) {
            bye(&outbox, "too many errors");
            return None;
        }
    }
}

/// What a `hello` asks for: version, nick, resume cursors, and its `ref`.
type Hello = (
    u32,
    Option<Nickname>,
    BTreeMap<RoomName, MessageId>,
    Option<String>,
);

/// Reads a `hello` out of a frame, or says what is wrong with it.
fn hello_of(frame: &Frame) -> Result<Hello, (Failure, Option<String>)> {
    let line = match frame {
        Frame::Line(line) => line,
        Frame::TooLong { max } => {
            return Err((
                Failure::new(
                    ErrorCode::FrameTooLong,
                    format!("line longer than {max} bytes"),
                ),
                None,
            ));
        }
    };
    let parsed: ClientFrame =
        protocol::decode(line).map_err(|e| (Failure::from(e), ref_of_bad_frame(line)))?;
    match parsed.message {
        ClientMessage::Hello {
            version,
            nick,
            resume,
        } => Ok((version, nick, resume, parsed.reference)),
        _ => Err((
            Failure::new(ErrorCode::HandshakeRequired, "say hello first"),
            parsed.reference,
        )),
    }
}

impl Session {
    fn new(
        shared: &Arc<Shared>,
        id: SessionId,
        nick: Nickname,
        dialect: Dialect,
        outbox: Outbox,
    ) -> Self {
        let limits = &shared.limits;
        let now = Instant::now();
        Self {
            shared: shared.clone(),
            id,
            nick,
            dialect,
            outbox,
            rooms: HashMap::new(),
            current: None,
            rate: TokenBucket::new(limits.rate_per_sec, limits.rate_burst, now),
            errors: TokenBucket::refilling_every(limits.error_refill, limits.max_errors, now),
            last_heard: now,
            pinged: false,
            says: Says::default(),
        }
    }

    /// Registers a text-dialect client under a nick from its address, greets
    /// it and puts it in the default room.
    async fn start_text(shared: &Arc<Shared>, peer: PeerAddr, outbox: Outbox) -> Option<Self> {
        let (broker, registry) = (&*shared.broker, &shared.registry);
        let (id, nick) =
            match broker::register_unique(broker, registry, &nick_for(&peer), outbox.clone()).await
            {
                Ok(registered) => registered,
                Err(e) => {
                    // Only a cluster that cannot be reached refuses a nick
                    // with a free suffix; the text client is told and closed.
                    error(&outbox, e.into(), None);
                    bye(&outbox, "the cluster is unavailable");
                    return None;
                }
            };
        let mut session = Self::new(shared, id, nick, Dialect::Text, outbox);
        session.welcome(None);
        let room = shared.limits.default_room.clone();
        match session
            .join(&room, Backlog::Last(shared.limits.history_on_join))
            .await
        {
            Ok(()) => session.current = Some(room),
            Err(failure) => error(&session.outbox, failure, None),
        }
        Some(session)
    }

    fn welcome(&self, reference: Option<String>) {
        let limits = &self.shared.limits;
        push(
            &self.outbox,
            ServerMessage::Welcome {
                version: PROTOCOL_VERSION,
                nick: self.nick.clone(),
                server: limits.server_name.clone(),
                max_line_len: limits.max_line_len,
                max_text_len: MAX_TEXT_LEN,
            },
            reference,
        );
    }

    async fn run(
        &mut self,
        reader: &mut Reader,
        writer: &mut WriterTask,
        shutdown: &CancellationToken,
    ) -> End {
        loop {
            let deadline = self.next_deadline();
            let flow = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    bye(&self.outbox, "server shutting down");
                    return End::Shutdown;
                }
                ended = &mut writer.0 => return match ended {
                    Ok(WriterEnd::Cut(CutReason::NickLost)) => End::NickLost,
                    Ok(WriterEnd::Cut(_)) => End::SlowConsumer,
                    Ok(WriterEnd::Failed(e)) => End::WriteFailed(e),
                    // The session holds a sender, so the queue cannot have
                    // drained; a panicked writer is reported as a failed write.
                    Ok(WriterEnd::Drained) | Err(_) => End::WriteFailed(std::io::ErrorKind::BrokenPipe.into()),
                },
                item = reader.next() => match item {
                    None => return End::PeerClosed,
                    Some(Err(e)) => return End::ReadFailed(e),
                    Some(Ok(frame)) => self.on_frame(frame).await,
                },
                Some(done) = self.says.get().next(), if !self.says.get().is_empty() => self.on_said(done),
                _ = tokio::time::sleep_until(deadline) => self.on_silence(),
            };
            if let Flow::Close(end) = flow {
                return end;
            }
        }
    }

    /// When the next keepalive action is due: a ping for a native client
    /// that has been quiet, then the idle cut-off.
    fn next_deadline(&self) -> Instant {
        let limits = &self.shared.limits;
        match self.dialect {
            Dialect::Native if !self.pinged => self.last_heard + limits.ping_interval,
            Dialect::Native => self.last_heard + limits.idle_timeout,
            Dialect::Text => match limits.text_idle_timeout {
                Some(t) => self.last_heard + t,
                // About 30 years: never, without overflowing Instant.
                None => Instant::now() + Duration::from_secs(1 << 30),
            },
        }
    }

    fn on_silence(&mut self) -> Flow {
        if Instant::now() < self.next_deadline() {
            return Flow::Continue;
        }
        if self.dialect == Dialect::Native && !self.pinged {
            self.pinged = true;
            push(&self.outbox, ServerMessage::Ping, None);
            return Flow::Continue;
        }
        self.fail(
            Failure::new(ErrorCode::IdleTimeout, "no data for too long"),
            None,
        );
        bye(&self.outbox, "idle timeout");
        Flow::Close(End::IdleTimeout)
    }

    async fn on_frame(&mut self, frame: Frame) -> Flow {
        self.last_heard = Instant::now();
        self.pinged = false;
        let line = match frame {
            Frame::Line(line) => line,
            Frame::TooLong { max } => {
                let failure = Failure::new(
                    ErrorCode::FrameTooLong,
                    format!("line longer than {max} bytes was dropped"),
                );
                return self.reject_in_order(failure, None).await;
            }
        };
        match self.dialect {
            Dialect::Native => self.on_native_line(&line).await,
            Dialect::Text => self.on_text_line(&line).await,
        }
    }

    async fn on_native_line(&mut self, line: &Bytes) -> Flow {
        let frame: ClientFrame = match protocol::decode(line) {
            Ok(frame) => frame,
            Err(e) => return self.reject_in_order(e.into(), ref_of_bad_frame(line)).await,
        };
        let ClientFrame { reference, message } = frame;
        if let Some(r) = &reference
            && let Err(e) = protocol::validate_ref(r)
        {
            return self.reject_in_order(e.into(), None).await;
        }
        self.request(message, reference).await
    }

    async fn on_text_line(&mut self, line: &Bytes) -> Flow {
        let Ok(line) = std::str::from_utf8(line) else {
            return self.reject(ProtocolError::InvalidUtf8.into(), None);
        };
        let input = match text::parse_line(line, self.current.as_ref()) {
            Ok(input) => input,
            Err(e) => return self.reject(e.into(), None),
        };
        match input {
            TextInput::Empty => Flow::Continue,
            TextInput::Help => {
                push(
                    &self.outbox,
                    ServerMessage::Notice {
                        text: text::HELP.join("\n"),
                    },
                    None,
                );
                Flow::Continue
            }
            TextInput::History(n) => {
                let Some(room) = self.current.clone() else {
                    return self.reject(
                        ProtocolError::Command("you are in no room: /join ROOM first".to_owned())
                            .into(),
                        None,
                    );
                };
                let history = ClientMessage::History {
                    room,
                    before: None,
                    after: None,
                    limit: Some(n.unwrap_or(20)),
                };
                self.request(history, None).await
            }
            TextInput::Switch(room) => {
                if !self.take_rate_token() {
                    return self.rate_limited(None);
                }
                match self.switch(room).await {
                    Ok(()) => Flow::Continue,
                    Err(failure) => self.reject(failure, None),
                }
            }
            TextInput::Request(message) => self.request(message, None).await,
            // TextInput is non_exhaustive for other crates, not this one.
        }
    }

    fn take_rate_token(&mut self) -> bool {
        self.rate.try_take(Instant::now())
    }

    fn rate_limited(&mut self, reference: Option<String>) -> Flow {
        self.reject(
            Failure::new(
                ErrorCode::RateLimited,
                "you are sending too fast; message dropped",
            ),
            reference,
        )
    }

    /// Rate-limits and serves one request, answering errors.
    async fn request(&mut self, message: ClientMessage, reference: Option<String>) -> Flow {
        // A pong only proves liveness; it costs no rate.
        if !matches!(message, ClientMessage::Pong) && !self.take_rate_token() {
            return match self.drain_says().await {
                Flow::Continue => self.rate_limited(reference),
                close => close,
            };
        }
        // Answers go out in request order: anything but a `say` waits for
        // the `say`s before it.
        if !matches!(message, ClientMessage::Say { .. })
            && let Flow::Close(end) = self.drain_says().await
        {
            return Flow::Close(end);
        }
        match self.dispatch(message, reference.clone()).await {
            Ok(flow) => flow,
            Err(failure) => self.reject_in_order(failure, reference).await,
        }
    }

    /// [`Session::reject`], after the `say`s in flight are answered, so
    /// that the error keeps its place among the replies.
    async fn reject_in_order(&mut self, failure: Failure, reference: Option<String>) -> Flow {
        match self.drain_says().await {
            Flow::Continue => self.reject(failure, reference),
            close => close,
        }
    }

    /// Answers a `say` the broker is done with.
    fn on_said(&mut self, (outcome, room, reference): SayDone) -> Flow {
        match outcome {
            Ok(published) => {
                let id = Some(published.id);
                self.reply(
                    ServerMessage::Ok {
                        room: Some(room),
                        id,
                    },
                    reference,
                );
                Flow::Continue
            }
            Err(e) => self.reject(e.into(), reference),
        }
    }

    /// Waits for every `say` in flight and answers each, in order.
    async fn drain_says(&mut self) -> Flow {
        while let Some(done) = self.says.get().next().await {
            if let Flow::Close(end) = self.on_said(done) {
                return Flow::Close(end);
            }
        }
        Flow::Continue
    }

    async fn dispatch(
        &mut self,
        message: ClientMessage,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        match message {
            ClientMessage::Hello { .. } => {
                return Err(Failure::new(
                    ErrorCode::HandshakeRequired,
                    "hello was already said",
                ));
            }
            ClientMessage::Join {
                room,
                history,
                after,
                ..
            } => {
                self.shared.broker.open(&room).await?;
                let backlog = match after {
                    Some(cursor) => {
                        let last = self.last_id_for(&room, cursor).await.unwrap_or(0);
                        if cursor > last {
                            return Err(future_cursor(cursor, last));
                        }
                        Backlog::After(cursor)
                    }
                    None => {
                        let on_join = self.shared.limits.history_on_join;
                        Backlog::Last(history.map_or(on_join, |h| u64::from(h).min(on_join)))
                    }
                };
                self.join(&room, backlog).await?;
                let members = self.members(&room)?;
                // Read after the join: every message up to this id is
                // already queued ahead of this reply.
                let last_id = self.rooms.get(&room.key()).map(|r| r.last_id());
                self.reply(
                    ServerMessage::Members {
                        room,
                        members,
                        last_id,
                    },
                    reference,
                );
            }
            ClientMessage::Leave { room } => {
                self.leave(&room)?;
                self.reply(
                    ServerMessage::Ok {
                        room: Some(room),
                        id: None,
                    },
                    reference,
                );
            }
            ClientMessage::Say { room, text, action } => {
                protocol::validate_text(&text)?;
                let handle = self
                    .rooms
                    .get(&room.key())
                    .ok_or_else(|| RegistryError::NotInRoom(room.clone()))?;
                // Nobody gets their own line back, as in the seed: a native
                // client learns the id from the `ok`, which the broker
                // returns once the message is committed.
                let broker = &self.shared.broker;
                let room = handle.name().clone();
                match broker.publish(handle, self.id, &self.nick, text, action) {
                    // One node: answered at once, nothing waits.
                    Pending::Ready(Some(outcome)) if self.says.get().is_empty() => {
                        return Ok(self.on_said((outcome, room, reference)));
                    }
                    // A cluster: the acknowledgement is awaited beside the
                    // next requests, and answered in order.
                    pending => {
                        if self.says.get().len() >= MAX_SAYS_IN_FLIGHT
                            && let Some(oldest) = self.says.get().next().await
                            && let Flow::Close(end) = self.on_said(oldest)
                        {
                            return Ok(Flow::Close(end));
                        }
                        let said = async move { (pending.await, room, reference) };
                        self.says.get().push_back(Box::pin(said));
                    }
                }
            }
            ClientMessage::Whisper { to, text } => {
                protocol::validate_text(&text)?;
                self.whisper(to, text).await?;
                self.ok(reference);
            }
            ClientMessage::Nick { nick } => {
                let shared = &self.shared;
                let (broker, registry) = (&*shared.broker, &shared.registry);
                broker::rename(broker, registry, self.id, &self.nick, nick.clone()).await?;
                broker.renamed(&self.nick, &nick);
                self.nick = nick;
                self.ok(reference);
            }
            ClientMessage::Rooms => {
                let rooms = broker::rooms(&*self.shared.broker, &self.shared.registry);
                self.reply(ServerMessage::Rooms { rooms }, reference);
            }
            ClientMessage::Who { room } => {
                let members = self.members(&room)?;
                self.reply(
                    ServerMessage::Members {
                        room,
                        members,
                        last_id: None,
                    },
                    reference,
                );
            }
            ClientMessage::History {
                room,
                before,
                after,
                limit,
            } => {
                let page = self.history_page(&room, before, after, limit).await?;
                self.reply(
                    ServerMessage::History {
                        room,
                        messages: page.messages,
                        more: page.more,
                    },
                    reference,
                );
            }
            ClientMessage::Ping => self.reply(ServerMessage::Pong, reference),
            ClientMessage::Pong => {}
            ClientMessage::Quit { reason } => {
                // The reason goes to every room the client was in, so it
                // obeys the rules of message text; a bad one is dropped.
                let reason = reason.filter(|r| protocol::validate_text(r).is_ok());
                self.reply(
                    ServerMessage::Bye {
                        reason: "quit".to_owned(),
                    },
                    reference,
                );
                return Ok(Flow::Close(End::Quit(reason)));
            }
        }
        Ok(Flow::Continue)
    }

    async fn join(&mut self, room: &RoomName, backlog: Backlog) -> Result<(), Failure> {
        let shared = &self.shared;
        shared.broker.open(room).await?;
        let handle = backlog::join(
            &shared.registry,
            self.id,
            &self.outbox,
            room,
            shared.limits.max_rooms,
            backlog,
        )
        .await?;
        shared.broker.joined(handle.name(), &self.nick);
        self.rooms.insert(room.key(), handle);
        Ok(())
    }

    /// A private message: to a session of this node through the registry,
    /// else through the broker to another node, echoed to the sender.
    async fn whisper(&self, to: Nickname, text: String) -> Result<(), Failure> {
        let registry = &self.shared.registry;
        if registry.holds(&to) {
            return Ok(registry.whisper(self.id, &to, text)?);
        }
        let ts = now_ms();
        let to = self
            .shared
            .broker
            .whisper(&self.nick, &to, text.clone(), ts)
            .await?;
        let from = self.nick.clone();
        self.reply(ServerMessage::Private { from, to, text, ts }, None);
        Ok(())
    }

    /// The last id of `room`, to check `cursor` against: when the cursor
    /// is ahead (handed out by another node whose messages this node is
    /// still receiving), after the broker let this node catch up.
    async fn last_id_for(&self, room: &RoomName, cursor: MessageId) -> Option<MessageId> {
        let registry = &self.shared.registry;
        match registry.last_id(room) {
            Some(last) if cursor > last => {
                self.shared.broker.catch_up(room, cursor).await;
                registry.last_id(room)
            }
            last => last,
        }
    }

    /// The members of `room` on every node.
    fn members(&self, room: &RoomName) -> Result<Vec<Nickname>, RegistryError> {
        broker::members(&*self.shared.broker, &self.shared.registry, room)
    }

    /// Checks a `history` request and reads its page.
    async fn history_page(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        after: Option<MessageId>,
        limit: Option<u32>,
    ) -> Result<Page, Failure> {
        self.shared.broker.open_existing(room).await?;
        let registry = &self.shared.registry;
        let last = registry
            .last_id(room)
            .ok_or_else(|| RegistryError::NoSuchRoom(room.clone()))?;
        let max = self.shared.limits.history_page_max;
        let limit = match limit {
            None => max.min(50),
            Some(0) => return Err(bad_cursor("limit must be at least 1")),
            Some(n) => (n as usize).min(max),
        };
        let query = match (before, after) {
            (Some(_), Some(_)) => return Err(bad_cursor("give before or after, not both")),
            (Some(b), None) if b > last + 1 => return Err(future_cursor(b, last)),
            (None, Some(a)) if a > last => return Err(future_cursor(a, last)),
            (before, None) => PageQuery::Before { before, limit },
            (None, Some(after)) => PageQuery::After { after, limit },
        };
        Ok(backlog::page(registry, room, query).await?)
    }

    /// Rejoins the rooms of a `hello`'s resume cursors, each with exactly
    /// the messages after its cursor. A bad cursor is answered with an error
    /// and skipped; the others still resume.
    async fn resume(&mut self, cursors: BTreeMap<RoomName, MessageId>, reference: Option<String>) {
        for (room, cursor) in cursors {
            if let Err(e) = self.shared.broker.open_existing(&room).await {
                self.fail(e.into(), reference.clone());
                continue;
            }
            let checked = match self.last_id_for(&room, cursor).await {
                None => Err(Failure::from(RegistryError::NoSuchRoom(room.clone()))),
                Some(last) if cursor > last => Err(future_cursor(cursor, last)),
                Some(_) => self.join(&room, Backlog::After(cursor)).await,
            };
            if let Err(mut failure) = checked {
                // One `hello` may carry many cursors and its errors share its
                // ref, so each names its room first.
                let prefix = format!("#{room}: ");
                if !failure.message.starts_with(&prefix) {
                    failure.message.insert_str(0, &prefix);
                }
                self.fail(failure, reference.clone());
            }
        }
    }

    fn leave(&mut self, room: &RoomName) -> Result<(), Failure> {
        self.shared.registry.leave(self.id, room, None)?;
        if let Some(handle) = self.rooms.remove(&room.key()) {
            self.shared.broker.left(handle.name(), &self.nick, None);
        }
        if self.current.as_ref().is_some_and(|c| c.key() == room.key()) {
            self.current = None;
        }
        Ok(())
    }

    /// The text dialect's `/join`: join the new room first, so a refused
    /// join leaves the user where they were, then leave the old one.
    async fn switch(&mut self, room: RoomName) -> Result<(), Failure> {
        if self.current.as_ref().is_some_and(|c| c.key() == room.key()) {
            return Ok(());
        }
        self.join(&room, Backlog::Last(self.shared.limits.history_on_join))
            .await?;
        if let Some(old) = self.current.take() {
            self.leave(&old)?;
        }
        let members = self.members(&room)?;
        self.current = Some(room.clone());
        self.reply(
            ServerMessage::Members {
                room,
                members,
                last_id: None,
            },
            None,
        );
        Ok(())
    }

    fn reply(&self, message: ServerMessage, reference: Option<String>) {
        push(&self.outbox, message, reference);
    }

    fn ok(&self, reference: Option<String>) {
        self.reply(
            ServerMessage::Ok {
                room: None,
                id: None,
            },
            reference,
        );
    }

    fn fail(&self, failure: Failure, reference: Option<String>) {
        error(&self.outbox, failure, reference);
    }

    /// Answers a failed request, and closes the connection once the client
    /// has used up its allowance of errors.
    fn reject(&mut self, failure: Failure, reference: Option<String>) -> Flow {
        self.fail(failure, reference);
        if self.errors.try_take(Instant::now()) {
            return Flow::Continue;
        }
        self.fail(
            Failure::new(ErrorCode::TooManyErrors, "too many errors; disconnecting"),
            None,
        );
        bye(&self.outbox, "too many errors");
        Flow::Close(End::TooManyErrors)
    }

    /// Leaves every room (telling the others why) and frees the nick. The
    /// session's queue sender is dropped with `self`, which lets the writer
    /// drain and close.
    fn finish(self, end: &End) {
        let broker = &self.shared.broker;
        broker.release(&self.nick);
        let reason = match end {
            End::Quit(reason) => reason.clone(),
            other => Some(other.to_string()),
        };
        // The other nodes are told even at shutdown: for them this node's
        // members leave one by one, as they would from a node that stays.
        for room in self.rooms.values() {
            broker.left(room.name(), &self.nick, reason.as_deref());
        }
        if matches!(end, End::Shutdown) {
            self.shared.registry.unregister_silently(self.id);
        } else {
            self.shared.registry.unregister(self.id, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn nicks_come_from_the_peer_address() {
        let v4: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(nick_for(&PeerAddr::Net(v4)).as_str(), "127-0-0-1-50000");
        let v6: SocketAddr = "[2001:db8:85a3::8a2e:370:7334]:50000".parse().unwrap();
        let nick = nick_for(&PeerAddr::Net(v6));
        assert!(nick.as_str().ends_with("7334-50000"), "{nick}");
        let local6: SocketAddr = "[::1]:7".parse().unwrap();
        assert_eq!(nick_for(&PeerAddr::Net(local6)).as_str(), "1-7");
    }
}
