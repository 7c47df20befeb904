//! A registered IRC connection: its state, its loop, and how it ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::protocol::irc::{IrcError, Line, parse};
use crate::protocol::{MessageId, Nickname, ServerMessage};
use crate::registry::{Outbound, Outbox, Room, SessionId};
use crate::transport::Frame;

pub(super) use super::super::end::End;
use super::super::moderation::Actor;
use super::super::rate::TokenBucket;
use super::super::rooms::Member;
use super::super::shared::Shared;
use super::conn::{Reader, WriterTask};
use super::names::{Caps, Names};
use super::register::Registered;
use super::reply::{self, Numerics};

/// A registered IRC session.
pub(super) struct IrcSession {
    pub(super) shared: Arc<Shared>,
    pub(super) names: Names,
    pub(super) id: SessionId,
    pub(super) nick: Nickname,
    pub(super) caps: Caps,
    /// The session's queue; the rooms hold clones, the writer the other end.
    pub(super) outbox: Outbox,
    /// The rooms joined, by folded name.
    pub(super) rooms: HashMap<String, Arc<Room>>,
    /// The same message rate as every other dialect's connection.
    pub(super) rate: TokenBucket,
    /// The `AWAY` message, shown to whoever asks with `WHOIS`.
    pub(super) away: Option<String>,
    /// The number of the last batch opened, for unique batch ids.
    batches: u64,
    last_heard: Instant,
    pinged: bool,
    /// The account logged in to at registration, if any.
    pub(super) account: Option<Nickname>,
    /// The peer's address, for address bans.
    pub(super) peer_ip: Option<std::net::IpAddr>,
    /// The moderation evictions count this session last looked at.
    pub(super) evictions_seen: u64,
}

impl IrcSession {
    pub(super) fn new(shared: &Arc<Shared>, names: Names, registered: &Registered) -> Self {
        let limits = &shared.limits;
        let now = Instant::now();
        Self {
            shared: shared.clone(),
            names,
            id: registered.id,
            nick: registered.nick.clone(),
            caps: registered.caps,
            outbox: registered.outbox.clone(),
            rooms: HashMap::new(),
            rate: TokenBucket::new(limits.rate_per_sec, limits.rate_burst, now),
            away: None,
            batches: 0,
            last_heard: now,
            pinged: false,
            account: None,
            peer_ip: None,
            evictions_seen: shared.moderation.evictions(),
        }
    }

