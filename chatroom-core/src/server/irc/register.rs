//! Registration: `CAP`, `PASS`, `NICK` and `USER` until the client has a
//! nick, a user line and no capability negotiation open; then the nick is
//! registered with the rooms, unique across every dialect.
//!
//! Nothing is queued yet (the queue exists only once the nick is held), so
//! the answers here are written straight to the socket, one at a time.

use std::sync::Arc;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::protocol::irc::{IrcError, Line, Message, parse};
use crate::protocol::{ErrorCode, Nickname, Password};
use crate::registry::{Outbox, OutboxReceiver, SessionId, outbox};
use crate::transport::{BoxWriter, Frame, PeerAddr};

use super::super::rate::TokenBucket;
use super::super::shared::Shared;
use super::conn::Reader;
use super::login::Login;
use super::names::{Caps, Names, supported_caps};
use super::reply::Numerics;

/// A client that completed registration.
pub(super) struct Registered {
    pub(super) id: SessionId,
    pub(super) nick: Nickname,
    pub(super) caps: Caps,
    /// The account logged in to (`PASS` or SASL), if any.
    pub(super) account: Option<Nickname>,
    /// The session's queue; the rooms hold clones of it from now on.
    pub(super) outbox: Outbox,
    /// Its other end, for the writer.
    pub(super) rx: OutboxReceiver,
}

/// What registration has gathered so far.
#[derive(Default)]
struct Gathered {
    nick: Option<Nickname>,
    user: bool,
    caps: Caps,
    /// `CAP LS` or `CAP REQ` was sent and `CAP END` not yet: registration
    /// waits, as IRCv3 capability negotiation asks.
    negotiating: bool,
    login: Login,
}

/// What one line asks of registration.
enum Step {
    Continue,
    /// The line was refused; counts against the error allowance.
    Refused,
    Close,
}

/// Runs registration. Returns `None` when the connection must close (the
/// client was told why, if it can still be told).
pub(super) async fn register(
    shared: &Arc<Shared>,
    names: &Names,
    reader: &mut Reader,
    writer: &mut BoxWriter,
    peer: &PeerAddr,
) -> Option<Registered> {
    let limits = &shared.limits;
    let deadline = Instant::now() + limits.handshake_timeout;
    let mut errors = TokenBucket::refilling_every(limits.error_refill, limits.max_errors, deadline);
    let mut got = Gathered::default();
    loop {
        let frame = match tokio::time::timeout_at(deadline, reader.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                tracing::debug!(%peer, error = %e, "read failed during irc registration");
                return None;
            }
            Ok(None) => return None,
            Err(_) => {
                let _ = close(writer, names, "registration timed out", limits).await;
                return None;
            }
        };
        // Owned, as `on_line` may change the nick it names.
        let me = got.nick.as_ref().map_or("*", Nickname::as_str).to_owned();
        let numerics = Numerics { names, me: &me };
        let (step, reply) = match &frame {
            Frame::TooLong { .. } => (
                Step::Refused,
                numerics.text("417", "Input line was too long"),
            ),
            Frame::Line(line) => match parse(line) {
                Ok(message) if message.command == "AUTHENTICATE" => {
                    let param = message.params.first().copied();
                    let answer = got
                        .login
                        .authenticate(&shared.accounts, &numerics, param, peer.ip())
                        .await;
                    let step = if answer.refused {
                        Step::Refused
                    } else {
                        Step::Continue
                    };
                    (step, answer.lines)
                }
                Ok(message) => on_line(&mut got, &numerics, &message),
                Err(IrcError::Empty) => (Step::Continue, String::new()),
                Err(IrcError::TooLong { .. } | IrcError::TagsTooLong { .. }) => (
                    Step::Refused,
                    numerics.text("417", "Input line was too long"),
                ),
                Err(e) => (
                    Step::Refused,
                    Line::new(names.server(), "NOTICE")
                        .param("*")
                        .trailing(&e.to_string()),
                ),
            },
        };
        if write(writer, &reply, limits).await.is_err() {
            return None;
        }
        match step {
            Step::Close => {
                let _ = close(writer, names, "quit", limits).await;
                return None;
            }
            Step::Refused if !errors.try_take(Instant::now()) => {
                let _ = close(writer, names, "too many errors", limits).await;
                return None;
            }
            Step::Refused | Step::Continue => {}
        }
        if got.negotiating || !got.user {
            continue;
        }
        let Some(nick) = got.nick.clone() else {
            continue;
        };
        if shared
            .accounts
            .may_use(&nick, got.login.account.as_ref())
            .is_err()
        {
            // A registered nick needs its account: a `PASS` given is its
            // password; without one (or with a wrong one) the nick is
            // refused as taken, and the client may pick another.
            let n = Numerics {
                names,
                me: nick.as_str(),
            };
            let mut lines = got
                .login
                .try_pass(&shared.accounts, &n, &nick, peer.ip())
                .await;
            if shared
                .accounts
                .may_use(&nick, got.login.account.as_ref())
                .is_err()
            {
                got.nick = None;
                lines += &Numerics { names, me: "*" }.about(
                    "433",
                    nick.as_str(),
                    "Nickname is registered to an account; log in with PASS or SASL",
                );
            }
            if write(writer, &lines, limits).await.is_err() {
                return None;
            }
            if got.nick.is_none() {
                continue;
            }
        }
        let (tx, rx) = outbox(
            limits.outbox_frames,
            limits.outbox_bytes,
            shared.queue_budget.clone(),
        );
        match shared.rooms.register(&nick, &tx).await {
            Ok(id) => {
                return Some(Registered {
                    id,
                    nick,
                    caps: got.caps,
                    account: got.login.account,
                    outbox: tx,
                    rx,
                });
            }
            Err(e) if e.code() == ErrorCode::NickTaken => {
                got.nick = None;
                let taken = Numerics { names, me: "*" }.about(
                    "433",
                    nick.as_str(),
                    "Nickname is already in use",
                );
                if write(writer, &taken, limits).await.is_err() {
                    return None;
                }
            }
            Err(e) => {
                // Only a cluster that cannot be reached refuses a free nick.
                let _ = close(writer, names, &e.to_string(), limits).await;
                return None;
            }
        }
    }
}

