//! Registered nicknames and moderation, held against the real binary over
//! sockets: register, log in again later (after a restart too), a guest
//! refused a registered nick, failed logins throttled; kick, ban, keys and
//! moderated rooms seen by the room in text and JSON.

mod common;

use std::time::Duration;

use common::irc_client::{IrcClient, irc_addr};
use common::json_client::JsonClient;
use common::server::{Server, ServerBuilder};
use common::text_client::TextClient;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Small argon2 costs, so the debug build's tests do not wait on hashing;
/// one test below keeps the real default.
fn cheap_hashing(builder: ServerBuilder) -> ServerBuilder {
    builder.settings(&[("hash_memory_kib", "64"), ("hash_iterations", "1")])
}

fn start() -> Server {
    cheap_hashing(Server::builder().listen("127.0.0.1:0")).start()
}

/// A native client that says hello with `hello` and returns every frame up
/// to and including the `welcome`.
fn hello_with(addr: std::net::SocketAddr, hello: Value) -> (JsonClient, Value) {
    let (mut client, first) = JsonClient::open(addr, &hello, WAIT);
    let mut frame = first;
    while frame["type"] != "welcome" {
        assert_eq!(frame["type"], "error", "before welcome: {frame}");
        frame = client.next();
    }
    (client, frame)
}

/// Quits and waits for the server's `bye`, so that the nick is free.
fn quit(mut client: JsonClient) {
    client.send(&json!({"type": "quit"}));
    client.next_of("bye");
}

fn login_hello(nick: &str, password: &str) -> Value {
    json!({"type": "hello", "version": 1, "nick": nick, "password": password})
}

#[test]
fn register_log_in_again_and_after_a_restart_with_the_real_hash_costs() {
    // The default argon2 costs, as a production server runs them.
    let mut server = Server::builder().listen("127.0.0.1:0").start();

    let (mut ann, _) = TextClient::greeted(server.addr(), WAIT);
    ann.send("/nick ann");
    ann.line_with("is now known as ann");
    ann.send("/register correct-horse");
    ann.line_with("* you are logged in as ann");
    ann.send("/quit");
    ann.expect_closed();

    // Later, from another connection: the nick is refused until /login.
    let (mut again, _) = TextClient::greeted(server.addr(), WAIT);
    again.send("/nick ann");
    let refused = again.line_where(|l| l.starts_with("! "));
    assert!(refused.contains("registered"), "{refused}");
    again.send("/login ann correct-horse");
    again.line_with("is now known as ann");
    again.line_with("* you are logged in as ann");
    again.send("/quit");
    again.expect_closed();

    // After a restart the account is still there, for a native client.
    server.restart();
    let (mut native, welcome) = hello_with(server.addr(), login_hello("ANN", "correct-horse"));
    assert_eq!(welcome["nick"], "ann", "{welcome}");
    assert_eq!(native.next_of("logged_in")["account"], "ann");

    // The password is in no log line.
    assert!(
        !server
            .log_lines()
            .iter()
            .any(|l| l.contains("correct-horse")),
        "a password was logged"
    );
}

