//! Accounts and moderation in cluster mode: two `chatroom-server` nodes on
//! one `nats-server -js` (started by the test on a free loopback port with
//! a store directory of its own) share registered nicks, room rules, bans
//! and the moderation log, and keep them when both nodes restart.
//!
//! `nats-server` is Debian's package (`apt-get install nats-server`); the
//! tests fail, never skip, when it cannot be found, as the other cluster
//! tests do.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{DEADLINE, node, start_node};
use common::json_client::JsonClient;
use common::nats::Nats;
use common::server::{Server, ServerBuilder};
use common::temp::TempDir;
use common::text_client::TextClient;
use serde_json::{Value, json};

/// Two chat nodes on one NATS with JetStream. The nodes go before NATS.
struct Pair {
    nodes: Vec<Server>,
    builders: Vec<ServerBuilder>,
    nats: Option<Nats>,
    port: u16,
    dir: TempDir,
}

impl Pair {
    fn start(name: &str) -> Self {
        let dir = TempDir::new(&format!("cluster-accounts-{name}"));
        let nats = Nats::start(&dir.join("nats"), &[]);
        let url = format!("nats://127.0.0.1:{}", nats.port);
        let builders: Vec<ServerBuilder> = ["a", "b"]
            .iter()
            .map(|n| {
                node(&url, n, &dir.join(n)).settings(&[
                    // Small argon2 costs: the debug build's tests do not
                    // wait on hashing.
                    ("hash_memory_kib", "64"),
                    ("hash_iterations", "1"),
                    ("operators", "teacher"),
                ])
            })
            .collect();
        let nodes = builders
            .iter()
            .zip(["a", "b"])
            .map(|(b, n)| start_node(b, n))
            .collect();
        Self {
            nodes,
            builders,
            port: nats.port,
            nats: Some(nats),
            dir,
        }
    }

    fn addr(&self, node: usize) -> std::net::SocketAddr {
        self.nodes[node].addr()
    }

    /// Stops both nodes, then starts them again on the same NATS.
    fn restart(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        self.nodes = self
            .builders
            .iter()
            .zip(["a", "b"])
            .map(|(b, n)| start_node(b, n))
            .collect();
    }
}

impl Pair {
    /// Kills NATS (SIGKILL); the nodes stay up.
    fn stop_nats(&mut self) {
        self.nats = None;
    }

    /// Starts NATS again on the same port with the same store.
    fn restart_nats(&mut self) {
        let nats = Nats::start_on(self.port, &self.dir.join("nats"), &[]);
        self.nats = Some(nats.expect("nats-server did not start again on its port"));
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.nodes.clear();
        self.nats = None;
    }
}

/// Logs in as `nick`. A nick a session that just ended still holds for a
/// moment (its node gives the claim back in the background) is tried
/// again, for a few seconds.
fn login(addr: std::net::SocketAddr, nick: &str, password: &str) -> JsonClient {
    let hello = json!({"type": "hello", "version": 1, "nick": nick, "password": password});
    let started = Instant::now();
    loop {
        let (mut client, first) = JsonClient::open(addr, &hello, DEADLINE);
        if first["code"] == "nick_taken" && started.elapsed() < Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(50));
            continue;
        }
        assert_eq!(first["type"], "welcome", "{nick} logging in: {first}");
        assert_eq!(first["nick"], nick, "{first}");
        client.next_of("logged_in");
        return client;
    }
}

fn quit(mut client: JsonClient) {
    client.send(&json!({"type": "quit"}));
    client.next_of("bye");
}

/// Polls `check` until it holds: what one node wrote reaches the other's
/// cache through a watch, a few milliseconds later. The bound is generous
/// because after a NATS restart a node reconnects on its client's backoff,
/// which on a loaded two-core machine once took longer than 5 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not within 15 s: {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{what}: after {:?}", started.elapsed());
}

