//! Moderation on the wire: the requests of room owners, room operators and
//! server operators, the event every member sees when one acts, a room's
//! topic, and how the text dialect types them.

use serde::{Deserialize, Serialize};

use super::error::{CommandError, ProtocolError};
use super::{ClientMessage, Nickname, RoomName};

/// What a moderator did, as shown to the room (or, for server-wide
/// actions, to the one it was done to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModAction {
    /// Removed someone from the room.
    Kick,
    /// Banned a mask from the room (or the server).
    Ban,
    /// Lifted a ban.
    Unban,
    /// Made an account a room operator.
    Op,
    /// Took room operator away from an account.
    Deop,
    /// Let an account speak in a moderated room.
    Voice,
    /// Took that away.
    Devoice,
    /// Changed a room mode (`target` says which: `+k`, `-m`, `+l 30`, …).
    Mode,
    /// Invited someone into an invite-only room.
    Invite,
    /// Disconnected someone from the server.
    Kill,
}

/// Someone moderated: sent to every member of the room (and to whom it
/// was done to, when they are no longer in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModEvent {
    /// The room; absent for a server-wide action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomName>,
    /// Who did it.
    pub by: Nickname,
    /// What was done.
    pub action: ModAction,
    /// To whom or what: a nick, a ban mask, a mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The moderator's reason, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ModEvent {
    /// The readable line the text dialect shows, before control
    /// characters are replaced (the caller's renderer does that).
    pub fn render(&self) -> String {
        let by = &self.by;
        let target = self.target.as_deref().unwrap_or("");
        let room = self.room.as_ref().map(|r| format!("#{r}"));
        let place = room.as_deref().unwrap_or("the server");
        let line = match self.action {
            ModAction::Kick => format!("* {by} kicked {target} from {place}"),
            ModAction::Ban => format!("* {by} banned {target} from {place}"),
            ModAction::Unban => format!("* {by} lifted the ban on {target} in {place}"),
            ModAction::Op => format!("* {by} made {target} an operator of {place}"),
            ModAction::Deop => format!("* {by} took operator of {place} from {target}"),
            ModAction::Voice => format!("* {by} gave {target} a voice in {place}"),
            ModAction::Devoice => format!("* {by} took the voice in {place} from {target}"),
            ModAction::Mode => format!("* {by} set {place} {target}"),
            ModAction::Invite => format!("* {by} invited {target} to {place}"),
            ModAction::Kill => format!("* {by} disconnected {target}"),
        };
        match &self.reason {
            Some(reason) => format!("{line} ({reason})"),
            None => line,
        }
    }
}

/// Parses a ban's duration as people type it: `90s`, `10m`, `2h`, `7d`,
/// or bare seconds. Returns seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_lowercase()),
        _ => (s, 's'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&secs| secs > 0)
}

fn usage(text: &'static str) -> ProtocolError {
    CommandError::Usage(text).into()
}

fn reason_of(rest: &str) -> Option<String> {
    let rest = rest.trim();
    (!rest.is_empty()).then(|| rest.to_owned())
}

/// Splits off the first word of `rest`.
fn word(rest: &str) -> (&str, &str) {
    let rest = rest.trim_start();
    match rest.split_once(char::is_whitespace) {
        Some((w, more)) => (w, more.trim_start()),
        None => (rest, ""),
    }
}

fn on_off(word: &str, usage_text: &'static str) -> Result<bool, ProtocolError> {
    match word.to_ascii_lowercase().as_str() {
        "on" | "+" | "yes" | "true" => Ok(true),
        "off" | "-" | "no" | "false" => Ok(false),
        _ => Err(usage(usage_text)),
    }
}

/// A `mode` request that changes nothing but what is given.
fn mode(room: RoomName) -> ClientMessage {
    ClientMessage::Mode {
        room,
        key: None,
        moderated: None,
        invite_only: None,
        limit: None,
    }
}