#[test]
fn a_guest_is_refused_a_registered_nick_and_gets_a_free_one() {
    let server = start();
    let (mut owner, _) = JsonClient::hello(server.addr(), "teacher", WAIT);
    owner.send(&json!({"type": "register", "password": "blackboard", "ref": "r"}));
    let logged = owner.next_of("logged_in");
    assert_eq!(
        (&logged["account"], &logged["ref"]),
        (&json!("teacher"), &json!("r"))
    );
    drop(owner);

    // A hello for the registered nick, without its password.
    let (mut guest, first) = JsonClient::open(
        server.addr(),
        &json!({"type": "hello", "version": 1, "nick": "Teacher", "ref": "h"}),
        WAIT,
    );
    assert_eq!(first["type"], "welcome", "{first}");
    let nick = first["nick"].as_str().unwrap().to_owned();
    assert!(nick.starts_with("guest"), "{first}");
    let error = guest.next_of("error");
    assert_eq!(
        (&error["code"], &error["ref"]),
        (&json!("nick_registered"), &json!("h")),
        "{error}"
    );

    // A rename to it is refused too; the guest keeps its nick.
    guest.send(&json!({"type": "nick", "nick": "teacher", "ref": "n"}));
    let error = guest.next_of("error");
    assert_eq!(error["code"], "nick_registered", "{error}");
    guest.send(&json!({"type": "join", "room": "class", "ref": "j"}));
    let members = guest.next_of("members");
    assert_eq!(members["members"], json!([nick]));

    // Guests that get a numbered nick never get the registered one either.
    let (mut guest2, _) = JsonClient::hello(server.addr(), "guest-2", WAIT);
    guest2.send(&json!({"type": "register", "password": "numbered-guest"}));
    guest2.next_of("logged_in");
    let (_third, welcome) = hello_with(server.addr(), json!({"type": "hello", "version": 1}));
    assert_ne!(welcome["nick"], "guest-2", "{welcome}");
}

#[test]
fn wrong_passwords_are_throttled_per_account_and_address() {
    let server = cheap_hashing(
        Server::builder()
            .listen("127.0.0.1:0")
            .settings(&[("login_attempts", "3"), ("login_lockout_secs", "60")]),
    )
    .start();
    let (mut owner, _) = JsonClient::hello(server.addr(), "bob", WAIT);
    owner.send(&json!({"type": "register", "password": "bobs-password"}));
    owner.next_of("logged_in");
    drop(owner);

    let (mut guesser, _) = JsonClient::hello(server.addr(), "mallory", WAIT);
    for i in 0..3 {
        guesser.send(&json!({"type": "login", "nick": "bob", "password": format!("guess-{i}xx")}));
        let error = guesser.next_of("error");
        assert_eq!(error["code"], "bad_credentials", "{error}");
    }
    // Now even the right password is refused, without being checked.
    guesser.send(&json!({"type": "login", "nick": "bob", "password": "bobs-password"}));
    let error = guesser.next_of("error");
    assert_eq!(error["code"], "login_throttled", "{error}");
    // From this address, another account is locked out as well.
    let (mut text, _) = TextClient::greeted(server.addr(), WAIT);
    text.send("/login someone-else whatever-pw");
    let line = text.line_where(|l| l.starts_with("! "));
    assert!(line.contains("too many failed logins"), "{line}");
    // A hello with credentials is throttled the same way.
    let (_c, first) = JsonClient::open(server.addr(), &login_hello("bob", "bobs-password"), WAIT);
    assert_eq!(first["code"], "login_throttled", "{first}");
}

#[test]
fn a_password_is_changed_and_an_account_dropped() {
    let server = start();
    let (mut c, _) = JsonClient::hello(server.addr(), "carol", WAIT);
    c.send(&json!({"type": "set_password", "old": "x", "new": "yyyyyyyy"}));
    assert_eq!(c.next_of("error")["code"], "not_logged_in");
    c.send(&json!({"type": "register", "password": "short"}));
    assert_eq!(c.next_of("error")["code"], "bad_password");
    c.send(&json!({"type": "register", "password": "first-password"}));
    c.next_of("logged_in");
    c.send(&json!({"type": "register", "password": "first-password"}));
    assert_eq!(c.next_of("error")["code"], "account_exists");
    c.send(&json!({"type": "set_password", "old": "wrong-password", "new": "second-password"}));
    assert_eq!(c.next_of("error")["code"], "bad_credentials");
    c.send(&json!({"type": "set_password", "old": "first-password", "new": "second-password", "ref": "p"}));
    assert_eq!(c.next_of("ok")["ref"], "p");
    quit(c);

    let (_old, first) =
        JsonClient::open(server.addr(), &login_hello("carol", "first-password"), WAIT);
    assert_eq!(first["code"], "bad_credentials", "{first}");
    let (mut c, welcome) = hello_with(server.addr(), login_hello("carol", "second-password"));
    assert_eq!(welcome["nick"], "carol");
    c.next_of("logged_in");
    c.send(&json!({"type": "drop_account", "password": "second-password", "ref": "d"}));
    assert_eq!(c.next_of("ok")["ref"], "d");
    quit(c);
    // The nick is free for anyone now.
    let (_guest, welcome) = JsonClient::hello(server.addr(), "carol", WAIT);
    assert_eq!(welcome["nick"], "carol");
}