#[test]
fn an_account_registered_on_one_node_holds_on_the_other_and_after_a_restart() {
    let mut pair = Pair::start("account");
    let (mut teacher, _) = JsonClient::hello(pair.addr(0), "teacher", DEADLINE);
    teacher.send(&json!({"type": "register", "password": "blackboard", "ref": "r"}));
    assert_eq!(teacher.next_of("logged_in")["account"], "teacher");
    quit(teacher);

    // A guest on the other node is refused the registered nick, with the
    // typed error, and gets a free guest nick.
    let b = pair.addr(1);
    eventually("node b knows the account", || {
        let (mut guest, welcome) = JsonClient::open(
            b,
            &json!({"type": "hello", "version": 1, "nick": "Teacher"}),
            DEADLINE,
        );
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        if welcome["nick"] == "Teacher" {
            return false;
        }
        assert!(welcome["nick"].as_str().unwrap().starts_with("guest"));
        guest.next_of("error")["code"] == "nick_registered"
    });
    // Registering the same nick again there is refused too.
    let (mut other, _) = JsonClient::hello(b, "someone", DEADLINE);
    other.send(&json!({"type": "nick", "nick": "teacher"}));
    assert_eq!(other.next_of("error")["code"], "nick_registered");

    // The password logs in on the other node; a wrong one does not.
    let (_, refused) = JsonClient::open(
        b,
        &json!({"type": "hello", "version": 1, "nick": "teacher", "password": "wrong-one"}),
        DEADLINE,
    );
    assert_eq!(refused["code"], "bad_credentials", "{refused}");
    quit(login(b, "teacher", "blackboard"));

    // After both nodes restart, the account is still there on each.
    pair.restart();
    quit(login(pair.addr(0), "teacher", "blackboard"));
    quit(login(pair.addr(1), "teacher", "blackboard"));
    let (mut guest, _) = JsonClient::open(
        pair.addr(1),
        &json!({"type": "hello", "version": 1, "nick": "teacher"}),
        DEADLINE,
    );
    assert_eq!(guest.next_of("error")["code"], "nick_registered");
}

