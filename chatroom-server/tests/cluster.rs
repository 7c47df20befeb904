//! Cluster mode against a real NATS server: three `chatroom-server` nodes on
//! one `nats-server -js`, started by the test on a free loopback port with a
//! store directory of its own.
//!
//! `nats-server` is Debian's package (`apt-get install nats-server`); the
//! tests fail, never skip, when it cannot be found. `NATS_SERVER` names
//! another binary.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, DEADLINE, node};
use common::irc_client::{IrcClient, irc_addr};
use common::json_client::JsonClient;
use common::nats::Nats;
use common::temp::{TempDir, free_port};
use common::text_client::TextClient;
use common::web_client::WebClient;
use serde_json::json;

/// Messages a client received: id, sender, text.
type Heard = Vec<(u64, String, String)>;

#[test]
fn three_nodes_agree_on_one_order_per_room() {
    let cluster = Cluster::start("order");
    const EACH: usize = 20;
    let nicks = ["alice", "bob", "carol"];
    let mut clients: Vec<JsonClient> = nicks
        .iter()
        .enumerate()
        .map(|(node, nick)| cluster.hello(node, nick))
        .collect();
    for client in &mut clients {
        client.join("lobby");
    }
    // Everyone is a member everywhere before anyone speaks.
    thread::sleep(Duration::from_millis(300));
    let handles: Vec<_> = clients
        .into_iter()
        .zip(nicks)
        .map(|(mut client, nick)| {
            thread::spawn(move || {
                // Send everything first, so the three nodes publish at once.
                for i in 0..EACH {
                    client.send(
                        &json!({"type": "say", "room": "lobby", "text": format!("{nick}-{i}")}),
                    );
                }
                let mut own = Vec::new();
                let mut heard = Vec::new();
                while own.len() < EACH || heard.len() < EACH * 2 {
                    let frame = client.next();
                    match frame["type"].as_str() {
                        Some("ok") => own.push(frame["id"].as_u64().unwrap()),
                        Some("message") => heard.push((
                            frame["id"].as_u64().unwrap(),
                            frame["from"].as_str().unwrap().to_owned(),
                            frame["text"].as_str().unwrap().to_owned(),
                        )),
                        Some("error") => panic!("{nick}: {frame}"),
                        _ => {}
                    }
                }
                (own, heard)
            })
        })
        .collect();
    let results: Vec<(Vec<u64>, Heard)> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let total = (EACH * 3) as u64;
    let mut by_id: std::collections::BTreeMap<u64, (String, String)> = Default::default();
    for ((own, heard), nick) in results.iter().zip(nicks) {
        let ids: Vec<u64> = heard.iter().map(|m| m.0).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{nick} heard out of order: {ids:?}"
        );
        assert!(heard.iter().all(|m| m.1 != nick), "{nick} heard itself");
        let mut all: Vec<u64> = ids.iter().chain(own).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=total).collect::<Vec<_>>(),
            "{nick}: ids with a gap or twice"
        );
        for (id, from, text) in heard {
            let seen = by_id
                .entry(*id)
                .or_insert_with(|| (from.clone(), text.clone()));
            assert_eq!(
                seen,
                &(from.clone(), text.clone()),
                "message {id} differs between receivers"
            );
        }
    }
    // Each sender's own messages are in its sending order.
    for (own, nick) in results.iter().map(|r| &r.0).zip(nicks) {
        let texts: Vec<&String> = own.iter().map(|id| &by_id[id].1).collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{nick}-{i}")).collect();
        assert_eq!(texts, expected.iter().collect::<Vec<_>>());
    }
}

