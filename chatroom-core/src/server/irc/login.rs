//! Logging in to an account from IRC, while the connection registers:
//! IRCv3 SASL PLAIN (`AUTHENTICATE`), or `PASS` as the password of the
//! account the `NICK` names (what clients without SASL send, and what most
//! networks with nick services take it to mean). Both go through the same
//! check as every other dialect's login, failures throttled alike.

use std::net::IpAddr;

use crate::protocol::irc::Line;
use crate::protocol::irc::sasl::{self, CHUNK_LEN, MAX_PAYLOAD};
use crate::protocol::{Nickname, Password};

use super::super::accounts::{Accounts, AccountsError};
use super::reply::Numerics;

/// The longest base64 text of an accepted payload.
const MAX_ENCODED: usize = MAX_PAYLOAD.div_ceil(3) * 4;

/// What registration knows of a login.
#[derive(Debug, Default)]
pub(super) struct Login {
    /// The `PASS` given, tried for the nick when registration completes.
    pub(super) pass: Option<Password>,
    /// The base64 chunks of an `AUTHENTICATE PLAIN` exchange in progress.
    exchange: Option<String>,
    /// The account logged in to.
    pub(super) account: Option<Nickname>,
}

/// How an `AUTHENTICATE` line went.
pub(super) struct Answer {
    /// The line was refused (counts against the error allowance).
    pub(super) refused: bool,
    pub(super) lines: String,
}

impl Answer {
    fn ok(lines: String) -> Self {
        Self {
            refused: false,
            lines,
        }
    }

    fn refused(lines: String) -> Self {
        Self {
            refused: true,
            lines,
        }
    }
}

/// `900`: the client is logged in to `account`.
pub(super) fn logged_in(n: &Numerics<'_>, account: &Nickname) -> String {
    n.start("900")
        .param(&n.names.user(n.me))
        .param(account.as_str())
        .trailing(&format!("You are now logged in as {account}"))
}

/// `904`, with why when it helps the user.
fn failed(n: &Numerics<'_>, why: Option<&str>) -> String {
    match why {
        Some(why) => n.text("904", &format!("SASL authentication failed: {why}")),
        None => n.text("904", "SASL authentication failed"),
    }
}

impl Login {
    /// Serves one `AUTHENTICATE` line.
    pub(super) async fn authenticate(
        &mut self,
        accounts: &Accounts,
        n: &Numerics<'_>,
        param: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Answer {
        let Some(param) = param.filter(|p| !p.is_empty()) else {
            return Answer::refused(n.about("461", "AUTHENTICATE", "Not enough parameters"));
        };
        if self.account.is_some() {
            return Answer::refused(n.text("907", "You have already authenticated using SASL"));
        }
        if param == "*" {
            self.exchange = None;
            return Answer::refused(n.text("906", "SASL authentication aborted"));
        }
        let Some(buffer) = self.exchange.as_mut() else {
            if param.eq_ignore_ascii_case("PLAIN") {
                self.exchange = Some(String::new());
                return Answer::ok(Line::new(n.names.server(), "AUTHENTICATE").param("+").end());
            }
            let mut lines = n
                .start("908")
                .param("PLAIN")
                .trailing("are available SASL mechanisms");
            lines += &failed(n, Some("only PLAIN is offered"));
            return Answer::refused(lines);
        };
        if param != "+" {
            buffer.push_str(param);
        }
        if buffer.len() > MAX_ENCODED {
            self.exchange = None;
            return Answer::refused(n.text("905", "SASL message too long"));
        }
        // A full chunk says another follows.
        if param.len() == CHUNK_LEN {
            return Answer::ok(String::new());
        }
        let encoded = self.exchange.take().unwrap_or_default();
        let plain = match sasl::decode_base64(&encoded).and_then(|raw| sasl::plain(&raw)) {
            Ok(plain) => plain,
            Err(e) => return Answer::refused(failed(n, Some(&e.to_string()))),
        };
        let Ok(nick) = Nickname::new(plain.authcid.as_str()) else {
            return Answer::refused(failed(n, None));
        };
        // Acting as another account is not offered.
        if !plain.authzid.is_empty()
            && Nickname::new(plain.authzid.as_str()).ok().map(|a| a.key()) != Some(nick.key())
        {
            return Answer::refused(failed(n, Some("authzid must name the same account")));
        }
        match accounts
            .login(&nick, &Password::new(plain.password), peer)
            .await
        {
            Ok(account) => {
                let mut lines = logged_in(n, &account);
                lines += &n.text("903", "SASL authentication successful");
                self.account = Some(account);
                Answer::ok(lines)
            }
            Err(e @ AccountsError::Throttled(_)) => {
                Answer::refused(failed(n, Some(&e.to_string())))
            }
            Err(_) => Answer::refused(failed(n, None)),
        }
    }

    /// Tries the `PASS` given for `nick`, a registered nick this
    /// connection is not logged in to. Returns the lines to send; the
    /// account is set when the password was right.
    pub(super) async fn try_pass(
        &mut self,
        accounts: &Accounts,
        n: &Numerics<'_>,
        nick: &Nickname,
        peer: Option<IpAddr>,
    ) -> String {
        // Tried once: a second registered nick asks for a new PASS.
        let Some(pass) = self.pass.take() else {
            return String::new();
        };
        match accounts.login(nick, &pass, peer).await {
            Ok(account) => {
                let lines = logged_in(n, &account);
                self.account = Some(account);
                lines
            }
            Err(e @ AccountsError::Throttled(_)) => {
                n.text("464", &format!("Password incorrect: {e}"))
            }
            Err(_) => n.text("464", "Password incorrect"),
        }
    }
}
