//! A registered session's requests: one function per kind, each answered
//! in the order it came.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::time::Instant;

use crate::protocol::{
    self, ClientFrame, ClientMessage, ErrorCode, MessageId, Nickname, RoomName, ServerFrame,
    ServerMessage,
};

use futures::future::BoxFuture;

use crate::broker::{BrokerError, Pending};
use crate::registry::{Outbound, Published, RegistryError};
use crate::transport::Frame;

use super::super::rooms::Since;
use super::super::writer::Dialect;
use super::reply::{Failure, bye, error, ref_of_bad_frame};
use super::says::SayDone;
use super::state::{End, Flow, Session};

impl Session {
    /// Handles one frame from the peer.
    pub(super) async fn on_frame(&mut self, frame: Frame) -> Flow {
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
        let frame: ClientFrame = match protocol::decode_client(line) {
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

    /// Rate-limits and serves one request, answering errors.
    pub(super) async fn request(
        &mut self,
        message: ClientMessage,
        reference: Option<String>,
    ) -> Flow {
        self.collect_evictions();
        // Whatever else this session does comes after its `say`s.
        if !matches!(message, ClientMessage::Say { .. }) {
            self.end_run();
        }
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

    async fn dispatch(
        &mut self,
        message: ClientMessage,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        match message {
            ClientMessage::Hello { .. } => Err(Failure::new(
                ErrorCode::HandshakeRequired,
                "hello was already said",
            )),
            ClientMessage::Join {
                room,
                history,
                after,
                key,
            } => {
                let since = after.map_or(Since::Recent(history), Since::After);
                self.on_join(room, since, key, reference).await
            }
            ClientMessage::Leave { room } => self.on_leave(room, reference),
            ClientMessage::Say { room, text, action } => {
                self.on_say(room, text, action, reference).await
            }
            ClientMessage::Whisper { to, text } => self.on_whisper(to, text, reference).await,
            ClientMessage::Nick { nick } => self.on_nick(nick, reference).await,
            ClientMessage::Rooms => {
                let rooms = self.shared.rooms.list();
                self.reply(ServerMessage::Rooms { rooms }, reference);
                Ok(Flow::Continue)
            }
            ClientMessage::Who { room } => {
                let members = self.shared.rooms.members(&room)?;
                let last_id = None;
                self.reply(
                    ServerMessage::Members {
                        room,
                        members,
                        last_id,
                    },
                    reference,
                );
                Ok(Flow::Continue)
            }
            ClientMessage::History {
                room,
                before,
                after,
                limit,
            } => {
                let page = self
                    .shared
                    .rooms
                    .history_page(&room, before, after, limit)
                    .await?;
                self.reply(
                    ServerMessage::History {
                        room,
                        messages: page.messages,
                        more: page.more,
                    },
                    reference,
                );
                Ok(Flow::Continue)
            }
            ClientMessage::Ping => {
                self.reply(ServerMessage::Pong, reference);
                Ok(Flow::Continue)
            }
            ClientMessage::Pong => Ok(Flow::Continue),
            ClientMessage::Quit { reason } => Ok(self.on_quit(reason, reference)),
            ClientMessage::Register { password } => self.on_register(password, reference).await,
            ClientMessage::Login { nick, password } => {
                self.on_login(nick, password, reference).await
            }
            ClientMessage::SetPassword { old, new } => {
                self.on_set_password(old, new, reference).await
            }
            ClientMessage::DropAccount { password } => {
                self.on_drop_account(password, reference).await
            }
            other => self.moderate(other, reference).await,
        }
    }

    async fn on_join(
        &mut self,
        room: RoomName,
        since: Since,
        key: Option<String>,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        self.join_keyed(&room, since, key.as_deref()).await?;
        let members = self.shared.rooms.members(&room)?;
        // Read after the join: every message up to this id is already
        // queued ahead of this reply.
        let last_id = self.rooms.get(&room.key()).map(|r| r.last_id());
        self.reply(
            ServerMessage::Members {
                room,
                members,
                last_id,
            },
            reference,
        );
        Ok(Flow::Continue)
    }

    fn on_leave(&mut self, room: RoomName, reference: Option<String>) -> Result<Flow, Failure> {
        self.leave(&room)?;
        self.reply(
            ServerMessage::Ok {
                room: Some(room),
                id: None,
            },
            reference,
        );
        Ok(Flow::Continue)
    }

    async fn on_say(
        &mut self,
        room: RoomName,
        text: String,
        action: bool,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        protocol::validate_text(&text)?;
        let handle = self
            .rooms
            .get(&room.key())
            .ok_or(RegistryError::NotInRoom(room))?;
        if !self
            .shared
            .moderation
            .may_speak(handle.name(), &self.actor())
        {
            return Err(Failure::new(
                ErrorCode::Moderated,
                format!(
                    "#{} is moderated: only operators and voiced users speak",
                    handle.name()
                ),
            ));
        }
        let handle = handle.clone();
        // A `say` with another line already read behind it is held in the
        // room for the run (Room::publish_held); the run ends with a `say`
        // that has none, or with anything else.
        if self
            .held
            .as_ref()
            .is_some_and(|held| !std::sync::Arc::ptr_eq(held, &handle))
        {
            self.end_run();
        }
        let hold = self.more_read && self.says.is_empty();
        // Nobody gets their own line back, as in the seed: a native client
        // learns the id from the `ok`, which the broker returns once the
        // message is committed.
        let pending = self
            .shared
            .rooms
            .say(&handle, self.member(), text, action, hold);
        self.held = hold.then(|| handle.clone());
        self.held_says += u64::from(hold);
        let room = handle.name().clone();
        Ok(self.send_say(pending, room, reference).await)
    }

    async fn on_whisper(
        &mut self,
        to: Nickname,
        text: String,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        protocol::validate_text(&text)?;
        self.shared.rooms.whisper(self.member(), &to, text).await?;
        self.ok(reference);
        Ok(Flow::Continue)
    }

    async fn on_nick(
        &mut self,
        nick: Nickname,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        self.shared.accounts.may_use(&nick, self.account.as_ref())?;
        self.shared.rooms.rename(self.id, &self.nick, &nick).await?;
        self.nick = nick;
        self.ok(reference);
        Ok(Flow::Continue)
    }

    fn on_quit(&mut self, reason: Option<String>, reference: Option<String>) -> Flow {
        // The reason goes to every room the client was in, so it obeys the
        // rules of message text; a bad one is dropped.
        let reason = reason.filter(|r| protocol::validate_text(r).is_ok());
        self.reply(
            ServerMessage::Bye {
                reason: "quit".to_owned(),
            },
            reference,
        );
        Flow::Close(End::Quit(reason))
    }

    /// Joins `room` and keeps its handle, so `say` takes only the room's
    /// lock.
    pub(super) async fn join(&mut self, room: &RoomName, since: Since) -> Result<(), Failure> {
        self.join_keyed(room, since, None).await
    }

    /// [`Session::join`] with the key the client gave, past the room's
    /// bans and modes; the first logged-in user of an ownerless empty
    /// room becomes its owner, and a room's topic is shown on joining.
    pub(super) async fn join_keyed(
        &mut self,
        room: &RoomName,
        since: Since,
        key: Option<&str>,
    ) -> Result<(), Failure> {
        self.collect_evictions();
        let already = self.rooms.contains_key(&room.key());
        let before = if already {
            0
        } else {
            self.shared.rooms.members(room).map_or(0, |m| m.len())
        };
        if !already {
            self.may_join(room, key, before)?;
        }
        let handle = self.shared.rooms.join(self.member(), room, since).await?;
        if self.rooms.insert(room.key(), handle).is_none() {
            self.shared.metrics.joined(1);
            self.after_join(room, before).await;
        }
        Ok(())
    }

    pub(super) fn leave(&mut self, room: &RoomName) -> Result<(), Failure> {
        let Some(handle) = self.rooms.get(&room.key()) else {
            return Err(RegistryError::NotInRoom(room.clone()).into());
        };
        self.shared.rooms.leave(self.member(), handle)?;
        self.rooms.remove(&room.key());
        self.shared.metrics.left(1);
        if self.current.as_ref().is_some_and(|c| c.key() == room.key()) {
            self.current = None;
        }
        Ok(())
    }

    /// Rejoins the rooms of a `hello`'s resume cursors, each with exactly
    /// the messages after its cursor. A bad cursor is answered with an error
    /// and skipped; the others still resume.
    pub(super) async fn resume(
        &mut self,
        cursors: BTreeMap<RoomName, MessageId>,
        reference: Option<String>,
    ) {
        for (room, cursor) in cursors {
            if let Err(mut failure) = self.join(&room, Since::Resume(cursor)).await {
                // One `hello` may carry many cursors and its errors share
                // its ref, so each names its room first.
                let prefix = format!("#{room}: ");
                if !failure.message.starts_with(&prefix) {
                    failure.message.insert_str(0, &prefix);
                }
                self.fail(failure, reference.clone());
            }
        }
    }

    pub(super) fn take_rate_token(&mut self) -> bool {
        self.retune();
        self.rate.try_take(Instant::now())
    }

    pub(super) fn rate_limited(&mut self, reference: Option<String>) -> Flow {
        self.shared.metrics.rate_limited();
        self.reject(
            Failure::new(
                ErrorCode::RateLimited,
                "you are sending too fast; message dropped",
            ),
            reference,
        )
    }

    /// [`Session::reject`], after the `say`s in flight are answered, so
    /// that the error keeps its place among the replies.
    pub(super) async fn reject_in_order(
        &mut self,
        failure: Failure,
        reference: Option<String>,
    ) -> Flow {
        match self.drain_says().await {
            Flow::Continue => self.reject(failure, reference),
            close => close,
        }
    }

    pub(super) fn reply(&self, message: ServerMessage, reference: Option<String>) {
        let frame = Outbound::new(ServerFrame::reply(message, reference));
        // A text client is not shown every answer (an `ok` is not): one it
        // is not shown takes no slot in its queue, or a person pasting a
        // few thousand lines would fill the queue with answers nobody reads
        // and be cut off as too slow. (The rendering is kept on the frame
        // for the writer.)
        if self.dialect == Dialect::Text && frame.text().is_none() {
            return;
        }
        // A failed push means the queue overflowed or the writer is gone;
        // the cut-off ends the session.
        let _ = self.outbox.push(&frame);
    }

    pub(super) fn ok(&self, reference: Option<String>) {
        self.reply(
            ServerMessage::Ok {
                room: None,
                id: None,
            },
            reference,
        );
    }

    pub(super) fn fail(&self, failure: Failure, reference: Option<String>) {
        error(&self.outbox, failure, reference);
    }

    /// Answers a failed request, and closes the connection once the client
    /// has used up its allowance of errors.
    pub(super) fn reject(&mut self, failure: Failure, reference: Option<String>) -> Flow {
        self.fail(failure, reference);
        self.retune();
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

    /// Sends a `say` on its way: answered now when nothing waits before
    /// it, else queued behind the others.
    pub(super) async fn send_say(
        &mut self,
        pending: Pending<Result<Published, BrokerError>>,
        room: RoomName,
        reference: Option<String>,
    ) -> Flow {
        match pending {
            Pending::Ready(Some(outcome)) if self.says.is_empty() => {
                self.on_said((outcome, room, reference))
            }
            pending => {
                let said = async move { (pending.await, room, reference) };
                self.queue_say(Box::pin(said)).await
            }
        }
    }

    async fn queue_say(&mut self, said: BoxFuture<'static, SayDone>) -> Flow {
        if self.says.is_full()
            && let Some(oldest) = self.says.oldest().await
            && let Flow::Close(end) = self.on_said(oldest)
        {
            return Flow::Close(end);
        }
        self.says.push(said);
        Flow::Continue
    }

    /// Answers a `say` the broker is done with.
    pub(super) fn on_said(&mut self, (outcome, room, reference): SayDone) -> Flow {
        match outcome {
            Ok(published) => {
                self.shared
                    .metrics
                    .published(published.delivered, published.slow);
                self.reply(
                    ServerMessage::Ok {
                        room: Some(room),
                        id: Some(published.id),
                    },
                    reference,
                );
                Flow::Continue
            }
            Err(e) => {
                self.shared.metrics.publish_failed();
                self.reject(e.into(), reference)
            }
        }
    }

    /// Waits for every `say` in flight and answers each, in order.
    pub(super) async fn drain_says(&mut self) -> Flow {
        while let Some(done) = self.says.oldest().await {
            if let Flow::Close(end) = self.on_said(done) {
                return Flow::Close(end);
            }
        }
        Flow::Continue
    }
}