#[test]
fn kicks_bans_and_keys_made_on_one_node_hold_on_the_other_and_after_a_restart() {
    let mut pair = Pair::start("moderation");
    let (a, b) = (pair.addr(0), pair.addr(1));
    // The teacher registers on node a and creates #class there: its owner.
    let (mut teacher, _) = JsonClient::hello(a, "teacher", DEADLINE);
    teacher.send(&json!({"type": "register", "password": "blackboard"}));
    teacher.next_of("logged_in");
    teacher.join("class");
    // A watcher and bob are in #class on node b.
    let mut watcher = JsonClient::hello_in(b, "watcher", "class", DEADLINE);
    let (mut bob, _) = JsonClient::hello(b, "bob", DEADLINE);
    bob.join("class");
    teacher.wait_for_members("class", &["bob", "teacher", "watcher"], DEADLINE);

    // A kick on node a removes bob on node b; the room there sees it.
    teacher.send(&json!({"type": "kick", "room": "class", "nick": "bob", "reason": "noise"}));
    teacher.next_of("ok");
    let kick = watcher.next_of("moderated");
    assert_eq!(
        (&kick["action"], &kick["target"], &kick["by"]),
        (&json!("kick"), &json!("bob"), &json!("teacher")),
        "{kick}"
    );
    let left = watcher.next_of("left");
    assert_eq!(
        (&left["nick"], &left["reason"]),
        (&json!("bob"), &json!("kicked by teacher: noise")),
        "{left}"
    );
    bob.next_of("left");
    bob.send(&json!({"type": "say", "room": "class", "text": "still here?"}));
    assert_eq!(bob.next_of("error")["code"], "not_in_room");

    // Kicked is not banned: bob comes back on b. A ban of his nick on a
    // removes him there and keeps him out of the room on b. (A bare nick
    // would ban his address, which every client of this test shares.)
    bob.join("class");
    watcher.next_of("joined");
    teacher
        .send(&json!({"type": "ban", "room": "class", "mask": "nick:bob", "reason": "flooding"}));
    teacher.next_of("ok");
    let ban = watcher.next_of("moderated");
    assert_eq!(
        (&ban["action"], &ban["target"], &ban["reason"]),
        (&json!("ban"), &json!("nick:bob"), &json!("flooding")),
        "{ban}"
    );
    let left = watcher.next_of("left");
    assert_eq!(left["reason"], "banned by teacher", "{left}");
    bob.next_of("left");
    bob.send(&json!({"type": "join", "room": "class", "ref": "j"}));
    let refused = bob.next_of("error");
    assert_eq!(
        (&refused["code"], &refused["ref"]),
        (&json!("banned"), &json!("j")),
        "{refused}"
    );

    // A key set on a is asked on b.
    teacher.send(&json!({"type": "mode", "room": "class", "key": "s3cret"}));
    teacher.next_of("ok");
    assert_eq!(watcher.next_of("moderated")["action"], "mode");
    let (mut newcomer, _) = JsonClient::hello(b, "newcomer", DEADLINE);
    newcomer.send(&json!({"type": "join", "room": "class"}));
    assert_eq!(newcomer.next_of("error")["code"], "bad_key");

    // A server operator's kill on a disconnects a session of b.
    teacher.send(&json!({"type": "kill", "nick": "newcomer", "reason": "testing"}));
    teacher.next_of("ok");
    assert_eq!(newcomer.next_of("error")["code"], "killed");
    newcomer.expect_closed();

    // A server-wide ban on a keeps the nick off b.
    teacher.send(&json!({"type": "ban", "mask": "nick:eve", "duration_secs": 600}));
    teacher.next_of("moderated");
    teacher.next_of("ok");
    eventually("node b refuses eve", || {
        let (_, first) = JsonClient::open(
            b,
            &json!({"type": "hello", "version": 1, "nick": "eve"}),
            DEADLINE,
        );
        first["code"] == "banned"
    });

    // The moderation log made on a reads on b.
    drop(teacher);
    let mut teacher_b = login(b, "teacher", "blackboard");
    teacher_b.send(&json!({"type": "mod_log", "limit": 10}));
    let log = teacher_b.next_where(|f| {
        f["type"] == "notice"
            && f["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("* moderation log"))
    });
    let text = log["text"].as_str().unwrap();
    for line in [
        "teacher in #class: kick bob noise",
        "teacher in #class: ban nick:bob flooding",
    ] {
        assert!(text.contains(line), "{line} missing from {text}");
    }

    // After both nodes restart: the ban, the key and the owner hold.
    drop((watcher, bob, teacher_b));
    pair.restart();
    let (a, b) = (pair.addr(0), pair.addr(1));
    let (mut bob, _) = JsonClient::hello(b, "bob", DEADLINE);
    bob.send(&json!({"type": "join", "room": "class", "key": "s3cret"}));
    assert_eq!(bob.next_of("error")["code"], "banned");
    let (mut newcomer, _) = JsonClient::hello(a, "newcomer", DEADLINE);
    newcomer.send(&json!({"type": "join", "room": "class"}));
    assert_eq!(newcomer.next_of("error")["code"], "bad_key");
    newcomer.send(&json!({"type": "join", "room": "class", "key": "s3cret", "history": 0}));
    newcomer.next_of("members");
    let (_, first) = JsonClient::open(
        a,
        &json!({"type": "hello", "version": 1, "nick": "eve"}),
        DEADLINE,
    );
    assert_eq!(first["code"], "banned", "{first}");
    // The owner lifts the ban on b, and bob is let in.
    let mut teacher = login(b, "teacher", "blackboard");
    teacher.send(&json!({"type": "unban", "room": "class", "mask": "nick:bob"}));
    teacher.next_of("ok");
    eventually("the ban is lifted on node b", || {
        bob.send(&json!({"type": "join", "room": "class", "key": "s3cret", "history": 0}));
        let answer = bob.next_where(|f| f["type"] == "members" || f["type"] == "error");
        answer["type"] == "members"
    });
}

/// The disruptive guest's own address: every other client of a test
/// comes from 127.0.0.1, so a ban of the guest's address keeps no one
/// else out.
const GUEST_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A guest from [`GUEST_IP`] says hello as `nick` to `addr`; returns the
/// client and its first frame back.
fn guest(addr: std::net::SocketAddr, nick: &str) -> (JsonClient, Value) {
    JsonClient::open_from(
        addr,
        GUEST_IP,
        &json!({"type": "hello", "version": 1, "nick": nick}),
        DEADLINE,
    )
}

/// The teacher (a server operator by the settings) registers on `addr` in
/// the text dialect and creates #class there: its owner.
fn teacher_owning_class(addr: std::net::SocketAddr) -> TextClient {
    let (mut teacher, _) = TextClient::greeted(addr, DEADLINE);
    teacher.send("/nick teacher");
    teacher.line_with("is now known as teacher");
    teacher.send("/register blackboard");
    teacher.line_with("* you are logged in as teacher");
    teacher.send("/join class");
    teacher.line_with("* you own #class");
    teacher
}

#[test]
fn a_guest_banned_from_another_node_cannot_come_back_under_another_nick_on_either() {
    let pair = Pair::start("evasion");
    let (a, b) = (pair.addr(0), pair.addr(1));
    // The teacher owns #class on node a.
    let mut teacher = teacher_owning_class(a);
    // A watcher and the disruptive guest are in #class on node b.
    let mut watcher = JsonClient::hello_in(b, "watcher", "class", DEADLINE);
    let (mut rowdy, welcome) = guest(b, "rowdy");
    assert_eq!(welcome["nick"], "rowdy", "{welcome}");
    rowdy.join("class");
    watcher.next_of("joined");

    // `/ban rowdy` on a asks node b whom to ban: the guest's address.
    teacher.send("/ban rowdy disrupting");
    teacher.line_with("* teacher banned address:127.0.0.2 from #class (disrupting)");
    let ban = watcher.next_of("moderated");
    assert_eq!(
        (&ban["action"], &ban["target"]),
        (&json!("ban"), &json!("address:127.0.0.2")),
        "{ban}"
    );
    let left = watcher.next_of("left");
    assert_eq!(
        (&left["nick"], &left["reason"]),
        (&json!("rowdy"), &json!("banned by teacher")),
        "{left}"
    );
    rowdy.next_of("left");
    drop(rowdy);

    // Under another nick, on either node, the guest is kept out of #class.
    for (node, nick) in [(b, "rowdy2"), (a, "rowdy3")] {
        let (mut again, welcome) = guest(node, nick);
        assert_eq!(welcome["nick"], nick, "{welcome}");
        again.send(&json!({"type": "join", "room": "class", "ref": "j"}));
        let refused = again.next_of("error");
        assert_eq!(
            (&refused["code"], &refused["ref"]),
            (&json!("banned"), &json!("j")),
            "{nick}: {refused}"
        );
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.contains("banned from #class: disrupting")),
            "{refused}"
        );
    }
    // Nobody else is: someone from another address joins on a.
    let mut bystander = JsonClient::hello_in(a, "bystander", "class", DEADLINE);

    // A server-wide ban of a nick the guest holds on b, made on a,
    // disconnects the guest there and keeps the address off both nodes.
    let (mut rowdy, _) = guest(b, "rowdy4");
    teacher.send("/gban rowdy4 10m");
    teacher.line_with("* teacher banned address:127.0.0.2 for 10m from the server");
    let killed = rowdy.next_of("error");
    assert_eq!(killed["code"], "killed", "{killed}");
    assert!(
        killed["message"]
            .as_str()
            .is_some_and(|m| m.contains("banned from this server")),
        "{killed}"
    );
    rowdy.expect_closed();
    for (node, nick) in [(b, "rowdy5"), (a, "rowdy6")] {
        let (_, first) = guest(node, nick);
        assert_eq!(first["code"], "banned", "{nick}: {first}");
    }
    bystander.say("class", "still here");
    watcher.next_of("message");
}