/// Parses a moderation command of the text dialect: `command` is its
/// lower-cased name, `rest` what follows it, `room` the current room.
/// Returns `None` when `command` is not a moderation command.
pub(super) fn parse(
    command: &str,
    rest: &str,
    room: Option<&RoomName>,
) -> Option<Result<ClientMessage, ProtocolError>> {
    let in_room = || -> Result<RoomName, ProtocolError> {
        room.cloned().ok_or_else(|| CommandError::NoRoom.into())
    };
    let parsed = || -> Result<ClientMessage, ProtocolError> {
        Ok(match command {
            "kick" => {
                let (nick, rest) = word(rest);
                if nick.is_empty() {
                    return Err(usage("/kick NICK [REASON]"));
                }
                ClientMessage::Kick {
                    room: in_room()?,
                    nick: Nickname::new(nick)?,
                    reason: reason_of(rest),
                }
            }
            "ban" | "gban" => {
                let (mask, rest) = word(rest);
                if mask.is_empty() {
                    return Err(usage("/ban NICK|MASK [DURATION] [REASON]"));
                }
                let (first, after) = word(rest);
                let (duration_secs, rest) = match parse_duration(first) {
                    Some(secs) => (Some(secs), after),
                    None => (None, rest),
                };
                ClientMessage::Ban {
                    room: if command == "gban" {
                        None
                    } else {
                        Some(in_room()?)
                    },
                    mask: mask.to_owned(),
                    duration_secs,
                    reason: reason_of(rest),
                }
            }
            "unban" | "ungban" => {
                let (mask, _) = word(rest);
                if mask.is_empty() {
                    return Err(usage("/unban MASK"));
                }
                ClientMessage::Unban {
                    room: if command == "ungban" {
                        None
                    } else {
                        Some(in_room()?)
                    },
                    mask: mask.to_owned(),
                }
            }
            "topic" => ClientMessage::Topic {
                room: in_room()?,
                topic: reason_of(rest),
            },
            "op" | "deop" | "voice" | "devoice" => {
                let (nick, _) = word(rest);
                if nick.is_empty() {
                    return Err(usage("/op|/deop|/voice|/devoice ACCOUNT"));
                }
                let (room, nick) = (in_room()?, Nickname::new(nick)?);
                match command {
                    "op" => ClientMessage::Op { room, nick },
                    "deop" => ClientMessage::Deop { room, nick },
                    "voice" => ClientMessage::Voice { room, nick },
                    _ => ClientMessage::Devoice { room, nick },
                }
            }
            "key" => {
                let (key, _) = word(rest);
                let mut m = mode(in_room()?);
                if let ClientMessage::Mode { key: k, .. } = &mut m {
                    *k = Some(if key == "-" {
                        String::new()
                    } else {
                        key.to_owned()
                    });
                }
                m
            }
            "moderated" | "inviteonly" => {
                let text = if command == "moderated" {
                    "/moderated on|off"
                } else {
                    "/inviteonly on|off"
                };
                let on = on_off(word(rest).0, text)?;
                let mut m = mode(in_room()?);
                if let ClientMessage::Mode {
                    moderated,
                    invite_only,
                    ..
                } = &mut m
                {
                    *(if command == "moderated" {
                        moderated
                    } else {
                        invite_only
                    }) = Some(on);
                }
                m
            }
            "limit" => {
                let n = word(rest)
                    .0
                    .parse::<u32>()
                    .map_err(|_| usage("/limit N (0: no limit)"))?;
                let mut m = mode(in_room()?);
                if let ClientMessage::Mode { limit, .. } = &mut m {
                    *limit = Some(n);
                }
                m
            }
            "invite" => {
                let (nick, _) = word(rest);
                if nick.is_empty() {
                    return Err(usage("/invite NICK"));
                }
                ClientMessage::Invite {
                    room: in_room()?,
                    nick: Nickname::new(nick)?,
                }
            }
            "kill" => {
                let (nick, rest) = word(rest);
                if nick.is_empty() {
                    return Err(usage("/kill NICK [REASON]"));
                }
                ClientMessage::Kill {
                    nick: Nickname::new(nick)?,
                    reason: reason_of(rest),
                }
            }
            "modlog" => {
                let (n, _) = word(rest);
                let limit = if n.is_empty() {
                    None
                } else {
                    Some(n.parse::<u32>().map_err(|_| usage("/modlog [N]"))?)
                };
                ClientMessage::ModLog { limit }
            }
            _ => return Err(usage("")),
        })
    };
    const COMMANDS: &[&str] = &[
        "kick",
        "ban",
        "gban",
        "unban",
        "ungban",
        "topic",
        "op",
        "deop",
        "voice",
        "devoice",
        "key",
        "moderated",
        "inviteonly",
        "limit",
        "invite",
        "kill",
        "modlog",
    ];
    COMMANDS.contains(&command).then(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("2H"), Some(7200));
        assert_eq!(parse_duration("7d"), Some(604_800));
        for bad in ["", "m", "0", "1x", "-5m", "spam", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
