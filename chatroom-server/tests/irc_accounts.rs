//! Accounts and moderation from IRC, against the real binary over raw
//! IRC sockets: logging in with `PASS` and with SASL PLAIN (and the
//! refusals of both), then an IRC operator's `KICK`, `MODE`, `TOPIC` and
//! `INVITE` run by the same engine as the other dialects, seen by IRC
//! members as the lines IRC clients keep channel state by, and refusals
//! as the usual numerics.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::irc_client::{IrcClient, irc_addr};
use common::json_client::JsonClient;
use common::server::Server;
use common::text_client::TextClient;

const WAIT: Duration = Duration::from_secs(10);

/// A server with small argon2 costs (the debug build would wait on the
/// real ones), a chat listener and an IRC listener; `root` is a server
/// operator.
fn start() -> (Server, SocketAddr, SocketAddr) {
    let mut server = Server::builder()
        .listen("127.0.0.1:0")
        .set("irc_listen", "127.0.0.1:0")
        .set("sniff_ms", "100")
        .set("operators", "root")
        .settings(&[("hash_memory_kib", "64"), ("hash_iterations", "1")])
        .start();
    let chat = server.addr();
    let irc = irc_addr(&mut server);
    (server, chat, irc)
}

/// Registers `nick` with `password` from the text dialect, then quits so
/// that the nick is free for IRC.
fn register(chat: SocketAddr, nick: &str, password: &str) {
    let (mut c, _) = TextClient::greeted(chat, WAIT);
    c.send(&format!("/nick {nick}"));
    c.line_with(&format!("is now known as {nick}"));
    c.send(&format!("/register {password}"));
    c.line_with("* you are logged in as");
    c.send("/quit");
    c.expect_closed();
}

/// Standard base64 with padding, for SASL payloads.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Registers over IRC as `nick`, logged in with SASL PLAIN.
fn sasl_registered(irc: SocketAddr, nick: &str, password: &str) -> IrcClient {
    let mut c = IrcClient::connect(irc, WAIT);
    c.send("CAP LS 302");
    c.expect("sasl=PLAIN");
    c.send("CAP REQ :sasl");
    c.expect(" ACK :sasl");
    c.send(&format!("NICK {nick}"));
    c.send(&format!("USER {nick} 0 * :{nick}"));
    c.send("AUTHENTICATE PLAIN");
    c.expect("AUTHENTICATE +");
    c.send(&format!(
        "AUTHENTICATE {}",
        base64(format!("\0{nick}\0{password}").as_bytes())
    ));
    c.expect(&format!(" 900 {nick} {nick}!{nick}@"));
    c.expect(" 903 ");
    c.send("CAP END");
    c.expect(" 001 ");
    c.expect(" 422 ");
    c
}

#[test]
fn irc_logs_in_with_pass_or_sasl_plain_and_is_refused_otherwise() {
    let (_server, chat, irc) = start();
    register(chat, "chair", "chair-password");

    // A wrong PASS: 464, and the nick refused as today.
    let mut wrong = IrcClient::connect(irc, WAIT);
    wrong.send("PASS not-the-password");
    wrong.send("NICK chair");
    wrong.send("USER chair 0 * :x");
    wrong.expect(" 464 chair :Password incorrect");
    wrong.expect(" 433 * chair :");
    // Without PASS the nick stays refused; another nick is a guest's.
    wrong.send("NICK chair");
    wrong.expect(" 433 * chair :");
    wrong.send("NICK guest7");
    wrong.expect(" 001 guest7 ");
    wrong.send("QUIT");
    wrong.until_closed();

    // The right PASS logs in to the nick's account.
    let mut by_pass = IrcClient::connect(irc, WAIT);
    by_pass.send("PASS chair-password");
    by_pass.send("NICK chair");
    by_pass.send("USER chair 0 * :x");
    by_pass.expect(" 900 chair chair!chair@");
    by_pass.expect(" 001 chair ");
    by_pass.send("QUIT");
    by_pass.until_closed();

    // SASL: an unknown mechanism, an abort, a wrong password, then the
    // right one; a second AUTHENTICATE after success is refused.
    let mut sasl = IrcClient::connect(irc, WAIT);
    sasl.send("CAP LS");
    let ls = sasl.expect(" LS :");
    assert!(ls.contains(" sasl ") && !ls.contains("sasl="), "{ls}");
    sasl.send("CAP REQ :sasl");
    sasl.expect(" ACK :sasl");
    sasl.send("NICK chair");
    sasl.send("USER chair 0 * :x");
    sasl.send("AUTHENTICATE EXTERNAL");
    sasl.expect(" 908 chair PLAIN :");
    sasl.expect(" 904 chair :");
    sasl.send("AUTHENTICATE PLAIN");
    sasl.expect("AUTHENTICATE +");
    sasl.send("AUTHENTICATE *");
    sasl.expect(" 906 chair :");
    sasl.send("AUTHENTICATE PLAIN");
    sasl.expect("AUTHENTICATE +");
    sasl.send(&format!(
        "AUTHENTICATE {}",
        base64(b"\0chair\0wrong-password")
    ));
    sasl.expect(" 904 chair :SASL authentication failed");
    sasl.send("AUTHENTICATE PLAIN");
    sasl.expect("AUTHENTICATE +");
    sasl.send("AUTHENTICATE !!!!");
    sasl.expect(" 904 chair :SASL authentication failed: the payload is not base64");
    sasl.send("AUTHENTICATE PLAIN");
    sasl.expect("AUTHENTICATE +");
    sasl.send(&format!(
        "AUTHENTICATE {}",
        base64(b"chair\0chair\0chair-password")
    ));
    sasl.expect(" 900 chair chair!chair@chatroom chair :You are now logged in as chair");
    sasl.expect(" 903 chair :");
    sasl.send("AUTHENTICATE PLAIN");
    sasl.expect(" 907 chair :");
    sasl.send("CAP END");
    sasl.expect(" 001 chair ");
    sasl.send("QUIT");
    sasl.until_closed();

    // A payload longer than any account needs: 905.
    let mut long = IrcClient::connect(irc, WAIT);
    long.send("AUTHENTICATE PLAIN");
    long.expect("AUTHENTICATE +");
    for _ in 0..4 {
        long.send(&format!("AUTHENTICATE {}", "A".repeat(400)));
    }
    long.expect(" 905 * :");
}