/// A member logged in on another node is banned by account, not by
/// address: logged in again on either node they are kept out, while
/// others from their address are not.
#[test]
fn a_member_logged_in_on_another_node_is_banned_by_account() {
    let pair = Pair::start("account-ban");
    let (a, b) = (pair.addr(0), pair.addr(1));
    let mut teacher = teacher_owning_class(a);
    let (mut rowdy, welcome) = JsonClient::hello(b, "rowdy", DEADLINE);
    assert_eq!(welcome["nick"], "rowdy", "{welcome}");
    rowdy.send(&json!({"type": "register", "password": "rowdy-password"}));
    rowdy.next_of("logged_in");
    rowdy.join("class");

    teacher.send("/ban rowdy");
    teacher.line_with("banned account:rowdy from #class");
    rowdy.next_of("left");
    quit(rowdy);

    let hello =
        json!({"type": "hello", "version": 1, "nick": "rowdy", "password": "rowdy-password"});
    for node in [a, b] {
        let mut again = None;
        eventually("rowdy logs in again", || {
            let (client, first) = JsonClient::open(node, &hello, DEADLINE);
            let welcomed = first["type"] == "welcome" && first["nick"] == "rowdy";
            again = Some(client);
            welcomed
        });
        let mut again = again.unwrap();
        again.next_of("logged_in");
        again.send(&json!({"type": "join", "room": "class", "ref": "j"}));
        let refused = again.next_of("error");
        assert_eq!(
            (&refused["code"], &refused["ref"]),
            (&json!("banned"), &json!("j")),
            "{refused}"
        );
        quit(again);
    }
    // The teacher's own address is rowdy's too, and is not banned.
    let mut bystander = JsonClient::hello_in(a, "bystander", "class", DEADLINE);
    bystander.say("class", "still here");
    teacher.line_with("still here");
}

/// A node stopped with SIGSTOP until this is dropped, even by a failing
/// assertion.
struct Stalled<'a>(&'a Server);

impl<'a> Stalled<'a> {
    fn new(node: &'a Server) -> Self {
        node.signal("STOP");
        Self(node)
    }
}

impl Drop for Stalled<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

