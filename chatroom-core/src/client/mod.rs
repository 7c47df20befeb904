//! The async client API: a cloneable [`Client`] handle for requests and an
//! [`Events`] stream for everything the server says unasked.
//!
//! [`Client::connect`] opens a TCP connection, says `hello`, waits for
//! `welcome` and spawns one connection task. The task owns the socket: it
//! writes the requests that [`Client`] handles send it over a bounded
//! channel, tags each with a fresh `ref`, and routes the reply carrying that
//! `ref` back to the caller. Everything else (room messages, presence,
//! private messages, unsolicited errors, the end of the connection) becomes
//! an [`Event`]. The task answers the server's `ping` itself and, when
//! [`ClientOptions::with_reconnect`] asks for it, reconnects with backoff and
//! rejoins the rooms it was in.
//!
//! # Several servers
//!
//! [`Client::connect_any`] takes the addresses of several nodes of one
//! cluster. It connects to the first that welcomes it; each reconnect
//! attempt then tries every address once, starting with the one last
//! connected to, so a client of a node that dies carries on at another
//! node and resumes its rooms there from its cursors.
//!
//! This module uses `protocol` and `transport`; it never reaches into the
//! server or the registry.
//!
//! # Slow event consumers
//!
//! Events go through a bounded channel ([`ClientOptions::event_capacity`]).
//! The connection task never waits for room in it while connected: a task
//! that did would stop reading the socket, and a caller waiting for a reply
//! while not reading events would deadlock against it. When the channel is
//! full the event is dropped and counted, and [`Event::Lagged`] reports the
//! count before the next event that fits. The end of a connection
//! ([`Event::Disconnected`] and the reconnect events) is never dropped: the
//! task waits for room for those, since it has no socket to read then.
//!
//! # Examples
//!
//! ```no_run
//! use chatroom_core::client::{Client, ClientOptions, Event};
//! use chatroom_core::protocol::{Nickname, RoomName};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ClientOptions::new().with_nick(Nickname::new("alice")?);
//! let (client, mut events) = Client::connect("127.0.0.1:7878", options).await?;
//! let lobby = RoomName::new("lobby")?;
//! let members = client.join(&lobby).await?;
//! println!("in #lobby: {members:?}");
//! client.say(&lobby, "hello").await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Message { from, text, .. } = event {
//!         println!("<{from}> {text}");
//!     }
//! }
//! # Ok(()) }
//! ```

mod connection;
mod error;

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::{
    self, ClientMessage, ErrorCode, MessageId, Nickname, RoomInfo, RoomName, ServerMessage,
    Timestamp,
};
use crate::transport::{Connector, TcpConnector};

pub use error::ClientError;

/// How long a request waits for its reply by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting (TCP plus `hello`/`welcome`) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default capacity of the event channel, in events.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default capacity of the request channel, in requests.
pub const DEFAULT_COMMAND_CAPACITY: usize = 64;

/// How to connect: the nickname, timeouts, channel sizes and whether to
/// reconnect. Build it with [`ClientOptions::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The nickname to ask for; the server picks one when `None`.
    pub nick: Option<Nickname>,
    /// How long each request waits for its reply.
    pub request_timeout: Duration,
    /// How long connecting, and each reconnect attempt, may take.
    pub connect_timeout: Duration,
    /// How many events may wait unread before new ones are dropped and
    /// counted (see the module docs).
    pub event_capacity: usize,
    /// How many requests may wait for the connection task before callers wait.
    pub command_capacity: usize,
    /// Whether and how to reconnect after the connection ends; `None` (the
    /// default) ends the event stream at the first disconnect.
    pub reconnect: Option<Reconnect>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            nick: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            command_capacity: DEFAULT_COMMAND_CAPACITY,
            reconnect: None,
        }
    }
}

impl ClientOptions {
    /// The defaults: no nickname, no reconnecting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for `nick` in `hello`.
    pub fn with_nick(mut self, nick: Nickname) -> Self {
        self.nick = Some(nick);
        self
    }

    /// Reconnects with `policy` after the connection ends.
    pub fn with_reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Sets the per-request reply timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the event channel's capacity (at least 1).
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }
}

/// A reconnect policy: exponential backoff from `initial_delay`, doubling
/// up to `max_delay`, for at most `max_attempts` attempts in a row.
///
/// The client does not reconnect after [`Client::quit`], nor once every
/// [`Client`] handle has been dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// The wait before the first attempt.
    pub initial_delay: Duration,
    /// The longest wait between attempts.
    pub max_delay: Duration,
    /// Attempts in a row before giving up; `None` tries forever. With
    /// several servers, one attempt tries each of them once.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// The default policy: 250 ms doubling up to 30 s, forever.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the first and the longest delay.
    pub fn with_delays(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_delay = initial;
        self.max_delay = max.max(initial);
        self
    }

    /// Gives up after `attempts` failed attempts in a row.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }
}

