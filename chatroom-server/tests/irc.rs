//! The IRC dialect against the real binary: an IRC client (raw lines,
//! written here) chats with a person on `nc` (the text dialect) and a
//! program (the native JSON dialect) in one room; every refusal is a
//! numeric; nothing anyone sends can break another client's stream.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use common::irc_client::{IrcClient, irc_addr};
use common::json_client::JsonClient;
use common::server::Server;
use common::text_client::TextClient;

/// How long any one read may wait.
const WAIT: Duration = Duration::from_secs(10);

/// A server with a chat listener and an IRC listener; returns both
/// addresses.
fn start() -> (Server, SocketAddr, SocketAddr) {
    start_with(&[])
}

/// [`start`], with more settings.
fn start_with(settings: &[(&str, &str)]) -> (Server, SocketAddr, SocketAddr) {
    let mut server = Server::builder()
        .listen("127.0.0.1:0")
        .set("irc_listen", "127.0.0.1:0")
        // The text client's greeting comes after the sniff window.
        .set("sniff_ms", "100")
        .settings(settings)
        .start();
    let chat = server.addr();
    let irc = irc_addr(&mut server);
    (server, chat, irc)
}

#[test]
fn registration_negotiates_caps_and_greets_with_honest_isupport() {
    let (_server, _, irc) = start();
    let mut alice = IrcClient::connect(irc, WAIT);
    alice.send("CAP LS 302");
    let ls = alice.expect(" CAP ");
    for cap in [
        "away-notify",
        "batch",
        "draft/chathistory",
        "echo-message",
        "message-tags",
        "server-time",
    ] {
        assert!(ls.contains(" LS :") && ls.contains(cap), "{cap}: {ls}");
    }
    alice.send("NICK alice");
    alice.send("USER alice 0 * :Alice");
    alice.send("CAP REQ :server-time nonsense");
    assert!(alice.expect(" CAP ").contains(" NAK "));
    alice.send("CAP REQ :server-time");
    assert!(alice.expect(" CAP ").contains(" ACK :server-time"));
    // Registration waits for CAP END.
    alice.send("PING :before-end");
    assert!(alice.line().ends_with(":before-end"));
    alice.send("CAP END");
    let greeting = alice.lines_until(" 422 ");
    let codes: Vec<&str> = greeting
        .iter()
        .filter_map(|l| l.split(' ').nth(1))
        .collect();
    assert_eq!(codes, ["001", "002", "003", "004", "005", "422"]);
    assert!(greeting[0].contains(" 001 alice :") && greeting[0].contains("alice!alice@"));
    let isupport = &greeting[4];
    for token in [
        "CASEMAPPING=ascii",
        "CHANTYPES=#",
        "NICKLEN=32",
        "CHANNELLEN=33",
        "LINELEN=512",
        "CHATHISTORY=",
        "MSGREFTYPES=msgid",
    ] {
        assert!(isupport.contains(token), "{token} missing: {isupport}");
    }
    alice.send("PING :tok");
    assert!(alice.expect("PONG").ends_with(":tok"));
}