#[test]
fn a_ban_whose_holders_node_does_not_answer_bans_the_nick_and_tells_the_operator() {
    let pair = Pair::start("unanswered");
    let (a, b) = (pair.addr(0), pair.addr(1));
    let mut teacher = teacher_owning_class(a);
    let (mut rowdy, _) = guest(b, "rowdy");
    rowdy.join("class");

    // Node b stalls (SIGSTOP) while its claim of the nick still stands
    // (the tests' lease is 3 s): a's question goes unanswered, and after
    // the request timeout (5 s) a bans the nick alone and says so.
    let stalled = Stalled::new(&pair.nodes[1]);
    let asked = Instant::now();
    teacher.send("/ban rowdy");
    let told = teacher.line_with("could be banned");
    let waited = asked.elapsed();
    drop(stalled);
    assert_eq!(
        told.trim_end(),
        "* only nick:rowdy could be banned: the server holding rowdy did not say whom to ban; \
         ban an account:NAME or address:IP mask for more"
    );
    teacher.line_with("* teacher banned nick:rowdy from #class");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(10),
        "told after {waited:?}"
    );
}

#[test]
fn failed_logins_on_one_node_lock_the_account_on_the_other_too() {
    let pair = Pair::start("throttle");
    let (a, b) = (pair.addr(0), pair.addr(1));
    let (mut owner, _) = JsonClient::hello(a, "owner", DEADLINE);
    owner.send(&json!({"type": "register", "password": "owner-password"}));
    owner.next_of("logged_in");
    quit(owner);
    let hello = |password: &str| json!({"type": "hello", "version": 1, "nick": "owner", "password": password});

    // A guesser on node a is refused after `login_attempts` (5) failures.
    let mut failures = 0;
    loop {
        let (_, first) = JsonClient::open(a, &hello("guess-number"), DEADLINE);
        match first["code"].as_str() {
            Some("bad_credentials") => failures += 1,
            Some("login_throttled") => break,
            _ => panic!("a guess was answered {first}"),
        }
        assert!(failures <= 5, "still guessing after {failures} failures");
    }
    assert_eq!(failures, 5);

    // Node b counted the same failures: it refuses the account at once,
    // even with the right password, from any address.
    // The failures reach b within milliseconds; a single try there must
    // be refused, since a try b let through would reset its count.
    thread::sleep(Duration::from_millis(500));
    let (_, first) = JsonClient::open(b, &hello("owner-password"), DEADLINE);
    assert_eq!(first["code"], "login_throttled", "{first}");
    let (_, first) = JsonClient::open_from(b, GUEST_IP, &hello("owner-password"), DEADLINE);
    assert_eq!(first["code"], "login_throttled", "{first}");
}

#[test]
fn after_a_nats_outage_each_node_hears_the_others_changes_again() {
    let mut pair = Pair::start("outage");
    pair.stop_nats();
    thread::sleep(Duration::from_millis(500));
    pair.restart_nats();
    let (a, b) = (pair.addr(0), pair.addr(1));

    // A registration on a, once it is connected again, reaches b.
    let mut owner = None;
    eventually("a takes a nick once NATS is back", || {
        let (client, first) = JsonClient::open(
            a,
            &json!({"type": "hello", "version": 1, "nick": "owner"}),
            DEADLINE,
        );
        owner = Some(client);
        first["type"] == "welcome"
    });
    let mut owner = owner.unwrap();
    owner.send(&json!({"type": "register", "password": "owner-password"}));
    assert_eq!(owner.next_of("logged_in")["account"], "owner");
    quit(owner);
    eventually("node b knows the account made after the outage", || {
        let (mut guest, welcome) = JsonClient::open(
            b,
            &json!({"type": "hello", "version": 1, "nick": "owner"}),
            DEADLINE,
        );
        welcome["nick"] != "owner" && guest.next_of("error")["code"] == "nick_registered"
    });

    // And a key set on b after the outage is asked on a.
    let mut owner = login(b, "owner", "owner-password");
    owner.join("den");
    owner.send(&json!({"type": "mode", "room": "den", "key": "k3y"}));
    owner.next_of("ok");
    let (mut guest, _) = JsonClient::hello(a, "visitor", DEADLINE);
    eventually("node a asks for the key", || {
        guest.send(&json!({"type": "join", "room": "den", "history": 0}));
        let answer = guest.next_where(|f| f["type"] == "members" || f["type"] == "error");
        if answer["type"] == "members" {
            guest.send(&json!({"type": "leave", "room": "den"}));
            guest.next_of("ok");
            return false;
        }
        answer["code"] == "bad_key"
    });
}
