//! How a connection becomes a registered session: a native client's
//! `hello` (with its resume cursors), or a text client's nick taken from
//! its address and its seat in the default room.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use tokio::time::Instant;

use crate::protocol::{
    self, ClientFrame, ClientMessage, ErrorCode, MessageId, Nickname, PROTOCOL_VERSION, Password,
    RoomName,
};
use crate::registry::Outbox;
use crate::transport::{Frame, PeerAddr};

use super::super::moderation::{Actor, Refusal};
use super::super::rate::TokenBucket;
use super::super::rooms::Since;
use super::super::shared::Shared;
use super::super::writer::Dialect;
use super::opening::Reader;
use super::reply::{Failure, bye, error, ref_of_bad_frame};
use super::state::{End, Session};
use crate::registry::now_ms;

/// Waits for a valid `hello` and registers the client. Returns `None` when
/// the connection must close (it was told why).
pub(super) async fn native(
    shared: &Arc<Shared>,
    peer: PeerAddr,
    outbox: Outbox,
    reader: &mut Reader,
    mut pending: Option<Frame>,
) -> Option<Session> {
    let limits = &shared.limits;
    let deadline = Instant::now() + limits.handshake_timeout;
    let mut errors = TokenBucket::refilling_every(limits.error_refill, limits.max_errors, deadline);
    loop {
        let frame = match pending.take() {
            Some(frame) => frame,
            None => match tokio::time::timeout_at(deadline, reader.next()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => {
                    tracing::debug!(%peer, error = %e, "read failed during handshake");
                    return None;
                }
                Ok(None) => return None,
                Err(_) => {
                    error(
                        &outbox,
                        Failure::new(ErrorCode::HandshakeRequired, "no hello in time"),
                        None,
                    );
                    bye(&outbox, "handshake timeout");
                    tracing::debug!(%peer, reason = %End::HandshakeTimeout, "closed");
                    return None;
                }
            },
        };
        let (failure, reference) = match hello_of(&frame) {
            Ok(hello) if hello.version != PROTOCOL_VERSION => {
                error(
                    &outbox,
                    Failure::new(
                        ErrorCode::UnsupportedVersion,
                        format!("this server speaks protocol version {PROTOCOL_VERSION}"),
                    ),
                    hello.reference,
                );
                bye(&outbox, "unsupported protocol version");
                tracing::debug!(%peer, reason = %End::UnsupportedVersion, "closed");
                return None;
            }
            Ok(hello) => match Box::pin(admit(shared, &peer, &outbox, hello)).await {
                Ok(session) => return Some(session),
                Err(failed) => failed,
            },
            Err(failed) => failed,
        };
        error(&outbox, failure, reference);
        if !errors.try_take(Instant::now()) {
            bye(&outbox, "too many errors");
            return None;
        }
    }
}

/// What a `hello` asks for.
struct Hello {
    version: u32,
    nick: Option<Nickname>,
    resume: BTreeMap<RoomName, MessageId>,
    password: Option<Password>,
    reference: Option<String>,
}

/// Registers the client a valid `hello` describes: logged in when it gave
/// a password, as a guest otherwise. A guest that asked for a registered
/// nick is given a free guest nick and told why after its `welcome`.
async fn admit(
    shared: &Arc<Shared>,
    peer: &PeerAddr,
    outbox: &Outbox,
    hello: Hello,
) -> Result<Session, (Failure, Option<String>)> {
    let rooms = &shared.rooms;
    let accounts = &shared.accounts;
    let reference = hello.reference;
    let fail = |f: Failure| (f, reference.clone());
    let mut account = None;
    let mut refused = None;
    let nick = match (hello.nick, hello.password) {
        (Some(nick), Some(password)) => {
            let name = accounts
                .login(&nick, &password, peer.ip())
                .await
                .map_err(|e| fail(e.into()))?;
            account = Some(name.clone());
            Some(name)
        }
        (Some(nick), None) if accounts.is_registered(&nick) => {
            refused = accounts.may_use(&nick, None).err();
            None
        }
        (nick, _) => nick,
    };
    if let Some(ban) = banned(shared, nick.as_ref(), account.as_ref(), peer) {
        return Err(fail(ban));
    }
    let registered = match nick {
        Some(nick) => rooms.register(&nick, outbox).await.map(|id| (id, nick)),
        None => {
            let base = Nickname::new("guest").expect("valid literal");
            rooms
                .register_unique(&base, outbox, |n| accounts.is_registered(n))
                .await
        }
    };
    let (id, nick) = registered.map_err(|e| fail(e.into()))?;
    let mut session = Session::new(shared, id, nick, Dialect::Native, outbox.clone(), peer.ip());
    session.note_seen();
    session.welcome(reference.clone());
    if let Some(account) = account {
        session.logged_in(account, reference.clone());
    }
    if let Some(refused) = refused {
        session.fail(refused.into(), reference.clone());
    }
    session.resume(hello.resume, reference).await;
    Ok(session)
}