/// A text client that registers `nick` and is logged in.
fn registered_text(addr: std::net::SocketAddr, nick: &str, password: &str) -> TextClient {
    let (mut c, _) = TextClient::greeted(addr, WAIT);
    c.send(&format!("/nick {nick}"));
    c.line_with(&format!("is now known as {nick}"));
    c.send(&format!("/register {password}"));
    c.line_with("* you are logged in as");
    c
}

#[test]
fn kick_and_ban_are_seen_by_the_room_and_bans_hold_after_a_restart() {
    let mut server = start();
    let addr = server.addr();
    // The teacher registers and creates #class: its owner.
    let mut teacher = registered_text(addr, "teacher", "blackboard");
    teacher.send("/join class");
    teacher.line_with("* you own #class");
    let mut watcher = JsonClient::hello_in(addr, "watcher", "class", WAIT);
    let (mut bob, _) = JsonClient::hello(addr, "bob", WAIT);
    bob.send(&json!({"type": "register", "password": "bobs-password"}));
    bob.next_of("logged_in");
    bob.join("class");

    // A kick: the room sees the action, then bob leaving with the reason.
    teacher.send("/kick bob spamming");
    let kick = watcher.next_of("moderated");
    assert_eq!(
        (
            &kick["action"],
            &kick["target"],
            &kick["by"],
            &kick["reason"]
        ),
        (
            &json!("kick"),
            &json!("bob"),
            &json!("teacher"),
            &json!("spamming")
        ),
        "{kick}"
    );
    let left = watcher.next_of("left");
    assert_eq!(left["reason"], "kicked by teacher: spamming", "{left}");
    assert_eq!(bob.next_of("moderated")["action"], "kick");
    bob.next_of("left");
    bob.send(&json!({"type": "say", "room": "class", "text": "still here?"}));
    assert_eq!(bob.next_of("error")["code"], "not_in_room");

    // Kicked is not banned: bob comes back; then a ban by nick bans his
    // account, and removes him.
    bob.join("class");
    teacher.send("/ban bob 1h flooding");
    let ban = watcher.next_of("moderated");
    assert_eq!(
        (&ban["action"], &ban["target"]),
        (&json!("ban"), &json!("account:bob for 1h")),
        "{ban}"
    );
    teacher.line_with("* teacher banned account:bob for 1h from #class (flooding)");
    bob.next_of("left");
    bob.send(&json!({"type": "join", "room": "class", "ref": "b"}));
    let refused = bob.next_of("error");
    assert_eq!(
        (&refused["code"], &refused["ref"]),
        (&json!("banned"), &json!("b")),
        "{refused}"
    );

    // An address ban keeps out every guest from that address.
    let (mut guest, guest_nick) = TextClient::greeted(addr, WAIT);
    guest.send("/join class");
    watcher.next_of("joined");
    teacher.send(&format!("/ban {guest_nick}"));
    teacher.line_with("banned address:127.0.0.1 from #class");
    guest.line_with("left #class (banned by teacher)");
    guest.send("/join class");
    let line = guest.line_where(|l| l.starts_with("! "));
    assert!(line.contains("banned from #class"), "{line}");

    // After a restart: the owner, the account ban and the address ban hold.
    drop((teacher, watcher, bob, guest));
    server.restart();
    let addr = server.addr();
    let (mut bob, _) = hello_with(addr, login_hello("bob", "bobs-password"));
    bob.send(&json!({"type": "join", "room": "class"}));
    assert_eq!(bob.next_of("error")["code"], "banned");
    let (mut other, _) = JsonClient::hello(addr, "newcomer", WAIT);
    other.send(&json!({"type": "join", "room": "class"}));
    assert_eq!(other.next_of("error")["code"], "banned");
    let (mut teacher, _) = TextClient::greeted(addr, WAIT);
    teacher.send("/login teacher blackboard");
    teacher.line_with("* you are logged in as teacher");
    teacher.send("/join class");
    teacher.line_with("* in #class: teacher");
    teacher.send("/unban address:127.0.0.1");
    teacher.line_with("lifted the ban on address:127.0.0.1");
    other.join("class");
}

