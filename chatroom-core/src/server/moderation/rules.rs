//! One room's rules as moderators set them, and how a ban mask names
//! whom it keeps out. Serialized as JSON into the account store, one
//! document per room (`*` for the server's own bans).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::protocol::{Nickname, Timestamp};

use super::super::peers;

/// Who is asking: what a ban or a permission is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Actor<'a> {
    pub(crate) nick: &'a Nickname,
    pub(crate) account: Option<&'a Nickname>,
    pub(crate) ip: Option<IpAddr>,
}

/// A room's rules. Every field defaults, so that documents written by an
/// older version still read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RoomRules {
    /// The owner's folded account name.
    pub(crate) owner: Option<String>,
    /// Room operators' folded account names.
    pub(crate) operators: BTreeSet<String>,
    /// Folded account names or nicks that may speak when moderated.
    pub(crate) voiced: BTreeSet<String>,
    pub(crate) bans: Vec<Ban>,
    /// The key joining needs.
    pub(crate) key: Option<String>,
    pub(crate) invite_only: bool,
    /// Folded nicks (and account names) invited.
    pub(crate) invited: BTreeSet<String>,
    pub(crate) moderated: bool,
    /// Most members.
    pub(crate) limit: Option<u32>,
    pub(crate) topic: Option<String>,
    pub(crate) topic_by: Option<Nickname>,
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ban {
    /// `account:KEY`, `nick:KEY` or `address:IP`.
    pub(crate) mask: String,
    /// When it ends, in ms since the epoch; `None` for good.
    pub(crate) until: Option<Timestamp>,
    pub(crate) by: String,
    pub(crate) reason: Option<String>,
}

impl RoomRules {
    /// Whether nothing is set: such rules need not be stored.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The ban that keeps `actor` out at `now`, if any.
    pub(crate) fn ban_on(&self, actor: &Actor<'_>, now: Timestamp) -> Option<&Ban> {
        self.bans
            .iter()
            .find(|b| b.until.is_none_or(|t| t > now) && matches(&b.mask, actor))
    }

    /// Forgets bans that have ended.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        self.bans.retain(|b| b.until.is_none_or(|t| t > now));
    }

    pub(crate) fn is_operator(&self, account: Option<&Nickname>) -> bool {
        account.is_some_and(|a| {
            let key = a.key();
            self.owner.as_deref() == Some(key.as_str()) || self.operators.contains(&key)
        })
    }

    pub(crate) fn is_owner(&self, account: Option<&Nickname>) -> bool {
        account.is_some_and(|a| self.owner.as_deref() == Some(a.key().as_str()))
    }

    pub(crate) fn is_voiced(&self, actor: &Actor<'_>) -> bool {
        self.voiced.contains(&actor.nick.key())
            || actor
                .account
                .is_some_and(|a| self.voiced.contains(&a.key()))
    }

    pub(crate) fn is_invited(&self, actor: &Actor<'_>) -> bool {
        self.invited.contains(&actor.nick.key())
            || actor
                .account
                .is_some_and(|a| self.invited.contains(&a.key()))
    }
}

/// Whether `mask` names `actor`.
fn matches(mask: &str, actor: &Actor<'_>) -> bool {
    match mask.split_once(':') {
        Some(("account", key)) => actor.account.is_some_and(|a| a.key() == key),
        Some(("nick", key)) => actor.nick.key() == key,
        Some(("address", ip)) => actor
            .ip
            .is_some_and(|own| peers::key(own).to_string() == ip),
        _ => false,
    }
}

/// A mask as typed (`account:Bob`, `nick:bob`, `address:10.0.0.7`) in the
/// form it is stored and compared in, or `None` when it is not one.
pub(crate) fn canonical_mask(typed: &str) -> Option<String> {
    let (kind, value) = typed.split_once(':')?;
    match kind.to_ascii_lowercase().as_str() {
        kind @ ("account" | "nick") => {
            let nick = Nickname::new(value).ok()?;
            Some(format!("{kind}:{}", nick.key()))
        }
        "address" | "ip" => {
            let ip: IpAddr = value.trim_matches(['[', ']']).parse().ok()?;
            Some(format!("address:{}", peers::key(ip)))
        }
        _ => None,
    }
}

/// The mask that bans `actor` best: its account, else its address, else
/// its nick.
pub(crate) fn mask_of(actor: &Actor<'_>) -> String {
    if let Some(account) = actor.account {
        return format!("account:{}", account.key());
    }
    match actor.ip {
        Some(ip) => format!("address:{}", peers::key(ip)),
        None => format!("nick:{}", actor.nick.key()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_what_they_name() {
        let nick = Nickname::new("Bob").unwrap();
        let account = Nickname::new("bob").unwrap();
        let actor = Actor {
            nick: &nick,
            account: Some(&account),
            ip: Some("10.0.0.7".parse().unwrap()),
        };
        for typed in ["account:BOB", "nick:bob", "address:10.0.0.7", "ip:10.0.0.7"] {
            let mask = canonical_mask(typed).unwrap();
            assert!(matches(&mask, &actor), "{typed}");
        }
        for typed in ["account:ann", "nick:ann", "address:10.0.0.8"] {
            assert!(!matches(&canonical_mask(typed).unwrap(), &actor), "{typed}");
        }
        assert_eq!(canonical_mask("bob"), None);
        assert_eq!(canonical_mask("host:x"), None);
        assert_eq!(mask_of(&actor), "account:bob");
        let mut rules = RoomRules::default();
        rules.bans.push(Ban {
            mask: mask_of(&actor),
            until: Some(100),
            by: "ann".into(),
            reason: None,
        });
        assert!(rules.ban_on(&actor, 99).is_some());
        assert!(rules.ban_on(&actor, 100).is_none());
        rules.expire(100);
        assert!(rules.is_empty());
    }
}