/// Reads a `hello` out of a frame, or says what is wrong with it.
fn hello_of(frame: &Frame) -> Result<Hello, (Failure, Option<String>)> {
    let line = match frame {
        Frame::Line(line) => line,
        Frame::TooLong { max } => {
            return Err((
                Failure::new(
                    ErrorCode::FrameTooLong,
                    format!("line longer than {max} bytes"),
                ),
                None,
            ));
        }
    };
    let parsed: ClientFrame =
        protocol::decode(line).map_err(|e| (Failure::from(e), ref_of_bad_frame(line)))?;
    match parsed.message {
        ClientMessage::Hello {
            version,
            nick,
            resume,
            password,
        } => Ok(Hello {
            version,
            nick,
            resume,
            password,
            reference: parsed.reference,
        }),
        _ => Err((
            Failure::new(ErrorCode::HandshakeRequired, "say hello first"),
            parsed.reference,
        )),
    }
}

/// The server-wide ban on a client about to register, as the failure
/// that refuses it.
fn banned(
    shared: &Shared,
    nick: Option<&Nickname>,
    account: Option<&Nickname>,
    peer: &PeerAddr,
) -> Option<Failure> {
    let fallback = nick_for(peer);
    let actor = Actor {
        nick: nick.unwrap_or(&fallback),
        account,
        ip: peer.ip(),
    };
    let ban = shared.moderation.server_ban(&actor, now_ms())?;
    let refusal = Refusal::banned("this server", &ban);
    Some(Failure::new(refusal.code, refusal.message))
}

/// Registers a text-dialect client under a nick from its address, greets
/// it and puts it in the default room. Returns `None` when the connection
/// must close (it was told why).
pub(super) async fn text(shared: &Arc<Shared>, peer: PeerAddr, outbox: Outbox) -> Option<Session> {
    if let Some(ban) = banned(shared, None, None, &peer) {
        error(&outbox, ban, None);
        bye(&outbox, "banned");
        return None;
    }
    let accounts = &shared.accounts;
    let (id, nick) = match shared
        .rooms
        .register_unique(&nick_for(&peer), &outbox, |n| accounts.is_registered(n))
        .await
    {
        Ok(registered) => registered,
        Err(e) => {
            // Only a cluster that cannot be reached refuses a nick with a
            // free suffix; the text client is told and closed.
            error(&outbox, e.into(), None);
            bye(&outbox, "the cluster is unavailable");
            return None;
        }
    };
    let mut session = Session::new(shared, id, nick, Dialect::Text, outbox, peer.ip());
    session.note_seen();
    session.welcome(None);
    let room = shared.limits.default_room.clone();
    match session.join(&room, Since::Recent(None)).await {
        Ok(_) => session.current = Some(room),
        Err(failure) => session.fail(failure, None),
    }
    Some(session)
}

/// A nick from the peer's address, as the seed named users by IP:
/// `127-0-0-1-50000`.
fn nick_for(peer: &PeerAddr) -> Nickname {
    let raw = match peer {
        PeerAddr::Net(addr) => {
            let ip: String = addr
                .ip()
                .to_string()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            format!("{}-{}", ip.trim_matches('-'), addr.port())
        }
        _ => "guest".to_owned(),
    };
    // Long IPv6 addresses keep their most specific end.
    let start = raw.len().saturating_sub(protocol::MAX_NICK_LEN);
    let trimmed = raw[start..].trim_start_matches('-');
    Nickname::new(trimmed).unwrap_or_else(|_| Nickname::new("guest").expect("valid literal"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn nicks_come_from_the_peer_address() {
        let v4: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(nick_for(&PeerAddr::Net(v4)).as_str(), "127-0-0-1-50000");
        let v6: SocketAddr = "[2001:db8:85a3::8a2e:370:7334]:50000".parse().unwrap();
        let nick = nick_for(&PeerAddr::Net(v6));
        assert!(nick.as_str().ends_with("7334-50000"), "{nick}");
        let local6: SocketAddr = "[::1]:7".parse().unwrap();
        assert_eq!(nick_for(&PeerAddr::Net(local6)).as_str(), "1-7");
    }
}