/// Why a connection ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The server said `bye` (after [`Client::quit`] the reason is the
    /// server's farewell).
    Bye {
        /// The reason the server gave, as sent (not sanitised).
        reason: String,
    },
    /// The server closed the connection without a `bye`.
    Closed,
    /// Reading from or writing to the connection failed.
    Failed(Arc<std::io::Error>),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bye { reason } => write!(f, "the server said bye: {reason}"),
            Self::Closed => f.write_str("the server closed the connection"),
            Self::Failed(e) => write!(f, "connection lost: {e}"),
        }
    }
}

/// Something the server said that is not the reply to a request, or a
/// change in the connection's state.
///
/// Strings inside events are as the server sent them: check or escape them
/// before showing them on a terminal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A message said in a room the client is in (never the client's own).
    Message {
        /// The room.
        room: RoomName,
        /// Its id within the room.
        id: MessageId,
        /// The sender.
        from: Nickname,
        /// The text.
        text: String,
        /// When the server accepted it.
        ts: Timestamp,
        /// True for an action (`/me waves`).
        action: bool,
    },
    /// A private message, to the client or (a copy) from it.
    Private {
        /// The sender.
        from: Nickname,
        /// The recipient.
        to: Nickname,
        /// The text.
        text: String,
        /// When the server accepted it.
        ts: Timestamp,
    },
    /// Someone (perhaps the client) joined a room the client is in.
    Joined {
        /// The room.
        room: RoomName,
        /// Who joined.
        nick: Nickname,
    },
    /// Someone (perhaps the client) left a room the client is in.
    Left {
        /// The room.
        room: RoomName,
        /// Who left.
        nick: Nickname,
        /// Why, when known.
        reason: Option<String>,
    },
    /// Someone (perhaps the client) changed nickname.
    NickChanged {
        /// The old nickname.
        old: Nickname,
        /// The new nickname.
        new: Nickname,
    },
    /// The client fell behind in a room (the server's `lagged` frame): the
    /// messages `first` to `last` follow at once, in order, then the live
    /// ones; nothing is lost or repeated.
    FellBehind {
        /// The room.
        room: RoomName,
        /// The first message held back.
        first: MessageId,
        /// The room's last message when the catch-up began.
        last: MessageId,
    },
    /// Readable text from the server itself.
    Notice {
        /// The text; may hold several lines separated by `\n`.
        text: String,
    },
    /// An error that answers no pending request (for example a warning
    /// before the server disconnects a slow client).
    Error {
        /// The machine-readable code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The event channel was full and this many events were dropped.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
    /// The connection ended. Without a reconnect policy this is the last
    /// event; with one, [`Event::Reconnecting`] follows.
    Disconnected {
        /// Why it ended.
        reason: DisconnectReason,
    },
    /// The client waits `delay` and then tries to reconnect.
    Reconnecting {
        /// Which attempt this is, counting from 1.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// The client is connected again and has rejoined its rooms.
    Reconnected {
        /// The nickname the server gave this time.
        nick: Nickname,
        /// The rooms rejoined.
        rooms: Vec<RoomName>,
    },
}

/// The stream of [`Event`]s from one connection. It ends after the last
/// [`Event::Disconnected`] (the one not followed by a reconnect).
#[derive(Debug)]
pub struct Events {
    /// Filled by the connection task; dropping it only discards events.
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// Waits for the next event; `None` once the connection task has ended.
    ///
    /// # Cancel safety
    /// Cancel-safe: an event is never lost by dropping the future.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// One request on its way to the connection task.
#[derive(Debug)]
struct Command {
    message: ClientMessage,
    /// The caller waits on the other end; dropping it (a timed-out caller)
    /// makes the task discard the reply.
    reply: oneshot::Sender<Result<ServerMessage, ClientError>>,
}

/// State the handles read and the connection task updates.
#[derive(Debug)]
struct Shared {
    nick: Mutex<Nickname>,
    server_name: Mutex<String>,
    /// The address connected to, as its connector describes it.
    server_addr: Mutex<String>,
}

impl Shared {
    fn nick(&self) -> Nickname {
        self.nick
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_nick(&self, nick: Nickname) {
        *self.nick.lock().unwrap_or_else(PoisonError::into_inner) = nick;
    }

    fn set_server_name(&self, name: String) {
        *self
            .server_name
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = name;
    }

    fn set_server_addr(&self, addr: String) {
        *self
            .server_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = addr;
    }
}

/// A handle to one connection. Cheap to clone; every clone talks to the
/// same connection task, and requests from clones may run concurrently.
///
/// When the last handle is dropped the connection task says `quit` and
/// ends.
#[derive(Debug, Clone)]
pub struct Client {
    /// Requests to the connection task, which holds the receiver.
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    request_timeout: Duration,
}

impl Client {
    /// Connects over TCP to `addr` (`host:port`), says `hello` and waits for
    /// `welcome`.
    ///
    /// # Errors
    /// [`ClientError::Transport`] when the server cannot be reached,
    /// [`ClientError::Server`] when it refuses the `hello` (for example
    /// [`ErrorCode::NickTaken`]), and the handshake variants of
    /// [`ClientError`].
    pub async fn connect(
        addr: impl Into<String>,
        options: ClientOptions,
    ) -> Result<(Self, Events), ClientError> {
        Self::connect_with(TcpConnector::new(addr), options).await
    }

    /// As [`Client::connect`], over any transport (the in-memory one in
    /// tests). `connector` is kept for reconnecting.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_with<C: Connector>(
        connector: C,
        options: ClientOptions,
    ) -> Result<(Self, Events), ClientError> {
        Self::connect_with_any(vec![connector], options).await
    }

    /// Connects over TCP to the first of `addrs` (`host:port` each, the
    /// nodes of one cluster) that welcomes the client; reconnects try them
    /// all in turn (see the module docs).
    ///
    /// # Errors
    /// [`ClientError::NoServers`] when `addrs` is empty; a refusal
    /// ([`ClientError::Server`], [`ClientError::Refused`]) from the first
    /// server that answers, since every node of a cluster would answer the
    /// same; otherwise the error from the last address tried.
    pub async fn connect_any(
        addrs: Vec<String>,
        options: ClientOptions,
    ) -> Result<(Self, Events), ClientError> {
        let connectors = addrs.into_iter().map(TcpConnector::new).collect();
        Self::connect_with_any(connectors, options).await
    }

    /// As [`Client::connect_any`], over any transport: one connector per
    /// server, all kept for reconnecting.
    ///
    /// # Errors
    /// As [`Client::connect_any`].
    pub async fn connect_with_any<C: Connector>(
        connectors: Vec<C>,
        options: ClientOptions,
    ) -> Result<(Self, Events), ClientError> {
        let mut last_error = ClientError::NoServers;
        let mut established = None;
        for (index, connector) in connectors.iter().enumerate() {
            match connection::handshake(connector, options.nick.as_ref(), options.connect_timeout)
                .await
            {
                Ok(done) => {
                    established = Some((index, done));
                    break;
                }
                Err(e @ (ClientError::Server { .. } | ClientError::Refused { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(server = %connector.describe(), error = %e, "cannot connect");
                    last_error = e;
                }
            }
        }
        let Some((index, (link, welcome))) = established else {
            return Err(last_error);
        };
        let shared = Arc::new(Shared {
            nick: Mutex::new(welcome.nick),
            server_name: Mutex::new(welcome.server),
            server_addr: Mutex::new(connectors[index].describe()),
        });
        let (cmd_tx, cmd_rx) = mpsc::channel(options.command_capacity.max(1));
        let (ev_tx, ev_rx) = mpsc::channel(options.event_capacity.max(1));
        let client = Self {
            commands: cmd_tx,
            shared: shared.clone(),
            request_timeout: options.request_timeout,
        };
        let task = connection::Task::new(connectors, index, options, cmd_rx, ev_tx, shared);
        tokio::spawn(task.run(link));
        Ok((client, Events { rx: ev_rx }))
    }

    /// The nickname the client has now.
    pub fn current_nick(&self) -> Nickname {
        self.shared.nick()
    }

    /// The server's name, from its latest `welcome`.
    pub fn server_name(&self) -> String {
        self.shared
            .server_name
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The address of the server connected to (or last connected to, while
    /// reconnecting), as given to [`Client::connect`] or
    /// [`Client::connect_any`].
    pub fn server_addr(&self) -> String {
        self.shared
            .server_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `message` and waits for its reply.
    async fn request(&self, message: ClientMessage) -> Result<ServerMessage, ClientError> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(cmd)) =
            self.commands.send(Command { message, reply }).await
        {
            return Err(ClientError::Closed {
                request: Box::new(cmd.message),
            });
        }
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            // The task dropped the sender without answering: it ended.
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => Err(ClientError::Timeout {
                timeout: self.request_timeout,
            }),
        }
    }

    /// Joins `room` (creating it if needed) and returns its members,
    /// including the client. The client rejoins it after a reconnect.
    ///
    /// # Errors
    /// [`ClientError::Server`] (for example [`ErrorCode::TooManyRooms`]),
    /// or the connection's errors.
    pub async fn join(&self, room: &RoomName) -> Result<Vec<Nickname>, ClientError> {
        let message = ClientMessage::Join {
            room: room.clone(),
            key: None,
            history: None,
            after: None,
        };
        match self.request(message).await? {
            ServerMessage::Members { members, .. } => Ok(members),
            other => Err(unexpected(&other)),
        }
    }

    /// Leaves `room`.
    ///
    /// # Errors
    /// [`ClientError::Server`] with [`ErrorCode::NotInRoom`], or the
    /// connection's errors.
    pub async fn leave(&self, room: &RoomName) -> Result<(), ClientError> {
        let message = ClientMessage::Leave { room: room.clone() };
        expect_ok(self.request(message).await?).map(drop)
    }

    /// Says `text` in `room` and returns the id the server gave it. The
    /// client does not receive its own message as an [`Event`].
    ///
    /// # Errors
    /// [`ClientError::Protocol`] for a text the server would refuse (empty,
    /// too long, holding control characters), [`ClientError::Server`], or
    /// the connection's errors.
    pub async fn say(
        &self,
        room: &RoomName,
        text: impl Into<String>,
    ) -> Result<MessageId, ClientError> {
        self.say_as(room, text.into(), false).await
    }

    /// Says an action (`/me waves`, shown as `* nick waves`) in `room`.
    ///
    /// # Errors
    /// As [`Client::say`].
    pub async fn action(
        &self,
        room: &RoomName,
        text: impl Into<String>,
    ) -> Result<MessageId, ClientError> {
        self.say_as(room, text.into(), true).await
    }

    async fn say_as(
        &self,
        room: &RoomName,
        text: String,
        action: bool,
    ) -> Result<MessageId, ClientError> {
        protocol::validate_text(&text)?;
        let message = ClientMessage::Say {
            room: room.clone(),
            text,
            action,
        };
        match expect_ok(self.request(message).await?)? {
            Some(id) => Ok(id),
            None => Err(ClientError::UnexpectedReply { kind: "ok" }),
        }
    }

    /// Sends `text` privately to `to`. The copy the server sends back
    /// arrives as [`Event::Private`].
    ///
    /// # Errors
    /// [`ClientError::Server`] with [`ErrorCode::NoSuchNick`], the text
    /// errors of [`Client::say`], or the connection's errors.
    pub async fn whisper(&self, to: &Nickname, text: impl Into<String>) -> Result<(), ClientError> {
        let text = text.into();
        protocol::validate_text(&text)?;
        let message = ClientMessage::Whisper {
            to: to.clone(),
            text,
        };
        expect_ok(self.request(message).await?).map(drop)
    }

    /// Changes nickname. [`Client::current_nick`] reflects it once this
    /// returns.
    ///
    /// # Errors
    /// [`ClientError::Server`] with [`ErrorCode::NickTaken`], or the
    /// connection's errors.
    pub async fn nick(&self, nick: &Nickname) -> Result<(), ClientError> {
        let message = ClientMessage::Nick { nick: nick.clone() };
        expect_ok(self.request(message).await?).map(drop)
    }

    /// Lists the members of `room`.
    ///
    /// # Errors
    /// [`ClientError::Server`] with [`ErrorCode::NoSuchRoom`], or the
    /// connection's errors.
    pub async fn who(&self, room: &RoomName) -> Result<Vec<Nickname>, ClientError> {
        match self
            .request(ClientMessage::Who { room: room.clone() })
            .await?
        {
            ServerMessage::Members { members, .. } => Ok(members),
            other => Err(unexpected(&other)),
        }
    }

    /// Lists the rooms that exist, with their member counts.
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, ClientError> {
        match self.request(ClientMessage::Rooms).await? {
            ServerMessage::Rooms { rooms } => Ok(rooms),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks the server for a `pong`: a round trip through the connection.
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.request(ClientMessage::Ping).await? {
            ServerMessage::Pong => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Says `quit` and waits for the server to close. The connection task
    /// then ends, after a last [`Event::Disconnected`], and does not
    /// reconnect. Requests still queued behind the `quit` fail with
    /// [`ClientError::Disconnected`].
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the connection had already ended.
    pub async fn quit(&self, reason: Option<&str>) -> Result<(), ClientError> {
        let message = ClientMessage::Quit {
            reason: reason.map(str::to_owned),
        };
        self.request(message).await.map(drop)
    }
}

/// The id in an `ok`, or the error for another frame.
fn expect_ok(reply: ServerMessage) -> Result<Option<MessageId>, ClientError> {
    match reply {
        ServerMessage::Ok { id, .. } => Ok(id),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(message: &ServerMessage) -> ClientError {
    ClientError::UnexpectedReply {
        kind: connection::kind_of(message),
    }
}