/// Handles one registration line; returns what it asks and the reply.
fn on_line(got: &mut Gathered, numerics: &Numerics<'_>, message: &Message<'_>) -> (Step, String) {
    let params = &message.params;
    let server = numerics.names.server();
    match message.command.as_str() {
        "CAP" => {
            let sub = params.first().map(|s| s.to_ascii_uppercase());
            let cap = |verb: &str, list: &str| {
                Line::new(server, "CAP")
                    .param(numerics.me)
                    .param(verb)
                    .trailing(list)
            };
            match sub.as_deref() {
                Some("LS") => {
                    got.negotiating = true;
                    (
                        Step::Continue,
                        cap("LS", &supported_caps(params.get(1).copied())),
                    )
                }
                Some("LIST") => (Step::Continue, cap("LIST", &got.caps.list())),
                Some("REQ") => {
                    got.negotiating = true;
                    let list = params.get(1).copied().unwrap_or("");
                    if got.caps.request(list) {
                        (Step::Continue, cap("ACK", list))
                    } else {
                        (Step::Continue, cap("NAK", list))
                    }
                }
                Some("END") => {
                    got.negotiating = false;
                    (Step::Continue, String::new())
                }
                _ => (
                    Step::Refused,
                    numerics.about(
                        "410",
                        params.first().copied().unwrap_or("*"),
                        "Invalid CAP command",
                    ),
                ),
            }
        }
        // The password of the account the nick names, tried once the nick
        // is known; without accounts it is ignored.
        "PASS" if params.is_empty() => (Step::Refused, not_enough(numerics, "PASS")),
        "PASS" => {
            got.login.pass = Some(Password::new(params[0]));
            (Step::Continue, String::new())
        }
        "NICK" => match params.first() {
            None | Some(&"") => (Step::Refused, numerics.text("431", "No nickname given")),
            Some(wanted) => match Nickname::new(*wanted) {
                Ok(nick) => {
                    got.nick = Some(nick);
                    (Step::Continue, String::new())
                }
                Err(e) => (
                    Step::Refused,
                    numerics.about("432", wanted, &format!("Erroneous nickname: {e}")),
                ),
            },
        },
        "USER" if params.len() < 4 => (Step::Refused, not_enough(numerics, "USER")),
        "USER" => {
            got.user = true;
            (Step::Continue, String::new())
        }
        "PING" => (Step::Continue, pong(server, params.first().copied())),
        "PONG" => (Step::Continue, String::new()),
        "QUIT" => (Step::Close, String::new()),
        _ => (
            Step::Refused,
            numerics.text("451", "You have not registered"),
        ),
    }
}

/// `461`: a command without the parameters it needs.
pub(super) fn not_enough(numerics: &Numerics<'_>, command: &str) -> String {
    numerics.about("461", command, "Not enough parameters")
}

/// The answer to `PING token`.
pub(super) fn pong(server: &str, token: Option<&str>) -> String {
    Line::new(server, "PONG")
        .param(server)
        .trailing(token.unwrap_or(server))
}

async fn write(
    writer: &mut BoxWriter,
    lines: &str,
    limits: &super::super::config::Limits,
) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(limits.write_timeout, async {
        writer.write_all(lines.as_bytes()).await?;
        writer.flush().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Says why the connection closes, and closes it.
async fn close(
    writer: &mut BoxWriter,
    names: &Names,
    why: &str,
    limits: &super::super::config::Limits,
) -> std::io::Result<()> {
    let line = Line::new(names.server(), "ERROR").trailing(&format!("Closing link: {why}"));
    write(writer, &line, limits).await?;
    writer.shutdown().await
}