#[test]
fn a_nick_taken_on_one_node_is_refused_on_another() {
    let cluster = Cluster::start("nicks");
    let mut dora = cluster.hello(0, "dora");
    let (_, refused) = JsonClient::open(
        cluster.addr(1),
        &json!({"type": "hello", "version": 1, "nick": "DORA"}),
        DEADLINE,
    );
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "nick_taken", "{refused}");

    // A rename into a nick held on another node is refused too.
    let mut erin = cluster.hello(2, "erin");
    erin.send(&json!({"type": "nick", "nick": "Dora"}));
    let answer = erin.next();
    assert_eq!(answer["code"], "nick_taken", "{answer}");

    // Once dora quits, the nick is free everywhere (within a bounded wait:
    // the claim is given back in the background).
    dora.send(&json!({"type": "quit"}));
    let started = Instant::now();
    loop {
        let (_, first) = JsonClient::open(
            cluster.addr(1),
            &json!({"type": "hello", "version": 1, "nick": "dora"}),
            DEADLINE,
        );
        if first["type"] == "welcome" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "dora stays taken: {first}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_resumes_on_another_node_with_nothing_lost_or_twice() {
    let cluster = Cluster::start("resume");
    let mut eve = cluster.hello(0, "eve");
    let mut frank = cluster.hello(1, "frank");
    frank.join("relay");
    let first = frank.say("relay", "before");
    let cursor = eve.join("relay");
    assert_eq!(cursor, first);
    let early = frank.say("relay", "seen");
    let seen = eve.next_of("message");
    assert_eq!(seen["id"].as_u64(), Some(early));
    drop(eve);

    // More than a join hands over at once: the backlog is streamed from
    // JetStream on a node that never held the room.
    let mut missed = Vec::new();
    for i in 0..150 {
        missed.push(frank.say("relay", &format!("missed-{i}")));
    }
    let (mut eve, welcome) = JsonClient::open(
        cluster.addr(2),
        &json!({"type": "hello", "version": 1, "nick": "eve", "resume": {"relay": early}}),
        DEADLINE,
    );
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let mut got = Vec::new();
    while got.len() < missed.len() {
        let frame = eve.next_of("message");
        assert_eq!(
            frame["text"].as_str().unwrap(),
            format!("missed-{}", got.len()),
            "{frame}"
        );
        got.push(frame["id"].as_u64().unwrap());
    }
    assert_eq!(got, missed);
    // And then live, with nothing repeated.
    let live = frank.say("relay", "live");
    let frame = eve.next_of("message");
    assert_eq!(frame["id"].as_u64(), Some(live), "{frame}");
    assert_eq!(frame["text"], "live");
    assert_eq!(live, missed.last().unwrap() + 1);

    // History on a third node reads the same log.
    let mut grace = cluster.hello(0, "grace");
    grace.send(&json!({"type": "history", "room": "relay", "after": 0, "limit": 5}));
    let page = grace.next_of("history");
    let ids: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(page["more"], true);
}