#[test]
fn irc_text_and_json_users_chat_in_one_room() {
    let (_server, chat, irc) = start();
    let mut alice = IrcClient::registered(irc, "alice", WAIT);
    alice.send("JOIN #lobby");
    let join = alice.line();
    assert!(
        join.starts_with(":alice!alice@") && join.ends_with(" JOIN #lobby"),
        "{join}"
    );
    let names = alice.expect(" 353 ");
    assert!(names.ends_with(" = #lobby :alice"), "{names}");
    alice.expect(" 366 alice #lobby ");

    let mut bob = JsonClient::hello_in(chat, "bob", "lobby", WAIT);
    assert!(alice.line().starts_with(":bob!bob@"));
    let (mut nc, nc_nick) = TextClient::greeted(chat, WAIT);
    let joined = alice.line();
    assert_eq!(
        joined.split(' ').next().unwrap(),
        format!(":{nc_nick}!{nc_nick}@chatroom"),
        "{joined}"
    );

    nc.send("hello from nc");
    assert!(
        alice
            .expect("PRIVMSG")
            .ends_with("PRIVMSG #lobby :hello from nc")
    );
    bob.say("lobby", "hello from json");
    assert_eq!(
        alice.expect("PRIVMSG"),
        ":bob!bob@chatroom PRIVMSG #lobby :hello from json"
    );

    // A second IRC client in the same room.
    let mut dora = IrcClient::joined(irc, "dora", "#lobby", WAIT);
    assert_eq!(alice.expect(" JOIN "), ":dora!dora@chatroom JOIN #lobby");
    dora.send("PRIVMSG #lobby :hello from dora");
    assert_eq!(
        alice.expect("PRIVMSG"),
        ":dora!dora@chatroom PRIVMSG #lobby :hello from dora"
    );
    assert_eq!(
        nc.line_with("hello from dora").trim_end(),
        "<dora> hello from dora"
    );
    assert_eq!(bob.next_of("message")["from"], json!("dora"));

    alice.send("PRIVMSG #lobby :hello from irc");
    assert_eq!(
        dora.expect("PRIVMSG"),
        ":alice!alice@chatroom PRIVMSG #lobby :hello from irc"
    );
    assert_eq!(
        nc.line_with("hello from irc").trim_end(),
        "<alice> hello from irc"
    );
    let said = bob.next_of("message");
    assert_eq!(
        (&said["from"], &said["text"]),
        (&json!("alice"), &json!("hello from irc"))
    );

    // `/me` both ways.
    alice.send("PRIVMSG #lobby :\u{1}ACTION waves\u{1}");
    assert_eq!(nc.line_with("waves").trim_end(), "* alice waves");
    let action = bob.next_of("message");
    assert_eq!(action["action"], json!(true));
    nc.send("/me nods");
    assert!(alice.expect("PRIVMSG").ends_with(":\u{1}ACTION nods\u{1}"));

    // Whispers both ways.
    alice.send("PRIVMSG bob :psst");
    let private = bob.next_of("private");
    assert_eq!(
        (&private["from"], &private["text"]),
        (&json!("alice"), &json!("psst"))
    );
    bob.send(&json!({"type": "whisper", "to": "alice", "text": "back"}));
    assert_eq!(
        alice.expect("PRIVMSG"),
        ":bob!bob@chatroom PRIVMSG alice :back"
    );
}

/// `say`s written together make a run, which the other members' queues
/// hold as one joined buffer (docs/architecture.md, "Runs"): IRC and text
/// users still get one line per message, in order.
#[test]
fn says_sent_together_reach_irc_and_text_users_a_line_each_in_order() {
    let (_server, chat, irc) = start();
    let mut alice = IrcClient::joined(irc, "alice", "#lobby", WAIT);
    let (mut nc, _) = TextClient::greeted(chat, WAIT);
    let mut bob = JsonClient::hello_in(chat, "bob", "lobby", WAIT);
    alice.expect(":bob!bob@");

    let lines: String = (1..=5)
        .map(|i| {
            format!(
                "{}\n",
                json!({"type": "say", "room": "lobby", "text": format!("run {i}")})
            )
        })
        .collect();
    bob.conn().send_raw(lines.as_bytes()).unwrap();
    for i in 1..=5 {
        assert_eq!(
            alice.expect("PRIVMSG"),
            format!(":bob!bob@chatroom PRIVMSG #lobby :run {i}")
        );
        assert_eq!(
            nc.line_with(&format!("run {i}")).trim_end(),
            format!("<bob> run {i}")
        );
    }
}

