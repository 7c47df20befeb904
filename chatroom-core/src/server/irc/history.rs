//! `CHATHISTORY` (IRCv3 `draft/chathistory`): pages of a room's past in a
//! `chathistory` batch, read the way the native `history` request reads
//! them. References are message ids (`msgid=room/id`, as the `msgid` tag
//! shows them); timestamps are refused, as the history store pages by id.

use crate::protocol::irc::Line;
use crate::protocol::{ErrorCode, MessageId, RoomName};

use super::channels::room_of;
use super::render::{Said, privmsg};
use super::reply;
use super::session::IrcSession;

/// What a `CHATHISTORY` asks for, in the history store's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// The newest messages, only those after the id if one is given.
    Latest(Option<MessageId>),
    /// The messages just before the id.
    Before(MessageId),
    /// The messages just after the id.
    After(MessageId),
}

/// Why a `CHATHISTORY` is refused: the `FAIL` code and its text.
type Refusal = (&'static str, String);

impl IrcSession {
    /// `BATCH +id chathistory #room` (`open`) or `BATCH -id`.
    pub(super) fn batch_line(&self, id: &str, channel: &str, open: bool) -> String {
        let line = Line::new(self.names.server(), "BATCH");
        if open {
            line.param(&format!("+{id}"))
                .param("chathistory")
                .param(channel)
                .end()
        } else {
            line.param(&format!("-{id}")).end()
        }
    }

    pub(super) async fn on_chathistory(&mut self, params: &[&str]) {
        let sub = params
            .first()
            .map_or(String::new(), |s| s.to_ascii_uppercase());
        let (room, ask, limit) = match parse(&sub, &params[params.len().min(1)..]) {
            Ok(parsed) => parsed,
            Err((code, text)) => return self.fail(&sub, code, params.get(1).copied(), &text),
        };
        let channel = format!("#{room}");
        let (before, after) = match ask {
            Ask::Latest(_) => (None, None),
            Ask::Before(id) => (Some(id), None),
            Ask::After(id) => (None, Some(id)),
        };
        let page = self
            .shared
            .rooms
            .history_page(&room, before, after, Some(limit))
            .await;
        let mut page = match page {
            Ok(page) => page,
            Err(e) => {
                let code = match e.code() {
                    ErrorCode::NoSuchRoom => "INVALID_TARGET",
                    ErrorCode::BadCursor => "INVALID_PARAMS",
                    _ => "MESSAGE_ERROR",
                };
                return self.fail(&sub, code, Some(&channel), &e.to_string());
            }
        };
        if let Ask::Latest(Some(after)) = ask {
            page.messages.retain(|m| m.id > after);
        }
        // One frame per message, paced to what the client reads, so a page
        // of long messages never overflows the queue.
        let id = self.next_batch();
        let batch = self.caps.batch.then_some(id.as_str());
        if batch.is_some() {
            self.send(self.batch_line(&id, &channel, true));
        }
        for entry in &page.messages {
            let said = Said {
                from: &entry.from,
                target: &channel,
                text: &entry.text,
                action: entry.action,
                ts: entry.ts,
                id: Some((&room, entry.id)),
                batch,
            };
            let mut out = Vec::new();
            privmsg(&self.names, self.caps, &said, &mut out);
            let lines = String::from_utf8(out).unwrap_or_default();
            if self.outbox.push_paced(&reply::own(lines)).await.is_err() {
                return;
            }
        }
        if batch.is_some() {
            self.send(self.batch_line(&id, &channel, false));
        }
    }

    /// `FAIL CHATHISTORY CODE [subcommand] [target] :text`.
    fn fail(&self, sub: &str, code: &str, target: Option<&str>, text: &str) {
        let mut line = Line::new(self.names.server(), "FAIL")
            .param("CHATHISTORY")
            .param(code)
            .param(if sub.is_empty() { "*" } else { sub });
        if code == "INVALID_TARGET" || code == "MESSAGE_ERROR" {
            line = line.param(target.unwrap_or("*"));
        }
        self.send(line.trailing(text));
    }
}

/// Reads `SUBCOMMAND target reference limit` (the subcommand already
/// taken off `rest`'s front).
fn parse(sub: &str, rest: &[&str]) -> Result<(RoomName, Ask, u32), Refusal> {
    if !matches!(sub, "LATEST" | "BEFORE" | "AFTER") {
        let text = if sub.is_empty() {
            "Missing parameters".to_owned()
        } else {
            "Only LATEST, BEFORE and AFTER are supported".to_owned()
        };
        let code = if sub.is_empty() {
            "NEED_MORE_PARAMS"
        } else {
            "UNKNOWN_COMMAND"
        };
        return Err((code, text));
    }
    // Parameters past the limit are ignored.
    let [target, reference, limit, ..] = rest[..] else {
        return Err(("NEED_MORE_PARAMS", "Missing parameters".to_owned()));
    };
    let room = room_of(target).ok_or((
        "INVALID_TARGET",
        "History is kept for channels only".to_owned(),
    ))?;
    let limit = limit.parse::<u32>().ok().filter(|l| *l > 0).ok_or((
        "INVALID_PARAMS",
        "The limit must be a positive number".to_owned(),
    ))?;
    let ask = match sub {
        "LATEST" if reference == "*" => Ask::Latest(None),
        "LATEST" => Ask::Latest(Some(msgid(&room, reference)?)),
        "BEFORE" => Ask::Before(msgid(&room, reference)?),
        _ => Ask::After(msgid(&room, reference)?),
    };
    Ok((room, ask, limit))
}

/// The id a `msgid=room/id` reference names, which must be of `room`.
fn msgid(room: &RoomName, reference: &str) -> Result<MessageId, Refusal> {
    let refused = |why: &str| ("INVALID_PARAMS", why.to_owned());
    let Some(value) = reference.strip_prefix("msgid=") else {
        return Err(refused(
            "Only msgid= references are supported (timestamps are not)",
        ));
    };
    let (of, id) = value
        .split_once('/')
        .ok_or_else(|| refused("Unknown msgid"))?;
    if !of.eq_ignore_ascii_case(&room.key()) {
        return Err(refused("That msgid is of another channel"));
    }
    id.parse().map_err(|_| refused("Unknown msgid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Result<(String, Ask, u32), &'static str> {
        let words: Vec<&str> = line.split(' ').collect();
        parse(words[0], &words[1..])
            .map(|(room, ask, limit)| (room.to_string(), ask, limit))
            .map_err(|(code, _)| code)
    }

    #[test]
    fn references_are_msgids_of_the_channel() {
        assert_eq!(
            parsed("LATEST #Lobby * 10"),
            Ok(("Lobby".into(), Ask::Latest(None), 10))
        );
        assert_eq!(
            parsed("LATEST #lobby msgid=lobby/4 10"),
            Ok(("lobby".into(), Ask::Latest(Some(4)), 10))
        );
        assert_eq!(
            parsed("BEFORE #lobby msgid=LOBBY/7 2"),
            Ok(("lobby".into(), Ask::Before(7), 2))
        );
        assert_eq!(
            parsed("AFTER #lobby msgid=lobby/0 5"),
            Ok(("lobby".into(), Ask::After(0), 5))
        );
    }

    #[test]
    fn what_cannot_be_answered_is_refused() {
        assert_eq!(parsed("BEFORE #lobby * 5"), Err("INVALID_PARAMS"));
        assert_eq!(
            parsed("BEFORE #lobby timestamp=2026-12-04T10:00:00.000Z 5"),
            Err("INVALID_PARAMS")
        );
        assert_eq!(parsed("AFTER #lobby msgid=rust/3 5"), Err("INVALID_PARAMS"));
        assert_eq!(
            parsed("AFTER #lobby msgid=lobby/x 5"),
            Err("INVALID_PARAMS")
        );
        assert_eq!(parsed("LATEST #lobby * 0"), Err("INVALID_PARAMS"));
        assert_eq!(parsed("LATEST bob * 5"), Err("INVALID_TARGET"));
        assert_eq!(parsed("LATEST #lobby *"), Err("NEED_MORE_PARAMS"));
        assert_eq!(
            parsed("AROUND #lobby msgid=lobby/3 5"),
            Err("UNKNOWN_COMMAND")
        );
        assert_eq!(parsed(""), Err("NEED_MORE_PARAMS"));
    }
}