#[test]
fn a_nats_outage_is_explicit_and_chat_recovers_by_itself() {
    let mut cluster = Cluster::start("outage");
    let mut alice = cluster.hello(0, "alice");
    let mut bob = cluster.hello(1, "bob");
    alice.join("ops");
    bob.join("ops");
    let mut acked = vec![alice.say("ops", "before")];

    cluster.stop_nats();
    // Every say during the outage is refused with an error that says so;
    // none is acknowledged.
    let outage = Instant::now();
    let mut refused = 0;
    while outage.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(100));
        let answer = alice.try_say("ops", "during");
        assert_eq!(
            answer["type"], "error",
            "acknowledged during the outage: {answer}"
        );
        assert_eq!(answer["code"], "internal", "{answer}");
        refused += 1;
    }
    assert!(refused > 0);

    cluster.restart_nats();
    // Chat resumes by itself: a say is acknowledged again within a bounded
    // wait, and bob receives exactly the acknowledged messages.
    let back = Instant::now();
    loop {
        let answer = alice.try_say("ops", "after");
        if answer["type"] == "ok" {
            acked.push(answer["id"].as_u64().unwrap());
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "still refused 10 s after NATS returned: {answer}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("chat resumed {:?} after NATS returned", back.elapsed());
    let mut heard = Vec::new();
    let mut notices = Vec::new();
    let told_back = |notices: &Vec<String>| notices.iter().any(|n| n.contains("again"));
    while heard.len() < acked.len() || !told_back(&notices) {
        let frame = bob.next();
        match frame["type"].as_str() {
            Some("message") => {
                assert_ne!(frame["text"], "during", "a refused message was delivered");
                heard.push(frame["id"].as_u64().unwrap());
            }
            Some("notice") => notices.push(frame["text"].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
    assert_eq!(heard, acked);
    assert_eq!(acked, [1, 2], "a refused message took an id");
    // bob, who only listened, was told the cluster went away and came back.
    let lost = notices
        .iter()
        .position(|n| n.contains("lost its connection"));
    let back = notices
        .iter()
        .position(|n| n.contains("connected to the cluster again"));
    assert!(
        matches!((lost, back), (Some(l), Some(b)) if l < b),
        "notices: {notices:?}"
    );
}

#[test]
fn a_receiver_on_a_killed_node_resumes_elsewhere_with_nothing_lost_or_twice() {
    let mut cluster = Cluster::start("kill");
    let mut eve = cluster.hello(0, "eve");
    eve.join("busy");
    let mut frank = cluster.hello(1, "frank");
    frank.join("busy");

    // frank publishes without pause until told to stop.
    let (stop_tx, stop) = mpsc::channel::<()>();
    let publisher = thread::spawn(move || {
        let mut acked = Vec::new();
        while stop.try_recv().is_err() {
            acked.push(frank.say("busy", &format!("m{}", acked.len())));
        }
        acked
    });
    let mut heard = Vec::new();
    while heard.len() < 50 {
        heard.push(eve.next_of("message")["id"].as_u64().unwrap());
    }
    cluster.node(0).kill();
    drop(eve);
    // Whatever eve had read before the kill is her cursor.
    let cursor = *heard.last().unwrap();

    // Her nick comes free when the dead node's lease runs out.
    let started = Instant::now();
    let mut eve = loop {
        let (client, first) = JsonClient::open(
            cluster.addr(2),
            &json!({"type": "hello", "version": 1, "nick": "eve", "resume": {"busy": cursor}}),
            DEADLINE,
        );
        if first["type"] == "welcome" {
            break client;
        }
        assert_eq!(first["code"], "nick_taken", "{first}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "eve's nick outlived the lease"
        );
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!("eve back after {:?}", started.elapsed());
    thread::sleep(Duration::from_millis(300));
    stop_tx.send(()).unwrap();
    let acked = publisher.join().unwrap();
    let last = *acked.last().unwrap();
    while heard.last() != Some(&last) {
        heard.push(eve.next_of("message")["id"].as_u64().unwrap());
    }
    assert_eq!(heard, (1..=last).collect::<Vec<_>>(), "lost or repeated");
    assert_eq!(acked, heard, "every acknowledged message, in order");
}

#[test]
fn a_client_given_two_nodes_fails_over_when_the_first_dies() {
    use chatroom_core::client::{Client as ApiClient, ClientOptions, Event, Reconnect};
    use chatroom_core::protocol::{Nickname, RoomName};

    let mut cluster = Cluster::start("failover");
    let first = cluster.addr(0).to_string();
    let second = cluster.addr(1).to_string();
    let mut frank = cluster.hello(2, "frank");
    frank.join("relay");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = ClientOptions::new()
        .with_nick(Nickname::new("ivy").unwrap())
        .with_event_capacity(1 << 16)
        .with_reconnect(
            Reconnect::new().with_delays(Duration::from_millis(100), Duration::from_millis(400)),
        );
    let room = RoomName::new("relay").unwrap();
    let (ivy, mut events) = runtime.block_on(async {
        let (ivy, events) = ApiClient::connect_any(vec![first.clone(), second.clone()], options)
            .await
            .expect("connect to the first node");
        ivy.join(&room).await.expect("join");
        (ivy, events)
    });
    assert_eq!(ivy.server_addr(), first);

    // frank publishes on the third node without pause until told to stop.
    let (stop_tx, stop) = mpsc::channel::<()>();
    let publisher = thread::spawn(move || {
        let mut acked = Vec::new();
        while stop.try_recv().is_err() {
            acked.push(frank.say("relay", &format!("m{}", acked.len())));
            thread::sleep(Duration::from_millis(2));
        }
        acked
    });

    let next = |events: &mut chatroom_core::client::Events| {
        runtime
            .block_on(async { tokio::time::timeout(DEADLINE, events.next()).await })
            .expect("an event in time")
            .expect("the event stream goes on")
    };
    let mut heard = Vec::new();
    while heard.len() < 30 {
        if let Event::Message { id, .. } = next(&mut events) {
            heard.push(id);
        }
    }
    cluster.node(0).kill();
    let killed = Instant::now();
    // Messages already on their way, then the disconnect, the attempts
    // (refused until the dead node's nick lease runs out) and the rejoin.
    loop {
        match next(&mut events) {
            Event::Message { id, .. } => heard.push(id),
            Event::Reconnected { nick, rooms } => {
                assert_eq!(nick.as_str(), "ivy");
                assert_eq!(rooms, std::slice::from_ref(&room));
                break;
            }
            Event::Lagged { missed } => panic!("{missed} events dropped"),
            _ => {}
        }
    }
    eprintln!("ivy back after {:?}", killed.elapsed());
    assert_eq!(ivy.server_addr(), second, "reconnected to the second node");

    thread::sleep(Duration::from_millis(300));
    stop_tx.send(()).unwrap();
    let acked = publisher.join().unwrap();
    let last = *acked.last().unwrap();
    while heard.last() != Some(&last) {
        match next(&mut events) {
            Event::Message { id, .. } => heard.push(id),
            Event::Lagged { missed } => panic!("{missed} events dropped"),
            other => panic!("unexpected after the failover: {other:?}"),
        }
    }
    assert_eq!(heard, (1..=last).collect::<Vec<_>>(), "lost or repeated");
    assert_eq!(acked, heard, "every acknowledged message, in order");

    // The client works on the second node as on the first.
    runtime.block_on(async {
        let id = ivy
            .say(&room, "still here")
            .await
            .expect("say after failover");
        assert_eq!(id, last + 1);
    });
}

#[test]
fn the_chat_goes_on_when_one_server_of_a_nats_cluster_dies() {
    let dir = TempDir::new("natscluster");
    // Six ports found free one by one; if another test's socket takes one
    // before its server binds it, the whole NATS cluster starts again
    // elsewhere.
    let (ports, mut nats) = (0..3)
        .find_map(|_| {
            let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
            let servers: Option<Vec<Option<Nats>>> = (0..3)
                .map(|n| Nats::member(n, &ports, dir.path()).map(Some))
                .collect();
            servers.map(|servers| (ports, servers))
        })
        .expect("the NATS cluster did not start on three sets of free ports");
    // Each chat node knows only its own NATS server; the client learns the
    // others from it. Streams are kept on all three servers.
    let mut nodes = Vec::new();
    for (n, (port, _)) in ports.iter().enumerate() {
        let url = format!("nats://127.0.0.1:{port}");
        let started = Instant::now();
        // JetStream answers once the NATS cluster has elected its leader.
        let node = loop {
            let name = format!("n{n}");
            let attempt = node(&url, &name, &dir.join(&name))
                .env("CHATROOM_CLUSTER_REPLICAS", "3")
                .try_start();
            if let Ok(node) = attempt {
                break node;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "chat node n{n} could not join the NATS cluster"
            );
            thread::sleep(Duration::from_millis(500));
        };
        nodes.push(node);
    }
    let mut alice = JsonClient::hello(nodes[0].addr(), "alice", DEADLINE).0;
    let mut bob = JsonClient::hello(nodes[1].addr(), "bob", DEADLINE).0;
    let mut carol = JsonClient::hello(nodes[2].addr(), "carol", DEADLINE).0;
    alice.join("ops");
    bob.join("ops");
    carol.join("ops");
    thread::sleep(Duration::from_millis(300));
    let mut acked = vec![bob.say("ops", "before")];

    // The NATS server alice's node is connected to dies.
    nats[0] = None;
    let killed = Instant::now();
    // Says on every node are acknowledged again within a bounded wait
    // (refused meanwhile, never acknowledged and lost).
    let mut members = [(alice, Vec::new()), (bob, Vec::new()), (carol, Vec::new())];
    for (speaker, text) in [(1, "from bob"), (2, "from carol"), (0, "from alice")] {
        let (client, heard) = &mut members[speaker];
        loop {
            let answer = client.try_say_hearing("ops", text, heard);
            if answer["type"] == "ok" {
                acked.push(answer["id"].as_u64().unwrap());
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "still refused 30 s after a NATS server died: {answer}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!(
        "every node chatting {:?} after a NATS server died",
        killed.elapsed()
    );
    // Each member hears every acknowledged message but its own, once, in
    // order: alice said the fourth, bob the first two, carol the third.
    let own = [vec![acked[3]], vec![acked[0], acked[1]], vec![acked[2]]];
    for ((client, heard), own) in members.iter_mut().zip(own) {
        let expected: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|id| !own.contains(id))
            .collect();
        // A node whose room consumer lived on the dead server gets a new
        // one once JetStream places it elsewhere, which took up to ~20 s on
        // a loaded machine: allow for it here, lost or repeated ids still
        // fail below.
        client.conn().set_wait(Duration::from_secs(45));
        while heard.len() < expected.len() {
            heard.push(client.next_of("message")["id"].as_u64().unwrap());
        }
        assert_eq!(heard, &expected);
    }
    eprintln!(
        "every member heard everything {:?} after a NATS server died",
        killed.elapsed()
    );
    let mut sorted = acked.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=4).collect::<Vec<_>>(),
        "a refused message took an id"
    );
    drop(nodes);
    drop(nats);
}

#[test]
fn presence_who_and_rooms_span_every_node() {
    let cluster = Cluster::start("presence");
    let mut alice = cluster.hello(0, "alice");
    let mut bob = cluster.hello(1, "bob");
    let mut carol = cluster.hello(2, "carol");
    alice.join("lobby");
    bob.join("lobby");
    carol.join("lobby");

    // alice, on node 1, is told of the joins on nodes 2 and 3.
    let mut joined: Vec<String> = (0..2)
        .map(|_| alice.next_of("joined")["nick"].as_str().unwrap().to_owned())
        .collect();
    joined.sort();
    assert_eq!(joined, ["bob", "carol"]);
    for client in [&mut alice, &mut bob, &mut carol] {
        client.wait_for_members("lobby", &["alice", "bob", "carol"], DEADLINE);
    }
    bob.send(&json!({"type": "rooms"}));
    assert_eq!(
        bob.next_of("rooms")["rooms"],
        json!([{"name": "lobby", "members": 3}])
    );

    // A rename on node 2 reaches node 1 and node 3 once.
    bob.send(&json!({"type": "nick", "nick": "robert"}));
    bob.next_of("ok");
    for client in [&mut alice, &mut carol] {
        let changed = client.next_of("nick_changed");
        assert_eq!(changed["old"], "bob", "{changed}");
        assert_eq!(changed["new"], "robert", "{changed}");
    }

    // A whisper to a nick on another node, and to a nick nowhere.
    alice.send(&json!({"type": "whisper", "to": "ROBERT", "text": "psst"}));
    let echo = alice.next_of("private");
    assert_eq!(
        (&echo["from"], &echo["to"], &echo["text"]),
        (&json!("alice"), &json!("robert"), &json!("psst")),
        "{echo}"
    );
    alice.next_of("ok");
    let got = bob.next_of("private");
    assert_eq!(
        (&got["from"], &got["text"]),
        (&json!("alice"), &json!("psst"))
    );
    assert_eq!(got["ts"], echo["ts"], "one message, one time");
    alice.send(&json!({"type": "whisper", "to": "nobody", "text": "hello?"}));
    let refused = alice.next();
    assert_eq!(refused["code"], "no_such_nick", "{refused}");

    // A leave on node 3, and a room only node 3 has.
    carol.send(&json!({"type": "leave", "room": "lobby"}));
    carol.next_of("ok");
    carol.join("kitchen");
    let left = alice.next_of("left");
    assert_eq!(left["nick"], "carol", "{left}");
    alice.wait_for_members("lobby", &["alice", "robert"], DEADLINE);
    alice.wait_for_members("kitchen", &["carol"], DEADLINE);
    alice.send(&json!({"type": "rooms"}));
    assert_eq!(
        alice.next_of("rooms")["rooms"],
        json!([{"name": "kitchen", "members": 1}, {"name": "lobby", "members": 2}])
    );

    // Reading a room that never existed makes no room of it.
    for _ in 0..2 {
        alice.send(&json!({"type": "history", "room": "nowhere"}));
        let refused = alice.next_of("error");
        assert_eq!(refused["code"], "no_such_room", "{refused}");
    }
    let (mut ghost, _) = JsonClient::open(
        cluster.addr(1),
        &json!({"type": "hello", "version": 1, "nick": "ghost", "resume": {"nowhere": 3}}),
        DEADLINE,
    );
    let refused = ghost.next_of("error");
    assert_eq!(refused["code"], "no_such_room", "{refused}");
    alice.send(&json!({"type": "rooms"}));
    assert_eq!(alice.next_of("rooms")["rooms"].as_array().unwrap().len(), 2);
}

#[test]
fn a_later_node_learns_presence_and_a_dead_nodes_members_leave() {
    let mut cluster = Cluster::start("presence-late");
    let mut alice = cluster.hello(0, "alice");
    let mut bob = cluster.hello(1, "bob");
    alice.join("hall");
    bob.join("hall");
    alice.wait_for_members("hall", &["alice", "bob"], DEADLINE);

    // A fourth node, started after the joins, learns them from the other
    // nodes' snapshots.
    let fourth = cluster.add_node("n4");
    let mut dave = cluster.hello(fourth, "dave");
    dave.join("hall");
    dave.wait_for_members("hall", &["alice", "bob", "dave"], DEADLINE);
    alice.wait_for_members("hall", &["alice", "bob", "dave"], DEADLINE);

    // bob's node dies: the others see him leave, saying why, within a few
    // missed heartbeats.
    cluster.node(1).kill();
    let killed = Instant::now();
    for client in [&mut alice, &mut dave] {
        let left = loop {
            let left = client.next_of("left");
            if left["nick"] == "bob" {
                break left;
            }
        };
        assert_eq!(left["reason"], "their server stopped answering", "{left}");
    }
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "{:?}",
        killed.elapsed()
    );
    alice.wait_for_members("hall", &["alice", "dave"], DEADLINE);
}

#[test]
fn says_sent_without_waiting_keep_their_order() {
    let cluster = Cluster::start("pipeline");
    let mut ann = cluster.hello(0, "ann");
    let mut ben = cluster.hello(1, "ben");
    ann.join("burst");
    ben.join("burst");
    // Several hundred `say`s at once: many wait for JetStream together, and
    // must still be stored, delivered and answered in the order sent.
    const COUNT: usize = 600;
    let mut lines = String::new();
    for i in 0..COUNT {
        lines.push_str(
            &json!({"ref": i.to_string(), "type": "say", "room": "burst", "text": format!("m{i}")})
                .to_string(),
        );
        lines.push('\n');
    }
    // Then a line that is not JSON and a ping: their answers come after
    // every `ok`.
    lines.push_str("not json\n");
    lines.push_str(&json!({"ref": "last", "type": "ping"}).to_string());
    lines.push('\n');
    ann.conn().send_raw(lines.as_bytes()).unwrap();
    let mut oks = Vec::new();
    loop {
        let frame = ann.next();
        match frame["type"].as_str() {
            Some("ok") => oks.push((
                frame["ref"].as_str().unwrap().to_owned(),
                frame["id"].as_u64().unwrap(),
            )),
            Some("error") => {
                assert_eq!(oks.len(), COUNT, "an error overtook an ok: {frame}");
                assert_eq!(frame["code"], "bad_frame", "{frame}");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(ann.next_of("pong")["ref"], "last");
    let refs: Vec<String> = oks.iter().map(|(r, _)| r.clone()).collect();
    let expected: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    assert_eq!(refs, expected, "answers out of request order");
    assert!(
        oks.windows(2).all(|w| w[1].1 == w[0].1 + 1),
        "ids not consecutive in request order"
    );
    let mut heard = Vec::new();
    while heard.len() < COUNT {
        heard.push(ben.next_of("message")["text"].as_str().unwrap().to_owned());
    }
    let sent: Vec<String> = (0..COUNT).map(|i| format!("m{i}")).collect();
    assert_eq!(heard, sent, "stored out of the order sent");
}

#[test]
fn a_node_stopped_gracefully_tells_the_others_and_frees_its_nicks() {
    // A lease far longer than the test: bob's nick can only come free
    // because his node gave it back.
    let mut cluster = Cluster::start_with("graceful", &[("CHATROOM_NICK_LEASE_SECS", "60")]);
    let mut alice = cluster.hello(0, "alice");
    let mut bob = cluster.hello(1, "bob");
    alice.join("hall");
    bob.join("hall");
    alice.wait_for_members("hall", &["alice", "bob"], DEADLINE);

    cluster.node(1).stop();
    let left = alice.next_of("left");
    assert_eq!(left["nick"], "bob", "{left}");
    assert_eq!(left["reason"], "server shutting down", "{left}");
    alice.wait_for_members("hall", &["alice"], DEADLINE);
    let (_again, welcome) = JsonClient::open(
        cluster.addr(2),
        &json!({"type": "hello", "version": 1, "nick": "bob"}),
        DEADLINE,
    );
    assert_eq!(welcome["type"], "welcome", "{welcome}");
}

#[test]
fn a_silent_nodes_nick_is_taken_over_and_its_holder_told_when_it_wakes() {
    // A lease longer than the takeover may take: zoe's nick can move only
    // because her node stopped answering, not because the lease ran out.
    let mut cluster = Cluster::start_with("takeover", &[("CHATROOM_NICK_LEASE_SECS", "12")]);
    let mut old = cluster.hello(0, "zoe");
    cluster.node(0).signal("STOP");
    let stopped = Instant::now();
    let _new = loop {
        let (client, first) = JsonClient::open(
            cluster.addr(1),
            &json!({"type": "hello", "version": 1, "nick": "zoe"}),
            DEADLINE,
        );
        if first["type"] == "welcome" {
            break client;
        }
        assert_eq!(first["code"], "nick_taken", "{first}");
        thread::sleep(Duration::from_millis(300));
    };
    let moved = stopped.elapsed();
    eprintln!("zoe's nick moved {moved:?} after her node stopped");
    assert!(moved < Duration::from_secs(11), "not taken over: {moved:?}");

    // Her old node wakes, finds the nick held elsewhere at its next
    // renewal, and disconnects her there with a reason.
    cluster.node(0).signal("CONT");
    let refused = old.next_of("error");
    assert_eq!(refused["code"], "nick_taken", "{refused}");
    assert_eq!(old.next_of("bye")["reason"], "nick taken");
}

#[test]
fn a_plain_text_client_chats_with_a_client_of_another_node() {
    let cluster = Cluster::start("text");
    // As `nc` would: connect and say nothing; the server greets in text and
    // puts the client in `lobby`.
    let (mut text, me) = TextClient::greeted(cluster.addr(0), DEADLINE);

    let mut bob = cluster.hello(1, "bob");
    bob.join("lobby");
    let mut expected = vec![me.as_str(), "bob"];
    expected.sort_by_key(|n| n.to_ascii_lowercase());
    bob.wait_for_members("lobby", &expected, DEADLINE);
    assert_eq!(
        text.line_where(|l| l.contains("bob joined")),
        "* bob joined #lobby\r\n"
    );

    bob.say("lobby", "hi from node 2");
    assert_eq!(
        text.line_where(|l| l.starts_with('<')),
        "<bob> hi from node 2\r\n"
    );
    text.send_raw(b"hello node 2\r\n");
    let heard = bob.next_of("message");
    assert_eq!(
        (&heard["from"], &heard["text"]),
        (&json!(me), &json!("hello node 2"))
    );
}

#[test]
fn an_irc_user_chats_with_a_web_user_of_another_node() {
    let mut cluster = Cluster::start_with("irc", &[("CHATROOM_IRC_LISTEN", "127.0.0.1:0")]);
    let irc = irc_addr(cluster.node(0));
    let mut alice = IrcClient::joined(irc, "alice", "#lobby", DEADLINE);

    let mut web = WebClient::connect(cluster.addr(1), DEADLINE);
    web.send(&json!({"type": "hello", "version": 1, "nick": "webby"}));
    assert_eq!(web.next()["type"], "welcome");
    // The nick alice holds on node 0 is hers on node 1 too.
    web.send(&json!({"ref": "r", "type": "nick", "nick": "ALICE"}));
    assert_eq!(web.next_of("error")["code"], "nick_taken");
    web.send(&json!({"ref": "j", "type": "join", "room": "lobby"}));
    web.next_of("members");
    // Node 1 learns that alice is in the room through the cluster's
    // presence, a moment after her join.
    let started = Instant::now();
    loop {
        web.send(&json!({"type": "who", "room": "lobby"}));
        let members = web.next_of("members");
        if members["members"] == json!(["alice", "webby"]) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "{members}");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(alice.expect(" JOIN "), ":webby!webby@chatroom JOIN #lobby");

    alice.send("PRIVMSG #lobby :hello from irc on node 1");
    let heard = web.next_of("message");
    assert_eq!(
        (&heard["from"], &heard["text"]),
        (&json!("alice"), &json!("hello from irc on node 1"))
    );
    web.send(&json!({"type": "say", "room": "lobby", "text": "hello from the web on node 2"}));
    assert_eq!(
        alice.expect("PRIVMSG"),
        ":webby!webby@chatroom PRIVMSG #lobby :hello from the web on node 2"
    );
    // Whispers cross the nodes both ways too.
    web.send(&json!({"type": "whisper", "to": "alice", "text": "psst"}));
    assert_eq!(
        alice.expect("PRIVMSG"),
        ":webby!webby@chatroom PRIVMSG alice :psst"
    );
    // The sender's own whisper comes back to it first.
    assert_eq!(web.next_of("private")["from"], "webby");
    alice.send("PRIVMSG webby :psst back");
    let private = web.next_of("private");
    assert_eq!(
        (&private["from"], &private["text"]),
        (&json!("alice"), &json!("psst back"))
    );
    alice.send("QUIT :bye nodes");
    let left = web.next_of("left");
    assert_eq!(
        (&left["nick"], &left["reason"]),
        (&json!("alice"), &json!("bye nodes"))
    );
}
