//! Registered nicknames and moderation, held against the real binary over
//! sockets: register, log in again later (after a restart too), a guest
//! refused a registered nick, failed logins throttled; kick, ban, keys and
//! moderated rooms seen by the room in text and JSON.

mod common;

use std::time::Duration;

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
    drop(ann);

    // Later, from another connection: the nick is refused until /login.
    let (mut again, _) = TextClient::greeted(server.addr(), WAIT);
    again.send("/nick ann");
    let refused = again.line_where(|l| l.starts_with("! "));
    assert!(refused.contains("registered"), "{refused}");
    again.send("/login ann correct-horse");
    again.line_with("is now known as ann");
    again.line_with("* you are logged in as ann");
    drop(again);

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
    drop(c);

    let (_old, first) =
        JsonClient::open(server.addr(), &login_hello("carol", "first-password"), WAIT);
    assert_eq!(first["code"], "bad_credentials", "{first}");
    let (mut c, welcome) = hello_with(server.addr(), login_hello("carol", "second-password"));
    assert_eq!(welcome["nick"], "carol");
    c.next_of("logged_in");
    c.send(&json!({"type": "drop_account", "password": "second-password", "ref": "d"}));
    assert_eq!(c.next_of("ok")["ref"], "d");
    drop(c);
    // The nick is free for anyone now.
    let (_guest, welcome) = JsonClient::hello(server.addr(), "carol", WAIT);
    assert_eq!(welcome["nick"], "carol");
}