#[test]
fn an_irc_operator_kicks_bans_and_sets_modes_seen_as_irc_lines() {
    let (_server, chat, irc) = start();
    register(chat, "chair", "chair-password");
    register(chat, "helper", "helper-password");

    // The first logged-in user in an empty room owns it.
    let mut chair = sasl_registered(irc, "chair", "chair-password");
    chair.send("JOIN #hall");
    chair.expect("you own #hall");
    chair.expect(" 366 ");
    let mut dave = IrcClient::joined(irc, "dave", "#hall", WAIT);
    chair.expect("dave!dave@chatroom JOIN #hall");
    let (mut json, _) = JsonClient::hello(chat, "jay", WAIT);
    json.join("hall");
    chair.expect("jay!jay@chatroom JOIN #hall");

    // A guest is refused with 482, and its KICK changes nothing.
    dave.send("KICK #hall chair :bye");
    dave.expect(" 482 dave #hall :You're not channel operator");
    dave.send("MODE #hall +m");
    dave.expect(" 482 dave #hall :");
    dave.send("TOPIC #hall :mine");
    dave.expect(" 482 dave #hall :");
    // Errors of the operator: no such nick, not on the channel, unknown
    // mode letter, channel not joined.
    chair.send("KICK #hall nobody");
    chair.expect(" 441 chair nobody #hall :");
    chair.send("MODE #hall +x");
    chair.expect(" 472 chair x :");
    chair.send("KICK #elsewhere dave");
    chair.expect(" 442 chair #elsewhere :");
    chair.send("MODE #hall +o nobody");
    chair.expect(" 401 chair nobody :");

    // TOPIC sets; everyone sees TOPIC (JSON: a topic frame).
    chair.send("TOPIC #hall :agenda: budget");
    dave.expect(":chair!chair@chatroom TOPIC #hall :agenda: budget");
    assert_eq!(json.next_of("topic")["topic"], "agenda: budget");

    // Modes: +k +l +m, the query and the JSON members' view.
    chair.send("MODE #hall +kl sesame 5");
    dave.expect(":chair!chair@chatroom MODE #hall +k *");
    dave.expect(":chair!chair@chatroom MODE #hall +l 5");
    chair.send("MODE #hall");
    chair.expect(" 324 chair #hall +kl sesame 5");
    dave.send("MODE #hall");
    dave.expect(" 324 dave #hall +kl * 5");
    chair.send("MODE #hall -kl");
    dave.expect("MODE #hall -k");
    dave.expect("MODE #hall -l");
    chair.send("MODE #hall +m");
    dave.expect("MODE #hall +m");
    dave.send("PRIVMSG #hall :can I speak?");
    dave.expect(" 404 dave #hall :");
    chair.send("MODE #hall +v dave");
    dave.expect(":chair!chair@chatroom MODE #hall +v dave");
    // NAMES marks the owner `@` and the voiced `+`.
    dave.send("NAMES #hall");
    let names = dave.expect(" 353 dave = #hall :");
    let names: Vec<&str> = names.rsplit(" :").next().unwrap().split(' ').collect();
    for nick in ["@chair", "+dave", "jay"] {
        assert!(names.contains(&nick), "{nick} in {names:?}");
    }
    dave.send("PRIVMSG #hall :now I can");
    chair.expect("PRIVMSG #hall :now I can");
    chair.send("MODE #hall -m");
    dave.expect("MODE #hall -m");
    // +o takes an account; the owner grants it.
    chair.send("MODE #hall +o helper");
    dave.expect(":chair!chair@chatroom MODE #hall +o helper");

    // KICK: the room sees KICK (JSON: a moderated event), the victim
    // too, and it is out of the channel.
    chair.send("KICK #hall dave :off topic");
    let kick = ":chair!chair@chatroom KICK #hall dave :off topic";
    chair.expect(kick);
    dave.expect(kick);
    let event = loop {
        let event = json.next_of("moderated");
        if event["action"] == "kick" {
            break event;
        }
    };
    assert_eq!(event["target"], "dave", "{event}");
    dave.send("PRIVMSG #hall :still here");
    dave.expect(" 404 dave #hall :");

    // A ban by IRC mask: MODE +b for all, the member removed as a KICK,
    // listed by MODE +b, and JOIN refused with 474; -b lifts it.
    dave.join("#hall");
    chair.expect("dave!dave@chatroom JOIN #hall");
    chair.send("MODE #hall +b dave!*@*");
    dave.expect(":chair!chair@chatroom MODE #hall +b dave!*@*");
    dave.expect(":chair!chair@chatroom KICK #hall dave :banned by chair");
    chair.expect(":chair!chair@chatroom KICK #hall dave :banned by chair");
    chair.send("MODE #hall +b");
    let list = chair.lines_until(" 368 ");
    assert!(
        list.iter()
            .any(|l| l.contains(" 367 chair #hall dave!*@* chair")),
        "{list:?}"
    );
    dave.send("JOIN #hall");
    dave.expect(" 474 dave #hall :");
    chair.send("MODE #hall -b dave!*@*");
    chair.expect(":chair!chair@chatroom MODE #hall -b dave!*@*");
    dave.join("#hall");

    // Moderation by another dialect is shown to IRC the same way.
    let mut helper = TextClient::greeted(chat, WAIT).0;
    helper.send("/login helper helper-password");
    helper.line_with("* you are logged in as helper");
    helper.send("/join hall");
    helper.send("/kick dave again");
    dave.expect(":helper!helper@chatroom KICK #hall dave :again");

    // Invite-only: refused without, let in with an INVITE.
    chair.send("MODE #hall +i");
    chair.expect("MODE #hall +i");
    dave.send("JOIN #hall");
    dave.expect(" 473 dave #hall :");
    chair.send("INVITE dave #hall");
    chair.expect(" 341 chair dave #hall");
    dave.expect(":chair!chair@chatroom INVITE dave #hall");
    dave.join("#hall");
}

