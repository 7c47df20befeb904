//! The rest of moderation: granting roles (op, voice), room modes,
//! invitations, and the server operators' kill and moderation log.

use crate::protocol::{
    self, ClientMessage, ErrorCode, ModAction, Nickname, RoomName, ServerMessage,
};

use super::reply::Failure;
use super::state::{Flow, Session};

/// Lines of the moderation log sent when no limit is asked for, and most.
const LOG_DEFAULT: u32 = 20;
const LOG_MAX: u32 = 500;

impl Session {
    pub(super) async fn moderate_more(
        &mut self,
        message: ClientMessage,
        reference: Option<String>,
    ) -> Result<Flow, Failure> {
        match message {
            ClientMessage::Op { room, nick } => self.grant(room, nick, ModAction::Op).await?,
            ClientMessage::Deop { room, nick } => self.grant(room, nick, ModAction::Deop).await?,
            ClientMessage::Voice { room, nick } => self.grant(room, nick, ModAction::Voice).await?,
            ClientMessage::Devoice { room, nick } => {
                self.grant(room, nick, ModAction::Devoice).await?;
            }
            ClientMessage::Mode {
                room,
                key,
                moderated,
                invite_only,
                limit,
            } => {
                self.require_operator(&room)?;
                let mut changes = Vec::new();
                let encoded = self.shared.moderation.update(&room.key(), |rules| {
                    if let Some(key) = key {
                        changes.push(if key.is_empty() { "-k" } else { "+k" }.to_owned());
                        rules.key = (!key.is_empty()).then_some(key);
                    }
                    if let Some(on) = moderated {
                        changes.push(if on { "+m" } else { "-m" }.to_owned());
                        rules.moderated = on;
                    }
                    if let Some(on) = invite_only {
                        changes.push(if on { "+i" } else { "-i" }.to_owned());
                        rules.invite_only = on;
                    }
                    if let Some(n) = limit {
                        changes.push(if n == 0 {
                            "-l".to_owned()
                        } else {
                            format!("+l {n}")
                        });
                        rules.limit = (n > 0).then_some(n);
                    }
                });
                self.announce(&room, ModAction::Mode, changes.join(" "), encoded)
                    .await;
            }
            ClientMessage::Invite { room, nick } => {
                self.require_operator(&room)?;
                let encoded = self.shared.moderation.update(&room.key(), |rules| {
                    rules.invited.insert(nick.key());
                });
                self.announce(&room, ModAction::Invite, nick.to_string(), encoded)
                    .await;
            }
            ClientMessage::Kill { nick, reason } => {
                self.require_server_operator()?;
                // The reason is shown to the one disconnected, in every
                // dialect: it obeys the rules of message text.
                if let Some(reason) = &reason {
                    protocol::validate_text(reason)?;
                }
                // In a cluster the nick may be held on another node, which
                // the bulletin reaches; only one node alone knows it is
                // held nowhere.
                if !self.kill_anywhere(&nick, reason.clone())
                    && self.shared.broker.is_connected().is_none()
                {
                    return Err(Failure::new(
                        ErrorCode::NoSuchNick,
                        format!("no user {nick} on this server"),
                    ));
                }
                let action = format!("kill {nick} {}", reason.unwrap_or_default());
                self.record("*", None, "*", action).await;
            }
            ClientMessage::ModLog { limit } => {
                self.require_server_operator()?;
                let limit = limit.unwrap_or(LOG_DEFAULT).min(LOG_MAX) as usize;
                let store = self.shared.accounts.store().clone();
                let lines = tokio::task::spawn_blocking(move || store.read_log(limit))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or_else(|| Failure::new(ErrorCode::Internal, "cannot read the log"))?;
                let mut text = format!("* moderation log: {} line(s)", lines.len());
                for line in lines {
                    let room = if line.room == "*" {
                        "server".to_owned()
                    } else {
                        format!("#{}", line.room)
                    };
                    text.push_str(&format!(
                        "\n{} {} in {room}: {}",
                        line.ts,
                        line.by,
                        line.action.trim()
                    ));
                }
                self.reply(ServerMessage::Notice { text }, reference);
                return Ok(Flow::Continue);
            }
            _ => {
                return Err(Failure::new(
                    ErrorCode::Unsupported,
                    "not a moderation request",
                ));
            }
        }
        self.ok(reference);
        Ok(Flow::Continue)
    }

    /// Op and deop (the room's owner), voice and devoice (its operators).
    async fn grant(
        &mut self,
        room: RoomName,
        nick: Nickname,
        action: ModAction,
    ) -> Result<(), Failure> {
        let moderation = &self.shared.moderation;
        let actor = self.actor();
        let ops = matches!(action, ModAction::Op | ModAction::Deop);
        if ops {
            if !moderation.is_owner(&room, &actor) {
                return Err(Failure::new(
                    ErrorCode::NotPermitted,
                    format!("only the owner of #{room} may do that"),
                ));
            }
            if !self.shared.accounts.is_registered(&nick) {
                return Err(Failure::new(
                    ErrorCode::NoSuchNick,
                    format!("{nick} is no registered account; operators are accounts"),
                ));
            }
        } else {
            self.require_operator(&room)?;
        }
        let key = nick.key();
        let encoded = moderation.update(&room.key(), |rules| {
            let set = if ops {
                &mut rules.operators
            } else {
                &mut rules.voiced
            };
            if matches!(action, ModAction::Op | ModAction::Voice) {
                set.insert(key);
            } else {
                set.remove(&key);
            }
        });
        self.announce(&room, action, nick.to_string(), encoded)
            .await;
        Ok(())
    }
}
