//! A registered client's commands, one function each (channel commands in
//! `channels`, messages in `messages`, user queries in `users`). Every
//! refusal is a numeric to this client; none touches another connection.

use crate::protocol::irc::{Line, Message};
use crate::protocol::{self, ErrorCode, Nickname, ServerMessage};

use super::names::supported_caps;
use super::register::{not_enough, pong};
use super::session::{End, IrcSession};

impl IrcSession {
    /// Serves one command.
    pub(super) async fn dispatch(&mut self, message: &Message<'_>) -> Option<End> {
        let params = &message.params;
        match message.command.as_str() {
            "PING" => {
                self.send(pong(self.names.server(), params.first().copied()));
            }
            "PONG" => {}
            "PASS" | "USER" => {
                self.send(self.numerics().text("462", "You may not reregister"));
            }
            "NICK" => self.on_nick(params.first().copied()).await,
            "CAP" => self.on_cap(params),
            "JOIN" => self.on_join(params).await,
            "PART" => self.on_part(params),
            "PRIVMSG" => self.on_message(params, false).await,
            "NOTICE" => self.on_message(params, true).await,
            "NAMES" => self.on_names(params),
            "TOPIC" if params.len() > 1 => self.set_topic(params[0], params[1]).await,
            "TOPIC" => self.on_topic(params),
            "KICK" => self.on_kick(params).await,
            "INVITE" => self.on_invite(params).await,
            "KILL" => self.on_kill(params).await,
            "LIST" => self.on_list(),
            "WHO" => self.on_who(params),
            "WHOIS" => self.on_whois(params),
            "MODE" => self.on_mode(params).await,
            "AWAY" => self.on_away(params.first().copied()),
            "CHATHISTORY" => self.on_chathistory(params).await,
            "MOTD" => self.send(self.numerics().text("422", "MOTD File is missing")),
            "USERHOST" => self.on_userhost(params),
            "ISON" => self.on_ison(params),
            "WHOWAS" => self.on_whowas(params),
            "QUIT" => return Some(self.on_quit(params.first().copied())),
            other => {
                self.send(self.numerics().about("421", other, "Unknown command"));
            }
        }
        None
    }

    async fn on_nick(&mut self, wanted: Option<&str>) {
        let n = self.numerics();
        let wanted = match wanted {
            None | Some("") => return self.send(n.text("431", "No nickname given")),
            Some(wanted) => wanted,
        };
        let new = match Nickname::new(wanted) {
            Ok(new) => new,
            Err(e) => {
                let text = format!("Erroneous nickname: {e}");
                return self.send(n.about("432", wanted, &text));
            }
        };
        if new.as_str() == self.nick.as_str() {
            return;
        }
        if self
            .shared
            .accounts
            .may_use(&new, self.account.as_ref())
            .is_err()
        {
            let line = n.about("433", new.as_str(), "Nickname is registered to an account");
            return self.send(line);
        }
        // The registry tells this client and everyone in its rooms with a
        // `nick_changed` frame, which the writer shows as `NICK`.
        match self.shared.rooms.rename(self.id, &self.nick, &new).await {
            Ok(()) => {
                self.shared.irc_away.rename(&self.nick, &new, self.id);
                self.nick = new;
            }
            Err(e) if e.code() == ErrorCode::NickTaken => {
                let line = n.about("433", new.as_str(), "Nickname is already in use");
                self.send(line);
            }
            Err(e) => self.send(self.notice(&e.to_string())),
        }
    }

    fn on_cap(&mut self, params: &[&str]) {
        let sub = params.first().map(|s| s.to_ascii_uppercase());
        let server = self.names.server();
        let cap = |verb: &str, list: &str| {
            Line::new(server, "CAP")
                .param(self.nick.as_str())
                .param(verb)
                .trailing(list)
        };
        let line = match sub.as_deref() {
            Some("LS") => cap("LS", &supported_caps(params.get(1).copied())),
            Some("LIST") => cap("LIST", &self.caps.list()),
            // The writer renders with the capabilities it was given at
            // registration, so they cannot change afterwards.
            Some("REQ") => cap("NAK", params.get(1).copied().unwrap_or("")),
            Some("END") => return,
            _ => self.numerics().about(
                "410",
                params.first().copied().unwrap_or("*"),
                "Invalid CAP command",
            ),
        };
        self.send(line);
    }

    fn on_away(&mut self, message: Option<&str>) {
        let n = self.numerics();
        // The message is shown to others, so it obeys the rules of message
        // text (a control character drops it, and the user is back).
        let away = message
            .map(protocol::irc::strip_formatting)
            .filter(|m| !m.is_empty() && protocol::validate_text(m).is_ok());
        if away.is_some() {
            self.send(n.text("306", "You have been marked as being away"));
        } else {
            self.send(n.text("305", "You are no longer marked as being away"));
        }
        if away == self.away {
            return;
        }
        self.away = away;
        self.shared
            .irc_away
            .set(&self.nick, self.id, self.away.clone());
        let mut co_members = Vec::new();
        for room in self.rooms.values() {
            co_members.extend(self.shared.rooms.members(room.name()).unwrap_or_default());
        }
        self.shared
            .irc_away
            .notify(&co_members, self.id, &self.away_line());
    }

    /// `:me AWAY :message`, or `:me AWAY` when back.
    pub(super) fn away_line(&self) -> String {
        let line = Line::new(&self.names.user(self.nick.as_str()), "AWAY");
        match &self.away {
            Some(text) => line.trailing(text),
            None => line.end(),
        }
    }

    fn on_quit(&mut self, reason: Option<&str>) -> End {
        // The reason goes to every room the client was in, so it obeys the
        // rules of message text; a bad one is dropped.
        let reason = reason
            .map(protocol::irc::strip_formatting)
            .filter(|r| protocol::validate_text(r).is_ok());
        self.push(ServerMessage::Bye {
            reason: "quit".to_owned(),
        });
        End::Quit(reason)
    }

    /// `461` for `command`.
    pub(super) fn not_enough(&self, command: &str) {
        self.send(not_enough(&self.numerics(), command));
    }
}
