//! Moderation as IRC shows it: ban masks in IRC's forms, and the room's
//! `moderated` events (from a moderator of any dialect) as the `KICK` and
//! `MODE` lines IRC clients keep their channel state by.

use std::net::IpAddr;

use crate::protocol::irc::Line;
use crate::protocol::{ModAction, ModEvent, Nickname};

use super::names::Names;

/// A ban mask as an IRC client gives it, in the form moderation takes:
/// `nick!*@*` bans the nick, `*!*@ADDRESS` the address, `$a:NAME` the
/// account (the usual extban); a bare nick or a mask already in the
/// server's own form (`nick:`, `address:`, `account:`) passes as it is.
pub(super) fn mask_in(irc: &str) -> String {
    if let Some(account) = irc.strip_prefix("$a:") {
        return format!("account:{account}");
    }
    let Some((nick, rest)) = irc.split_once('!') else {
        return irc.to_owned();
    };
    let host = rest.rsplit_once('@').map_or("*", |(_, host)| host);
    if nick == "*" {
        if host.parse::<IpAddr>().is_ok() {
            return format!("address:{host}");
        }
        return irc.to_owned();
    }
    format!("nick:{nick}")
}

/// A stored mask (`nick:KEY`, `address:IP`, `account:KEY`) in IRC's form.
pub(super) fn mask_out(mask: &str) -> String {
    match mask.split_once(':') {
        Some(("nick", nick)) => format!("{nick}!*@*"),
        Some(("address", ip)) => format!("*!*@{ip}"),
        Some(("account", name)) => format!("$a:{name}"),
        _ => mask.to_owned(),
    }
}

/// The lines a `moderated` event shows an IRC client, or `None` when it
/// has no IRC form (it is then shown as a notice).
pub(super) fn event_lines(names: &Names, event: &ModEvent) -> Option<String> {
    let room = event.room.as_ref()?;
    let channel = format!("#{room}");
    let target = event.target.as_deref().unwrap_or("");
    let source = names.user(event.by.as_str());
    let mode = |change: &str, arg: &str| {
        let line = Line::new(&source, "MODE").param(&channel).param(change);
        if arg.is_empty() {
            line.end()
        } else {
            line.param(arg).end()
        }
    };
    let lines = match event.action {
        ModAction::Kick => Line::new(&source, "KICK")
            .param(&channel)
            .param(target)
            .trailing(event.reason.as_deref().unwrap_or(event.by.as_str())),
        // The target is the mask, then ` for 10m` when it ends.
        ModAction::Ban => {
            let mask = target.split(' ').next().unwrap_or(target);
            mode("+b", &mask_out(mask))
        }
        // An unban by nick lifts both the nick's and the account's bans.
        ModAction::Unban => target
            .split(' ')
            .filter(|m| !m.is_empty())
            .map(|m| mode("-b", &mask_out(m)))
            .collect(),
        ModAction::Op => mode("+o", target),
        ModAction::Deop => mode("-o", target),
        ModAction::Voice => mode("+v", target),
        ModAction::Devoice => mode("-v", target),
        // `+k +m -i +l 10`: one line per change; a key is not shown.
        ModAction::Mode => {
            let mut out = String::new();
            let mut words = target.split(' ').filter(|w| !w.is_empty()).peekable();
            while let Some(change) = words.next() {
                let arg = match change {
                    "+k" => "*".to_owned(),
                    "+l" => words.next().unwrap_or_default().to_owned(),
                    _ => String::new(),
                };
                out += &mode(change, &arg);
            }
            out
        }
        ModAction::Invite | ModAction::Kill => return None,
    };
    Some(lines)
}

/// Members a moderator removed, so that the `left` that follows a `KICK`
/// (or a ban) is not shown again as a `QUIT`.
#[derive(Debug, Default)]
pub(super) struct Removals {
    /// Kicked members not yet seen leaving: room key and nick key.
    kicked: Vec<(String, String)>,
    /// The room and moderator of the last ban: the members it removes
    /// leave with `banned by NICK`.
    last_ban: Option<(String, Nickname)>,
}

/// Kicks remembered at most; a `left` always follows a kick at once, so
/// only a flood of kicks in rooms of other nodes could pile them up.
const MAX_KICKS: usize = 32;

/// What a `left` with a reason turns out to be.
pub(super) enum Removal {
    /// Not a removal: a quit.
    None,
    /// The end of a kick already shown.
    Shown,
    /// A member a ban removed, by this moderator.
    Banned(Nickname),
}

impl Removals {
    /// Notes an event the client was shown.
    pub(super) fn saw(&mut self, event: &ModEvent) {
        let Some(room) = &event.room else { return };
        match event.action {
            ModAction::Kick => {
                if let Some(target) = event.target.as_deref().and_then(|t| Nickname::new(t).ok()) {
                    if self.kicked.len() == MAX_KICKS {
                        self.kicked.remove(0);
                    }
                    self.kicked.push((room.key(), target.key()));
                }
            }
            ModAction::Ban => self.last_ban = Some((room.key(), event.by.clone())),
            _ => {}
        }
    }

    /// What `nick` leaving `room` with `reason` is.
    pub(super) fn of(&mut self, room: &str, nick: &Nickname, reason: &str) -> Removal {
        let key = nick.key();
        if let Some(at) = self.kicked.iter().position(|(r, n)| r == room && *n == key) {
            self.kicked.remove(at);
            return Removal::Shown;
        }
        match &self.last_ban {
            Some((r, by)) if r == room && reason == format!("banned by {by}") => {
                Removal::Banned(by.clone())
            }
            _ => Removal::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RoomName;

    #[test]
    fn masks_cross_between_irc_and_the_store() {
        assert_eq!(mask_in("bob!*@*"), "nick:bob");
        assert_eq!(mask_in("*!*@10.0.0.7"), "address:10.0.0.7");
        assert_eq!(mask_in("$a:Bob"), "account:Bob");
        assert_eq!(mask_in("bob"), "bob");
        assert_eq!(mask_in("nick:bob"), "nick:bob");
        assert_eq!(mask_out("nick:bob"), "bob!*@*");
        assert_eq!(mask_out("address:10.0.0.7"), "*!*@10.0.0.7");
        assert_eq!(mask_out("account:bob"), "$a:bob");
    }

    #[test]
    fn events_become_kick_and_mode_lines() {
        let names = Names::new("srv");
        let event = |action, target: &str| ModEvent {
            room: Some(RoomName::new("hall").unwrap()),
            by: Nickname::new("chair").unwrap(),
            action,
            target: Some(target.to_owned()),
            reason: None,
        };
        let shown = |e| event_lines(&names, &e).unwrap();
        assert_eq!(
            shown(event(ModAction::Kick, "dave")),
            ":chair!chair@srv KICK #hall dave :chair\r\n"
        );
        assert_eq!(
            shown(event(ModAction::Ban, "nick:dave for 10m")),
            ":chair!chair@srv MODE #hall +b dave!*@*\r\n"
        );
        assert_eq!(
            shown(event(ModAction::Mode, "+k -m +l 5")),
            ":chair!chair@srv MODE #hall +k *\r\n:chair!chair@srv MODE #hall -m\r\n\
             :chair!chair@srv MODE #hall +l 5\r\n"
        );
        assert!(event_lines(&names, &event(ModAction::Invite, "dave")).is_none());
    }
}