#[test]
fn nick_changes_parts_and_quits_are_seen_by_every_dialect() {
    let (_server, chat, irc) = start();
    let mut alice = IrcClient::joined(irc, "alice", "#lobby", WAIT);
    let mut carol = IrcClient::joined(irc, "carol", "#lobby", WAIT);
    alice.expect(":carol!carol@chatroom JOIN #lobby");
    let mut bob = JsonClient::hello_in(chat, "bob", "lobby", WAIT);
    alice.expect("JOIN");
    carol.expect("JOIN");

    // A nick held in another dialect is taken.
    alice.send("NICK bob");
    assert!(alice.expect(" 433 ").contains(" bob :"));
    alice.send("NICK alicia");
    assert_eq!(alice.line(), ":alice!alice@chatroom NICK :alicia");
    assert_eq!(carol.expect("NICK"), ":alice!alice@chatroom NICK :alicia");
    let renamed = bob.next_of("nick_changed");
    assert_eq!(
        (&renamed["old"], &renamed["new"]),
        (&json!("alice"), &json!("alicia"))
    );

    carol.send("PART #lobby");
    assert_eq!(carol.line(), ":carol!carol@chatroom PART #lobby");
    assert_eq!(alice.expect("PART"), ":carol!carol@chatroom PART #lobby");
    let left = bob.next_of("left");
    assert_eq!(left["nick"], json!("carol"));

    bob.send(&json!({"type": "leave", "room": "lobby"}));
    assert_eq!(alice.expect("PART"), ":bob!bob@chatroom PART #lobby");
    bob.join("lobby");
    alice.expect(":bob!bob@chatroom JOIN #lobby");

    alice.send("QUIT :gone fishing");
    let closing = alice.until_closed();
    assert!(
        closing.last().unwrap().contains("ERROR :Closing link"),
        "{closing:?}"
    );
    let left = bob.next_of("left");
    assert_eq!(
        (&left["nick"], &left["reason"]),
        (&json!("alicia"), &json!("gone fishing"))
    );
    // A JSON client that disconnects is an IRC QUIT.
    carol.join("#lobby");
    drop(bob);
    assert!(carol.expect("QUIT").starts_with(":bob!bob@chatroom QUIT :"));
}

#[test]
fn bad_input_is_answered_with_numerics_and_the_connection_goes_on() {
    let (_server, _, irc) = start();
    let mut eve = IrcClient::connect(irc, WAIT);
    eve.send("JOIN #lobby");
    assert!(eve.line().contains(" 451 * :"));
    eve.send("NICK");
    assert!(eve.line().contains(" 431 * :"));
    eve.send("NICK bad!nick");
    assert!(eve.line().contains(" 432 * bad!nick :"));
    eve.send("USER eve");
    assert!(eve.line().contains(" 461 * USER :"));
    eve.send("NICK eve");
    eve.send("USER eve 0 * :Eve");
    eve.expect(" 422 ");

    let checks: [(&str, &str); 13] = [
        ("USER eve 0 * :again", " 462 eve :"),
        ("PRIVMSG nobody :hi", " 401 eve nobody :"),
        ("JOIN lobby", " 403 eve lobby :"),
        ("PRIVMSG #elsewhere :hi", " 404 eve #elsewhere :"),
        ("PRIVMSG", " 411 eve :"),
        ("PRIVMSG #lobby", " 412 eve :"),
        ("FROBNICATE now", " 421 eve FROBNICATE :"),
        ("NICK", " 431 eve :"),
        ("NICK -bad", " 432 eve -bad :"),
        ("PART #elsewhere", " 442 eve #elsewhere :"),
        ("PART", " 461 eve PART :"),
        ("TOPIC #elsewhere", " 442 eve #elsewhere :"),
        ("MODE", " 461 eve MODE :"),
    ];
    for (sent, answer) in checks {
        eve.send(sent);
        let line = eve.line();
        assert!(line.contains(answer), "{sent:?} was answered {line:?}");
    }
    let long = format!("PRIVMSG #lobby :{}", "x".repeat(600));
    eve.send(&long);
    assert!(eve.line().contains(" 417 eve :"));
    eve.send_raw(b"\xff\xfe\r\n");
    assert!(eve.line().contains("NOTICE eve :line is not valid UTF-8"));
    eve.send("PING :still-here");
    assert!(eve.line().ends_with("PONG chatroom :still-here"));
}