#[test]
fn a_room_key_a_moderated_room_a_topic_and_a_limit() {
    let server = start();
    let addr = server.addr();
    let mut owner = registered_text(addr, "host", "hosting-pw");
    owner.send("/join den");
    owner.line_with("* you own #den");
    owner.send("/topic welcome to the den");
    owner.line_with("* topic of #den: welcome to the den (set by host)");
    owner.send("/key s3cret");
    owner.line_with("* host set #den +k");

    let (mut guest, _) = JsonClient::hello(addr, "visitor", WAIT);
    guest.send(&json!({"type": "join", "room": "den"}));
    assert_eq!(guest.next_of("error")["code"], "bad_key");
    guest.send(&json!({"type": "join", "room": "den", "key": "wrong"}));
    assert_eq!(guest.next_of("error")["code"], "bad_key");
    guest.send(&json!({"type": "join", "room": "den", "key": "s3cret", "history": 0}));
    let topic = guest.next_of("topic");
    assert_eq!(
        (&topic["topic"], &topic["by"]),
        (&json!("welcome to the den"), &json!("host"))
    );
    guest.next_of("members");

    owner.send("/moderated on");
    let mode = guest.next_of("moderated");
    assert_eq!(
        (&mode["action"], &mode["target"]),
        (&json!("mode"), &json!("+m")),
        "{mode}"
    );
    let refused = guest.try_say("den", "may I speak?");
    assert_eq!(refused["code"], "moderated", "{refused}");
    owner.send("/voice visitor");
    guest.next_of("moderated");
    guest.say("den", "thank you");
    owner.line_with("<visitor> thank you");

    // The text dialect joins with a key too; a limit keeps the next one out.
    owner.send("/limit 3");
    let (mut third, _) = TextClient::greeted(addr, WAIT);
    third.send("/join den s3cret");
    third.line_with("* in #den:");
    let (mut fourth, _) = JsonClient::hello(addr, "fourth", WAIT);
    fourth.send(&json!({"type": "join", "room": "den", "key": "s3cret"}));
    assert_eq!(fourth.next_of("error")["code"], "room_full");

    // Invite-only: refused until invited.
    owner.send("/limit 0");
    owner.send("/inviteonly on");
    owner.line_with("* host set #den +i");
    fourth.send(&json!({"type": "join", "room": "den", "key": "s3cret"}));
    assert_eq!(fourth.next_of("error")["code"], "invite_only");
    owner.send("/invite fourth");
    owner.line_with("* host invited fourth to #den");
    fourth.send(&json!({"type": "join", "room": "den", "key": "s3cret", "history": 0}));
    fourth.next_of("members");
}

#[test]
fn a_non_operator_is_refused_with_the_typed_error() {
    let server = start();
    let addr = server.addr();
    let mut owner = registered_text(addr, "keeper", "keeper-pw");
    owner.send("/join vault");
    owner.line_with("* you own #vault");
    let (mut guest, _) = JsonClient::hello(addr, "nobody", WAIT);
    guest.join("vault");
    for request in [
        json!({"type": "kick", "room": "vault", "nick": "keeper"}),
        json!({"type": "ban", "room": "vault", "mask": "nick:keeper"}),
        json!({"type": "topic", "room": "vault", "topic": "mine now"}),
        json!({"type": "mode", "room": "vault", "moderated": true}),
        json!({"type": "op", "room": "vault", "nick": "nobody"}),
        json!({"type": "kill", "nick": "keeper"}),
        json!({"type": "ban", "mask": "nick:keeper"}),
        json!({"type": "mod_log"}),
    ] {
        guest.send(&request);
        let error = guest.next_of("error");
        assert_eq!(error["code"], "not_permitted", "{request}: {error}");
    }
    let (mut text, _) = TextClient::greeted(addr, WAIT);
    text.send("/kick keeper");
    let line = text.line_where(|l| l.starts_with("! "));
    assert!(line.contains("only operators of #lobby"), "{line}");
    // Reading the topic is for everyone.
    guest.send(&json!({"type": "topic", "room": "vault", "ref": "t"}));
    assert_eq!(guest.next_of("topic")["topic"], "");
}