#[test]
fn a_kill_reason_reaches_the_victim_in_every_dialect() {
    let (_server, chat, irc) = start();
    register(chat, "root", "root-password");
    let mut root = sasl_registered(irc, "root", "root-password");

    let mut victim_irc = IrcClient::registered(irc, "ircvictim", WAIT);
    root.send("KILL ircvictim :spamming links");
    let lines = victim_irc.until_closed();
    assert!(
        lines.iter().any(|l| l
            .contains("ERROR :Closing link: a server operator disconnected you: spamming links")),
        "{lines:?}"
    );

    let (mut victim_json, _) = JsonClient::hello(chat, "jsonvictim", WAIT);
    let (mut victim_text, _) = TextClient::greeted(chat, WAIT);
    victim_text.send("/nick textvictim");
    victim_text.line_with("is now known as textvictim");
    root.send("KILL jsonvictim :flooding");
    let error = victim_json.next_of("error");
    assert_eq!(error["code"], "killed", "{error}");
    assert_eq!(
        error["message"], "a server operator disconnected you: flooding",
        "{error}"
    );
    assert_eq!(victim_json.next_of("bye")["reason"], "killed: flooding");
    root.send("KILL textvictim :go away");
    victim_text.line_with("a server operator disconnected you: go away");
    victim_text.expect_closed();
    // Only server operators kill.
    let mut guest = IrcClient::registered(irc, "guest", WAIT);
    guest.send("KILL root :no");
    guest.expect(" 481 guest :");
}