#[test]
fn queries_are_answered() {
    let (_server, chat, irc) = start();
    let mut alice = IrcClient::joined(irc, "alice", "#lobby", WAIT);
    let _bob = JsonClient::hello_in(chat, "bob", "lobby", WAIT);
    alice.expect("JOIN #lobby");

    alice.send("NAMES #lobby");
    assert!(alice.line().ends_with(" 353 alice = #lobby :alice bob"));
    assert!(alice.line().contains(" 366 alice #lobby :"));
    alice.send("WHO #lobby");
    let who = alice.lines_until(" 315 ");
    assert_eq!(who.len(), 3, "{who:?}");
    assert!(who[1].contains(" 352 alice #lobby bob chatroom chatroom bob H :0 bob"));
    alice.send("WHOIS bob");
    let whois = alice.lines_until(" 318 ");
    assert!(
        whois[0].contains(" 311 alice bob bob chatroom * :bob"),
        "{whois:?}"
    );
    assert!(whois[1].contains(" 319 alice bob :#lobby"), "{whois:?}");
    alice.send("LIST");
    let list = alice.lines_until(" 323 ");
    assert!(
        list.iter().any(|l| l.contains(" 322 alice #lobby 2 :")),
        "{list:?}"
    );
    alice.send("TOPIC #lobby");
    assert!(alice.line().contains(" 331 alice #lobby :"));
    alice.send("MODE #lobby");
    assert!(alice.line().ends_with(" 324 alice #lobby +"));
    alice.send("MODE alice +i");
    assert!(alice.line().ends_with(" 221 alice +"));
    alice.send("USERHOST bob nobody alice");
    assert!(
        alice
            .line()
            .ends_with(" 302 alice :bob=+bob@chatroom alice=+alice@chatroom")
    );
    alice.send("ISON :bob nobody");
    assert!(alice.line().ends_with(" 303 alice :bob"));
    alice.send("WHOWAS gone");
    assert!(alice.line().contains(" 406 alice gone :"));
    assert!(alice.line().contains(" 369 alice gone :"));
    alice.send("MOTD");
    assert!(alice.line().contains(" 422 alice :"));
    alice.send("AWAY :lunch");
    assert!(alice.line().contains(" 306 alice :"));
    alice.send("AWAY");
    assert!(alice.line().contains(" 305 alice :"));
}

#[test]
fn nothing_said_can_break_another_clients_stream() {
    let (_server, chat, irc) = start();
    let mut victim = IrcClient::joined(irc, "victim", "#lobby", WAIT);
    let mut mallory = IrcClient::joined(irc, "mallory", "#lobby", WAIT);
    let mut json = JsonClient::hello_in(chat, "jason", "lobby", WAIT);
    let (mut nc, _) = TextClient::greeted(chat, WAIT);

    // Line breaks and NUL inside a line are refused, in every dialect.
    mallory.send_raw(b"PRIVMSG #lobby :hi\rQUIT :pwned\r\n");
    assert!(mallory.expect("NOTICE").contains("message dropped"));
    mallory.send_raw(b"PRIVMSG victim :a\0KILL victim\r\n");
    assert!(mallory.expect("NOTICE").contains("message dropped"));
    let refused = json.try_say("lobby", "hi\r\nQUIT :pwned");
    assert_eq!(refused["type"], "error", "{refused}");
    nc.send("hi\rPRIVMSG #lobby :pwned");
    // Text that looks like a command or a prefix stays text.
    mallory.send("PRIVMSG #lobby ::server 001 victim :fake");
    json.say("lobby", ":evil!e@h KICK #lobby victim :bye");
    nc.send("JOIN #other");
    // A quit reason with a break is dropped, not passed on.
    mallory.send_raw(b"QUIT :bye\rPRIVMSG #lobby :x\r\n");
    json.say("lobby", "marker from json");
    nc.send("marker from nc");

    // Every line the victim got is a well-formed line of its own (the
    // client checks each), and the texts arrived whole as trailing
    // parameters. Each sender's lines keep their order; the three
    // senders' lines interleave, so the victim reads until it has the
    // last of each.
    let mut seen = Vec::new();
    let done = |seen: &[String]| {
        ["marker from json", "marker from nc", " QUIT "]
            .iter()
            .all(|needle| seen.iter().any(|l| l.contains(needle)))
    };
    while !done(&seen) {
        seen.push(victim.line());
    }
    for expected in [
        ":mallory!mallory@chatroom PRIVMSG #lobby ::server 001 victim :fake",
        ":jason!jason@chatroom PRIVMSG #lobby ::evil!e@h KICK #lobby victim :bye",
        "PRIVMSG #lobby :JOIN #other",
    ] {
        assert!(
            seen.iter().any(|l| l.ends_with(expected)),
            "{expected}: {seen:?}"
        );
    }
    assert_eq!(
        seen.iter().filter(|l| l.contains(" PRIVMSG ")).count(),
        5,
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|l| !l.contains("pwned") && !l.starts_with(":evil") && !l.contains(" KILL ")),
        "{seen:?}"
    );
    let quit = seen
        .iter()
        .find(|l| l.contains(" QUIT "))
        .expect("mallory's quit");
    assert!(
        quit.starts_with(":mallory!mallory@chatroom QUIT :"),
        "{quit}"
    );
    assert!(!quit.contains("PRIVMSG"), "{quit}");
}

