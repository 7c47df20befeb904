//! `PRIVMSG` and `NOTICE`: to a channel (said in its room, seen by every
//! dialect) or to a nick (a whisper). A `NOTICE` is never answered with an
//! error, as RFC 2812 asks, so two programs cannot loop on each other.

use crate::protocol::irc::{Incoming, incoming};
use crate::protocol::{self, ErrorCode, Nickname};

use super::channels::room_of;
use super::render::{Said, privmsg};
use super::session::IrcSession;

impl IrcSession {
    pub(super) async fn on_message(&mut self, params: &[&str], notice: bool) {
        let command = if notice { "NOTICE" } else { "PRIVMSG" };
        let n = self.numerics();
        let Some(targets) = params.first().filter(|t| !t.is_empty()) else {
            if !notice {
                let line = n.text("411", &format!("No recipient given ({command})"));
                self.send(line);
            }
            return;
        };
        let Some(text) = params.get(1).filter(|t| !t.is_empty()) else {
            if !notice {
                self.send(n.text("412", "No text to send"));
            }
            return;
        };
        let (text, action) = match incoming(text) {
            Incoming::Say { text, action } => (text, action),
            // Other CTCP requests (VERSION, PING…) have no meaning in the
            // other dialects and are not passed on.
            Incoming::OtherCtcp => return,
        };
        if let Err(e) = protocol::validate_text(&text) {
            if !notice {
                self.send(self.notice(&format!("message dropped: {e}")));
            }
            return;
        }
        for target in targets.split(',').filter(|t| !t.is_empty()) {
            if target.starts_with('#') {
                self.say_in(target, &text, action, notice).await;
            } else {
                self.whisper(target, &text, action, notice).await;
            }
        }
    }

    async fn say_in(&mut self, channel: &str, text: &str, action: bool, notice: bool) {
        self.collect_evictions();
        let handle = room_of(channel)
            .and_then(|room| self.rooms.get(&room.key()).cloned())
            .filter(|h| self.shared.moderation.may_speak(h.name(), &self.actor()));
        let Some(handle) = handle else {
            if !notice {
                let line = self
                    .numerics()
                    .about("404", channel, "Cannot send to channel");
                self.send(line);
            }
            return;
        };
        let pending = self
            .shared
            .rooms
            .say(&handle, self.member(), text.to_owned(), action, false);
        // Nobody gets their own line back, unless it asked for
        // `echo-message`; then it comes with the id and time the room gave.
        match pending.await {
            Ok(published) if self.caps.echo_message => {
                let mut out = Vec::new();
                let said = Said {
                    from: &self.nick,
                    target: channel,
                    text,
                    action,
                    ts: published.ts,
                    id: Some((handle.name(), published.id)),
                    batch: None,
                };
                privmsg(&self.names, self.caps, &said, &mut out);
                self.send(String::from_utf8(out).unwrap_or_default());
            }
            Ok(_) => {}
            Err(e) if !notice => self.send(self.notice(&format!("message dropped: {e}"))),
            Err(_) => {}
        }
    }

    async fn whisper(&mut self, target: &str, text: &str, action: bool, notice: bool) {
        let no_such_nick = |s: &Self| {
            if !notice {
                s.send(s.numerics().about("401", target, "No such nick/channel"));
            }
        };
        let Ok(to) = Nickname::new(target) else {
            return no_such_nick(self);
        };
        // Whispers carry no action flag; the other dialects show the usual
        // `* nick text`.
        let text = if action {
            format!("* {} {text}", self.nick)
        } else {
            text.to_owned()
        };
        // The registry echoes a whisper to its sender; the writer shows
        // that echo only with `echo-message`.
        match self.shared.rooms.whisper(self.member(), &to, text).await {
            // RFC 2812: a `PRIVMSG` to an away user is answered with `301`.
            Ok(()) if !notice => {
                if let Some(away) = self.shared.irc_away.away_of(&to) {
                    let line = self.numerics().start("301").param(to.as_str());
                    self.send(line.trailing(&away));
                }
            }
            Ok(()) => {}
            Err(e) if e.code() == ErrorCode::NoSuchNick => no_such_nick(self),
            Err(e) if !notice => self.send(self.notice(&format!("message dropped: {e}"))),
            Err(_) => {}
        }
    }
}
