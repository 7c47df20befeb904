//! The [`Client`] handle: connecting, and one method per request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::protocol::{
    self, ClientMessage, MessageId, Nickname, RoomInfo, RoomName, ServerMessage,
};
use crate::transport::{Connector, TcpConnector};

// Named only in doc links.
#[cfg(doc)]
use super::event::Event;
#[cfg(doc)]
use crate::protocol::ErrorCode;

use super::command::Command;
use super::connection::Task;
use super::error::ClientError;
use super::event::Events;
use super::handshake::handshake;
use super::options::ClientOptions;
use super::reply::{expect_ok, unexpected};
use super::shared::Shared;

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
            match handshake(connector, options.nick.as_ref(), options.connect_timeout).await {
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
        let task = Task::new(connectors, index, options, cmd_rx, ev_tx, shared);
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