#[test]
fn a_flood_is_slowed_to_the_rate_not_dropped() {
    let (_server, chat, irc) = start_with(&[("rate_per_sec", "20"), ("rate_burst", "5")]);
    let mut flood = IrcClient::joined(irc, "flood", "#lobby", WAIT);
    let mut bob = JsonClient::hello_in(chat, "bob", "lobby", WAIT);
    flood.expect("JOIN #lobby");
    let started = std::time::Instant::now();
    let lines: String = (1..=25)
        .map(|i| format!("PRIVMSG #lobby :line {i}\r\n"))
        .collect();
    flood.send_raw(lines.as_bytes());
    for i in 1..=25 {
        let message = bob.next_of("message");
        assert_eq!(message["text"], json!(format!("line {i}")));
    }
    // Five go at once, the other twenty at 20 a second.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // The flooder is still served.
    flood.send("PING :after");
    assert!(flood.expect("PONG").ends_with(":after"));
}

#[test]
fn a_silent_client_is_pinged_then_closed() {
    let (_server, _, irc) = start_with(&[("ping_interval_secs", "1"), ("idle_timeout_secs", "2")]);
    let mut quiet = IrcClient::registered(irc, "quiet", WAIT);
    assert_eq!(quiet.line(), ":chatroom PING :chatroom");
    quiet.send("PONG :chatroom");
    assert_eq!(quiet.line(), ":chatroom PING :chatroom");
    let rest = quiet.until_closed();
    assert_eq!(rest, [":chatroom ERROR :Closing link: ping timeout"]);
}

#[test]
fn caps_add_time_ids_echo_and_the_backlog_on_join() {
    let (_server, chat, irc) = start();
    let mut bob = JsonClient::hello_in(chat, "bob", "lobby", WAIT);
    bob.say("lobby", "said before");
    let mut alice = IrcClient::connect(irc, WAIT);
    alice.send("CAP LS 302");
    alice.send("CAP REQ :server-time message-tags echo-message");
    alice.send("NICK alice");
    alice.send("USER alice 0 * :Alice");
    alice.send("CAP END");
    alice.expect(" 422 ");
    alice.send("JOIN #lobby");
    let joined = alice.lines_until(" 366 ");
    assert!(joined[0].ends_with(" JOIN #lobby"), "{joined:?}");
    let backlog = &joined[1];
    assert!(
        backlog.starts_with("@time=") && backlog.contains(";msgid=lobby/1 "),
        "{joined:?}"
    );
    assert!(backlog.ends_with(":bob!bob@chatroom PRIVMSG #lobby :said before"));

    alice.send("PRIVMSG #lobby :echoed");
    let echo = alice.expect("PRIVMSG");
    assert!(echo.contains(";msgid=lobby/2 "), "{echo}");
    assert!(echo.ends_with(":alice!alice@chatroom PRIVMSG #lobby :echoed"));
    assert_eq!(bob.next_of("message")["id"], json!(2));
    alice.send("PRIVMSG bob :whispered");
    assert!(
        alice
            .expect("PRIVMSG")
            .ends_with(":alice!alice@chatroom PRIVMSG bob :whispered")
    );
    // Capabilities are fixed once registered.
    alice.send("CAP REQ :-server-time");
    assert!(alice.expect(" CAP ").contains(" NAK "));
}