#[test]
fn a_server_operator_kills_bans_server_wide_and_reads_the_log() {
    let server = cheap_hashing(
        Server::builder()
            .listen("127.0.0.1:0")
            .set("operators", "root"),
    )
    .start();
    let addr = server.addr();
    let mut root = registered_text(addr, "root", "root-password");
    let (mut victim, _) = JsonClient::hello(addr, "victim", WAIT);
    victim.join("lobby");
    root.send("/kill victim trolling");
    let error = victim.next_of("error");
    assert_eq!(error["code"], "killed", "{error}");
    root.line_with("* victim left #lobby (disconnected by a server operator)");

    // A server-wide ban by nick keeps that nick off the server.
    root.send("/gban nick:eve 10m");
    root.line_with("* root banned nick:eve for 10m from the server");
    let (_eve, first) = JsonClient::open(
        addr,
        &json!({"type": "hello", "version": 1, "nick": "eve"}),
        WAIT,
    );
    assert_eq!(first["code"], "banned", "{first}");
    // Operators moderate every room without owning it.
    let mut owner = JsonClient::hello_in(addr, "someone", "elsewhere", WAIT);
    root.send("/join elsewhere");
    root.send("/topic set by the operator");
    assert_eq!(owner.next_of("topic")["by"], "root");

    root.send("/modlog 10");
    let log = root.line_with("* moderation log:");
    assert!(log.contains("line(s)"), "{log}");
    root.line_with("root in server: kill victim trolling");
    root.line_with("root in server: ban nick:eve for 10m");
}

#[test]
fn irc_clients_obey_the_same_bans_keys_kicks_and_registered_nicks() {
    let mut server = cheap_hashing(
        Server::builder()
            .listen("127.0.0.1:0")
            .set("irc_listen", "127.0.0.1:0"),
    )
    .start();
    let addr = server.addr();
    let irc = irc_addr(&mut server);
    let mut owner = registered_text(addr, "chair", "chair-password");
    owner.send("/join hall");
    owner.line_with("* you own #hall");

    // A registered nick is refused to IRC without a login.
    let mut squatter = IrcClient::connect(irc, WAIT);
    squatter.send("NICK chair");
    squatter.send("USER chair 0 * :x");
    squatter.expect(" 433 ");

    // A kicked IRC member can no longer speak in the channel.
    let mut dave = IrcClient::joined(irc, "dave", "#hall", WAIT);
    owner.send("/kick dave off topic");
    dave.expect("KICK #hall dave :off topic");
    dave.send("PRIVMSG #hall :still here");
    dave.expect(" 404 ");

    // A key: JOIN without it is refused with 475, with it let in.
    owner.send("/key sesame");
    owner.line_with("set #hall +k");
    dave.send("JOIN #hall");
    dave.expect(" 475 ");
    dave.send("JOIN #hall sesame");
    dave.expect(" 366 ");

    // TOPIC reads the room's topic, and a change is shown as TOPIC.
    owner.send("/topic agenda: budget");
    dave.expect("TOPIC #hall :agenda: budget");
    dave.send("TOPIC #hall");
    dave.expect(" 332 ");
    dave.send("TOPIC #hall :mine");
    dave.expect(" 482 ");

    // A ban by nick: out, and 474 on the way back.
    owner.send("/ban nick:dave");
    dave.expect("MODE #hall +b dave!*@*");
    dave.send("JOIN #hall sesame");
    dave.expect(" 474 ");
}
