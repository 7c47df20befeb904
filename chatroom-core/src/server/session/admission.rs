//! Whether a session may join a room (bans, key, invitations, limit), and
//! what joining a room brings: ownership of an ownerless empty one, and
//! its topic.

use crate::protocol::{RoomName, ServerMessage};

use super::super::moderation::SERVER;
use super::reply::Failure;
use super::state::Session;

impl Session {
    /// Checks the server's and `room`'s rules for this session; `members`
    /// is how many the room has now.
    pub(super) fn may_join(
        &self,
        room: &RoomName,
        key: Option<&str>,
        members: usize,
    ) -> Result<(), Failure> {
        self.shared
            .moderation
            .admit(room, &self.actor(), key, members)
            .map_err(|r| Failure::new(r.code, r.message))
    }

    /// Ownership and topic, once this session is in `room`, which had
    /// `before` members.
    pub(super) async fn after_join(&mut self, room: &RoomName, before: usize) {
        self.claim(room, before).await;
        let rules = self.shared.moderation.rules(&room.key());
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

    /// Makes this session's account the owner of `room`, which it just
    /// joined and which had `before` members, if it was empty and had no
    /// owner.
    pub(super) async fn claim(&mut self, room: &RoomName, before: usize) {
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
    }
}