/// Registers `nick` with the capabilities in `caps`.
fn with_caps(irc: SocketAddr, nick: &str, caps: &str) -> IrcClient {
    let mut client = IrcClient::connect(irc, WAIT);
    client.send("CAP LS 302");
    client.send(&format!("CAP REQ :{caps}"));
    client.send(&format!("NICK {nick}"));
    client.send(&format!("USER {nick} 0 * :{nick}"));
    assert!(client.expect(" CAP ").contains(" LS :"));
    let ack = client.expect(" CAP ");
    assert!(ack.contains(" ACK :"), "{ack}");
    client.send("CAP END");
    client.expect(" 422 ");
    client
}

#[test]
fn history_comes_in_a_chathistory_batch_on_join_and_on_request() {
    let (_server, chat, irc) = start();
    let mut bob = JsonClient::hello_in(chat, "bob", "lobby", WAIT);
    for i in 1..=5 {
        bob.say("lobby", &format!("old {i}"));
    }
    let mut alice = with_caps(
        irc,
        "alice",
        "batch server-time message-tags draft/chathistory",
    );
    alice.send("JOIN #lobby");
    let joined = alice.lines_until(" 366 ");
    assert_eq!(joined[0], ":alice!alice@chatroom JOIN #lobby", "{joined:?}");
    assert_eq!(joined[1], ":chatroom BATCH +h1 chathistory #lobby");
    for (i, line) in joined[2..7].iter().enumerate() {
        let n = i + 1;
        assert!(
            line.starts_with("@batch=h1;time=20")
                && line.contains(&format!(";msgid=lobby/{n} "))
                && line.ends_with(&format!(":bob!bob@chatroom PRIVMSG #lobby :old {n}")),
            "{joined:?}"
        );
    }
    assert_eq!(joined[7], ":chatroom BATCH -h1");
    assert!(joined[8].contains(" 353 "), "{joined:?}");
    // Live messages are not in the batch.
    bob.say("lobby", "live");
    let live = alice.expect("PRIVMSG");
    assert!(
        live.starts_with("@time=") && live.ends_with(":live"),
        "{live}"
    );

    let page = |alice: &mut IrcClient, ask: &str| -> Vec<String> {
        alice.send(&format!("CHATHISTORY {ask}"));
        let lines = alice.lines_until(" BATCH -");
        assert!(lines[0].contains(" BATCH +") && lines[0].ends_with(" chathistory #lobby"));
        lines[1..lines.len() - 1]
            .iter()
            .map(|l| l.rsplit(" :").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(page(&mut alice, "LATEST #lobby * 2"), ["old 5", "live"]);
    assert_eq!(
        page(&mut alice, "LATEST #lobby msgid=lobby/4 10"),
        ["old 5", "live"]
    );
    assert_eq!(
        page(&mut alice, "BEFORE #lobby msgid=lobby/4 2"),
        ["old 2", "old 3"]
    );
    assert_eq!(
        page(&mut alice, "AFTER #lobby msgid=lobby/1 3"),
        ["old 2", "old 3", "old 4"]
    );
    assert!(page(&mut alice, "AFTER #lobby msgid=lobby/6 3").is_empty());
    alice.send("CHATHISTORY BEFORE #lobby timestamp=2026-12-04T10:00:00.000Z 5");
    assert!(
        alice
            .line()
            .contains(" FAIL CHATHISTORY INVALID_PARAMS BEFORE :"),
    );
    alice.send("CHATHISTORY LATEST #never-was * 5");
    assert!(
        alice
            .line()
            .contains(" FAIL CHATHISTORY INVALID_TARGET LATEST #never-was :"),
    );
    alice.send("CHATHISTORY AROUND #lobby msgid=lobby/3 5");
    assert!(
        alice
            .line()
            .contains(" FAIL CHATHISTORY UNKNOWN_COMMAND AROUND :")
    );
    alice.send("CHATHISTORY LATEST #lobby");
    assert!(
        alice
            .line()
            .contains(" FAIL CHATHISTORY NEED_MORE_PARAMS LATEST :")
    );
}

#[test]
fn away_changes_reach_those_who_share_a_room_and_asked() {
    let (_server, _, irc) = start();
    let mut alice = with_caps(irc, "alice", "away-notify");
    alice.join("#lobby");
    let mut dave = with_caps(irc, "dave", "away-notify");
    dave.join("#other");
    let mut carol = IrcClient::joined(irc, "carol", "#lobby", WAIT);
    alice.expect(":carol!carol@chatroom JOIN #lobby");

    carol.send("AWAY :at lunch");
    assert!(carol.line().contains(" 306 carol :"));
    assert_eq!(alice.line(), ":carol!carol@chatroom AWAY :at lunch");
    alice.send("WHOIS carol");
    let whois = alice.lines_until(" 318 ");
    assert!(
        whois
            .iter()
            .any(|l| l.ends_with(" 301 alice carol :at lunch")),
        "{whois:?}"
    );
    alice.send("WHO #lobby");
    let who = alice.lines_until(" 315 ");
    assert!(
        who.iter()
            .any(|l| l.contains(" 352 alice #lobby carol chatroom chatroom carol G ")),
        "{who:?}"
    );
    alice.send("PRIVMSG carol :are you there?");
    assert_eq!(alice.line(), ":chatroom 301 alice carol :at lunch");
    alice.send("USERHOST carol");
    assert!(alice.line().ends_with(" 302 alice :carol=-carol@chatroom"));

    // Joining while away tells the room, after the join.
    carol.send("JOIN #other");
    carol.expect(" 366 ");
    assert_eq!(dave.line(), ":carol!carol@chatroom JOIN #other");
    assert_eq!(dave.line(), ":carol!carol@chatroom AWAY :at lunch");
    carol.send("AWAY");
    assert!(carol.expect(" 305 ").contains(" 305 carol :"));
    assert_eq!(alice.line(), ":carol!carol@chatroom AWAY");
    assert_eq!(dave.line(), ":carol!carol@chatroom AWAY");
    // A client without away-notify is not told (carol did not ask).
    alice.send("AWAY :brb");
    alice.expect(" 306 ");
    carol.send("PING :marker");
    assert!(
        carol.line().ends_with(":marker"),
        "carol was told of alice's away"
    );
}

#[test]
fn shutdown_tells_irc_clients_and_nicks_clash_across_dialects() {
    let (server, chat, irc) = start();
    let mut alice = IrcClient::registered(irc, "alice", WAIT);
    let (_bob, refused) = JsonClient::open(chat, &common::json_client::hello_frame("alice"), WAIT);
    assert_eq!(refused["type"], "error", "{refused}");
    let mut second = IrcClient::connect(irc, WAIT);
    second.send("NICK ALICE");
    second.send("USER a 0 * :a");
    assert!(second.line().contains(" 433 * ALICE :"));
    second.send("NICK alice2");
    second.expect(" 001 alice2 ");
    server.signal("TERM");
    let rest = alice.until_closed();
    assert_eq!(
        rest.last().map(String::as_str),
        Some(":chatroom ERROR :Closing link: server shutting down")
    );
}

#[tokio::test]
async fn with_a_certificate_irc_speaks_tls() {
    use chatroom_core::testing::TestPki;
    use chatroom_core::transport::{Connector, TlsConnector, tls};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let pki = TestPki::new("irc-tls");
    let mut server = Server::builder()
        .listen("127.0.0.1:0")
        .set("irc_listen", "127.0.0.1:0")
        .arg("--tls-cert")
        .arg(pki.path("cert.pem"))
        .arg("--tls-key")
        .arg(pki.path("key.pem"))
        .start();
    let irc = irc_addr(&mut server);
    let config = tls::client_config(Some(&pki.path("ca.pem"))).unwrap();
    let connector = TlsConnector::new(irc.to_string(), config).unwrap();
    let registered = tokio::time::timeout(WAIT, async {
        let mut conn = connector.connect().await.expect("tls handshake");
        conn.writer
            .write_all(b"NICK secure\r\nUSER secure 0 * :s\r\n")
            .await
            .unwrap();
        conn.writer.flush().await.unwrap();
        let mut lines = BufReader::new(conn.reader).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(" 001 ") {
                return line;
            }
        }
        panic!("closed before 001");
    })
    .await
    .expect("registered in time");
    assert!(registered.contains(" 001 secure :"), "{registered}");
}

#[test]
fn join_comes_before_a_backlog_read_back_from_the_store() {
    let (mut server, chat, _) = start();
    let mut bob = JsonClient::hello_in(chat, "bob", "lobby", WAIT);
    for i in 1..=3 {
        bob.say("lobby", &format!("stored {i}"));
    }
    drop(bob);
    // The store commits within 100 ms of the `ok` (docs/operations.md);
    // the restart kills the server.
    std::thread::sleep(Duration::from_millis(500));
    // After a restart the room's messages are in the store only, and a
    // join streams them before it hands over the rest.
    server.restart();
    let irc = irc_addr(&mut server);
    let mut alice = with_caps(irc, "alice", "batch");
    alice.send("JOIN #lobby");
    let joined = alice.lines_until(" 366 ");
    assert_eq!(joined[0], ":alice!alice@chatroom JOIN #lobby", "{joined:?}");
    // The streamed backlog is inside the join's batch too.
    assert_eq!(joined[1], ":chatroom BATCH +h1 chathistory #lobby");
    let backlog: Vec<&String> = joined.iter().filter(|l| l.contains(" PRIVMSG ")).collect();
    assert_eq!(backlog.len(), 3, "{joined:?}");
    assert!(backlog.iter().all(|l| l.starts_with("@batch=h1 ")));
    assert!(backlog[2].ends_with(":bob!bob@chatroom PRIVMSG #lobby :stored 3"));
    assert_eq!(joined[5], ":chatroom BATCH -h1", "{joined:?}");
    assert_eq!(joined.iter().filter(|l| l.contains(" JOIN ")).count(), 1);
}

#[test]
fn an_irc_client_that_stops_reading_stalls_nobody_and_is_caught_up() {
    const MESSAGES: usize = 1504;
    let (_server, chat, irc) = start_with(&[
        ("rate_per_sec", "100000"),
        ("rate_burst", "100000"),
        ("outbox_frames", "64"),
        ("outbox_bytes", "65536"),
    ]);
    let mut sloth = IrcClient::joined(irc, "sloth", "#lobby", WAIT);
    let mut carol = IrcClient::joined(irc, "carol", "#lobby", WAIT);
    let mut bob = JsonClient::hello_in(chat, "bob", "lobby", WAIT);
    carol.expect("JOIN #lobby");
    sloth.expect(":carol!carol@chatroom JOIN #lobby");
    sloth.expect(":bob!bob@chatroom JOIN #lobby");

    // Megabytes of room traffic, more than the sockets and the queue
    // hold, while the sloth reads nothing.
    let filler = "z".repeat(3900);
    let started = std::time::Instant::now();
    // In rounds of 32, so that bob's own queue (64 frames) holds its oks.
    for round in 0..MESSAGES / 32 {
        for i in round * 32 + 1..=round * 32 + 32 {
            let text = format!("{i}: {filler}");
            bob.send(&json!({"type": "say", "room": "lobby", "text": text}));
        }
        for _ in 0..32 {
            bob.next_of("ok");
        }
    }
    let said_in = started.elapsed();
    // Carol reads along and gets every message, in order.
    let numbers = |client: &mut IrcClient| {
        let mut next = 1;
        while next <= MESSAGES {
            let line = client.line();
            if let Some(text) = line.split(" PRIVMSG #lobby :").nth(1)
                && let Some((n, _)) = text.split_once(": ")
                && let Ok(n) = n.parse::<usize>()
            {
                assert_eq!(n, next, "out of order");
                next += 1;
            }
        }
    };
    numbers(&mut carol);
    assert!(
        said_in < Duration::from_secs(30),
        "the room was slowed: {said_in:?}"
    );
    // The sloth, reading at last, is caught up: nothing lost, nothing
    // repeated, and its stream is still well formed.
    numbers(&mut sloth);
    sloth.send("PING :awake");
    assert!(sloth.expect("PONG").ends_with(":awake"));
}
