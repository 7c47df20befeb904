//! Whether a session may join a room (bans, key, invitations, limit), and
//! what joining a room brings: ownership of an ownerless empty one, and
//! its topic.

use crate::protocol::{ErrorCode, RoomName, ServerMessage};
use crate::registry::now_ms;

use super::super::moderation::{Ban, SERVER};
use super::reply::Failure;
use super::state::Session;

fn banned(place: &str, ban: &Ban) -> Failure {
    let mut message = format!("you are banned from {place}");
    if let Some(reason) = &ban.reason {
        message.push_str(&format!(": {reason}"));
    }
    Failure::new(ErrorCode::Banned, message)
}

impl Session {
    /// Checks the server's and `room`'s rules for this session; `members`
    /// is how many the room has now.
    pub(super) fn may_join(
        &self,
        room: &RoomName,
        key: Option<&str>,
        members: usize,
    ) -> Result<(), Failure> {
        let moderation = &self.shared.moderation;
        let actor = self.actor();
        let now = now_ms();
        if let Some(ban) = moderation.server_ban(&actor, now) {
            return Err(banned("this server", &ban));
        }
        if moderation.is_server_operator(actor.account) {
            return Ok(());
        }
        let rules = moderation.rules(&room.key());
        // A room's operators are never locked out of it by its own rules.
        if rules.is_operator(actor.account) {
            return Ok(());
        }
        if let Some(ban) = rules.ban_on(&actor, now) {
            return Err(banned(&format!("#{room}"), ban));
        }
        if let Some(wanted) = &rules.key
            && key != Some(wanted.as_str())
        {
            return Err(Failure::new(
                ErrorCode::BadKey,
                format!("#{room} needs its key: /join {room} KEY"),
            ));
        }
        if rules.invite_only && !rules.is_invited(&actor) {
            return Err(Failure::new(
                ErrorCode::InviteOnly,
                format!("#{room} is invite-only"),
            ));
        }
        if let Some(limit) = rules.limit
            && members >= limit as usize
        {
            return Err(Failure::new(
                ErrorCode::RoomFull,
                format!("#{room} is full ({limit} members)"),
            ));
        }
        Ok(())
    }

    /// Ownership and topic, once this session is in `room`, which had
    /// `before` members.
    pub(super) async fn after_join(&mut self, room: &RoomName, before: usize) {
        let moderation = &self.shared.moderation;
        let rules = moderation.rules(&room.key());
        if before == 0
            && rules.owner.is_none()
            && room.key() != SERVER
            && let Some(account) = self.account.clone()
        {
            let encoded = moderation.update(&room.key(), |r| {
                r.owner.get_or_insert_with(|| account.key());
            });
            self.reply(
                ServerMessage::Notice {
                    text: format!("* you own #{room}: /op ACCOUNT makes operators"),
                },
                None,
            );
            self.record(
                &room.key(),
                Some(encoded),
                room.as_str(),
                format!("owner {account}"),
            )
            .await;
        }
        if let Some(topic) = rules.topic {
            self.reply(
                ServerMessage::Topic {
                    room: room.clone(),
                    topic,
                    by: rules.topic_by,
                },
                None,
            );
        }
    }
}