    /// This session as bans and permissions see it.
    pub(super) fn actor(&self) -> Actor<'_> {
        Actor {
            nick: &self.nick,
            account: self.account.as_ref(),
            ip: self.peer_ip,
        }
    }

    /// Forgets the rooms a moderator removed this session from.
    pub(super) fn collect_evictions(&mut self) {
        let moderation = &self.shared.moderation;
        let seen = moderation.evictions();
        if seen != self.evictions_seen {
            self.evictions_seen = seen;
            for key in moderation.take_evictions(self.id) {
                self.rooms.remove(&key);
            }
        }
    }

    /// This session as the rooms know it.
    pub(super) fn member(&self) -> Member<'_> {
        Member {
            id: self.id,
            nick: &self.nick,
            outbox: &self.outbox,
        }
    }

    /// Numerics addressed to this client.
    pub(super) fn numerics(&self) -> Numerics<'_> {
        Numerics {
            names: &self.names,
            me: self.nick.as_str(),
        }
    }

    /// Queues lines for this client, in order with its room traffic.
    pub(super) fn send(&self, lines: String) {
        reply::send(&self.outbox, lines);
    }

    /// A batch id not used before on this connection.
    pub(super) fn next_batch(&mut self) -> String {
        self.batches += 1;
        format!("h{}", self.batches)
    }

    /// Queues a frame every dialect knows (`bye`, say).
    pub(super) fn push(&self, message: ServerMessage) {
        let _ = self.outbox.push(&Outbound::message(message));
    }

    /// `001` to `005` and the missing MOTD: what a client waits for before
    /// it joins anything.
    pub(super) fn greet(&self) {
        let n = self.numerics();
        let server = self.names.server();
        let version = concat!("chatroom-", env!("CARGO_PKG_VERSION"));
        let limits = &self.shared.limits;
        let isupport = format!(
            "CASEMAPPING=ascii CHANTYPES=# CHANNELLEN={} NICKLEN={} LINELEN={} \
             CHANLIMIT=#:{} NETWORK={server} PREFIX=(ov)@+ CHANMODES=b,k,l,im \
             CHATHISTORY={} MSGREFTYPES=msgid",
            crate::protocol::MAX_ROOM_LEN + 1,
            crate::protocol::MAX_NICK_LEN,
            crate::protocol::irc::MAX_LINE_LEN,
            limits.max_rooms,
            limits.history_page_max,
        );
        let mut lines = n.text(
            "001",
            &format!(
                "Welcome to the {server} chat, {}",
                self.names.user(self.nick.as_str())
            ),
        );
        lines += &n.text(
            "002",
            &format!("Your host is {server}, running version {version}"),
        );
        lines += &n.text("003", "This server speaks IRC as one of its dialects");
        lines += &n
            .start("004")
            .param(server)
            .param(version)
            .param("i")
            .param("bikmlov")
            .param("bklov")
            .end();
        let mut isupport_line = n.start("005");
        for token in isupport.split(' ') {
            isupport_line = isupport_line.param(token);
        }
        lines += &isupport_line.trailing("are supported by this server");
        lines += &n.text("422", "MOTD File is missing");
        self.send(lines);
    }

    pub(super) async fn run(
        &mut self,
        reader: &mut Reader,
        writer: &mut WriterTask,
        shutdown: &CancellationToken,
    ) -> End {
        loop {
            let deadline = self.next_deadline();
            let ended = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.push(ServerMessage::Bye { reason: "server shutting down".to_owned() });
                    return End::Shutdown;
                }
                ended = &mut writer.0 => return End::from_writer(ended),
                item = reader.next() => match item {
                    None => Some(End::PeerClosed),
                    Some(Err(e)) => Some(End::ReadFailed(e)),
                    Some(Ok(frame)) => self.on_frame(frame, shutdown).await,
                },
                () = self.outbox.behind() => {
                    self.on_behind().await;
                    if self.outbox.is_closed() {
                        // Cut off, or the writer is gone: nothing more can
                        // be sent, and rooms may go on waking this session
                        // until it leaves them. The writer says why once it
                        // has ended; until then this task must not spin on
                        // those wake-ups (it would hold a worker thread the
                        // writer needs).
                        return End::from_writer((&mut writer.0).await);
                    }
                    // A catch-up can finish without waiting; let the other
                    // tasks on this worker run before the next wake-up.
                    tokio::task::yield_now().await;
                    None
                }
                _ = tokio::time::sleep_until(deadline) => self.on_silence(),
            };
            if let Some(end) = ended {
                return end;
            }
        }
    }

    /// A `PING` once the client has been quiet for the ping interval, then
    /// the cut-off if it stays quiet for the idle timeout.
    fn next_deadline(&self) -> Instant {
        let limits = &self.shared.limits;
        if self.pinged {
            self.last_heard + limits.idle_timeout
        } else {
            self.last_heard + limits.ping_interval
        }
    }

    fn on_silence(&mut self) -> Option<End> {
        if Instant::now() < self.next_deadline() {
            return None;
        }
        if !self.pinged {
            self.pinged = true;
            let server = self.names.server();
            self.send(Line::new(server, "PING").trailing(server));
            return None;
        }
        self.push(ServerMessage::Bye {
            reason: "ping timeout".to_owned(),
        });
        Some(End::PingTimeout)
    }

    async fn on_frame(&mut self, frame: Frame, shutdown: &CancellationToken) -> Option<End> {
        self.last_heard = Instant::now();
        self.pinged = false;
        let line = match frame {
            Frame::Line(line) => line,
            Frame::TooLong { .. } => {
                self.pace(shutdown).await;
                self.send(self.numerics().text("417", "Input line was too long"));
                return None;
            }
        };
        let message = match parse(&line) {
            Ok(message) => message,
            Err(IrcError::Empty) => return None,
            Err(e) => {
                self.pace(shutdown).await;
                let reply = match e {
                    IrcError::TooLong { .. } | IrcError::TagsTooLong { .. } => {
                        self.numerics().text("417", "Input line was too long")
                    }
                    other => self.notice(&other.to_string()),
                };
                self.send(reply);
                return None;
            }
        };
        // Liveness costs no rate; everything else does.
        if !matches!(message.command.as_str(), "PING" | "PONG") {
            self.pace(shutdown).await;
        }
        self.dispatch(&message).await
    }

    /// Waits for a rate token. IRC clients expect a server to slow a
    /// flood down rather than drop lines, so the connection's lines wait
    /// (and, unread, slow the client through TCP) instead of being refused.
    async fn pace(&mut self, shutdown: &CancellationToken) {
        let per_sec = self.shared.limits.rate_per_sec.max(0.001);
        let step = Duration::from_secs_f64((1.0 / per_sec).min(60.0));
        while !self.rate.try_take(Instant::now()) {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(step) => {}
            }
        }
    }

    /// A server notice to this client.
    pub(super) fn notice(&self, text: &str) -> String {
        Line::new(self.names.server(), "NOTICE")
            .param(self.nick.as_str())
            .trailing(text)
    }

    /// Catches the client up in every room that held traffic back from it.
    async fn on_behind(&mut self) {
        let behind: Vec<(Arc<Room>, MessageId)> = self
            .rooms
            .values()
            .filter_map(|room| Some((room.clone(), room.behind(self.id)?)))
            .collect();
        for (room, after) in behind {
            // As in the other dialects, the client is told what follows,
            // once its queue has room: waiting for that paces the catch-up
            // to what the client reads.
            let last = room.last_id();
            if last > after {
                let lagged = Outbound::message(ServerMessage::Lagged {
                    room: room.name().clone(),
                    first: after + 1,
                    last,
                });
                if self.outbox.push_paced(&lagged).await.is_err() {
                    return;
                }
            }
            if let Err(e) = self
                .shared
                .rooms
                .catch_up(self.member(), &room, after)
                .await
            {
                if self.outbox.is_closed() {
                    return;
                }
                self.send(self.notice(&e.to_string()));
            }
        }
    }

    /// Leaves every room (telling the others why) and frees the nick.
    pub(super) fn finish(self, end: &End) {
        let reason = match end {
            End::Quit(Some(reason)) => reason.clone(),
            other => other.to_string(),
        };
        let silently = matches!(end, End::Shutdown);
        self.shared.moderation.gone(self.id);
        self.shared.irc_away.leave(&self.nick, self.id);
        self.shared.rooms.depart(
            self.id,
            &self.nick,
            self.rooms.values(),
            Some(reason),
            silently,
        );
    }
}
