//! The operator's side of the real binary: `/metrics`, `/healthz` and
//! `/readyz` on `admin_listen`, reloading settings on SIGHUP, JSON logs,
//! and the example config file in packaging/.
//!
//! Every server listens on free loopback ports and every wait has a
//! deadline, so a bug fails a test instead of hanging it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::admin::{admin_addr, get, raw, sample, scrape_until};
use common::cluster::{node, start_node};
use common::irc_client::{IrcClient, irc_addr};
use common::json_client::JsonClient;
use common::nats::Nats;
use common::server::{BIN, Server, ServerBuilder};
use common::temp::TempDir;
use common::text_client::TextClient;

/// How long any one step may take before the test gives up.
const DEADLINE: Duration = Duration::from_secs(10);

/// A server with its admin endpoint on a free loopback port and history in
/// memory, plus `settings`.
fn start_with_admin(settings: &[(&str, &str)]) -> Server {
    Server::builder()
        .listen("127.0.0.1:0")
        .set("admin_listen", "127.0.0.1:0")
        .set("history", "memory")
        .settings(settings)
        .start()
}

/// Checks the exposition with Prometheus's own linter, when it is here.
fn promtool_check(exposition: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("skipped: promtool is not installed (.ci/install-test-deps installs it)");
        return;
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool's verdict");
    assert!(
        out.status.success(),
        "promtool: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_follow_a_short_chat() {
    let server = start_with_admin(&[]);
    let admin = admin_addr(&server);
    let (status, before) = get(admin, "/metrics");
    assert_eq!(status, 200, "{before}");
    promtool_check(&before);
    assert_eq!(sample(&before, "chatroom_ready"), 1);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &before,
            &format!("chatroom_build_info{{version=\"{version}\"}}")
        ),
        1
    );
    let count = |body: &str, series: &str| sample(body, series) - sample(&before, series);

    let (mut ann, _) = JsonClient::hello(server.addr(), "ann", DEADLINE);
    let (mut bob, _) = JsonClient::hello(server.addr(), "bob", DEADLINE);
    ann.join("ops");
    bob.join("ops");
    for text in ["one", "two", "three"] {
        ann.say("ops", text);
        bob.next_of("message");
    }
    let (mut text_client, _) = TextClient::greeted(server.addr(), DEADLINE);
    text_client.send("/quit");
    text_client.expect_closed();

    let during = scrape_until(
        admin,
        "chatroom_disconnects_total{reason=\"quit\"}",
        1,
        DEADLINE,
    );
    promtool_check(&during);
    assert_eq!(
        count(&during, "chatroom_connections{dialect=\"native\"}"),
        2
    );
    assert_eq!(
        count(&during, "chatroom_connections_total{dialect=\"text\"}"),
        1
    );
    assert_eq!(count(&during, "chatroom_connections{dialect=\"text\"}"), 0);
    // The text client joined the default room on connect.
    assert_eq!(count(&during, "chatroom_joins_total"), 3);
    assert_eq!(count(&during, "chatroom_messages_in_total"), 3);
    // Each of the three reached the one other member of #ops (a sender
    // is answered with `ok`, not its own message).
    assert_eq!(count(&during, "chatroom_messages_delivered_total"), 3);
    assert_eq!(count(&during, "chatroom_rate_limited_total"), 0);

    bob.send(&json!({"type": "leave", "room": "ops"}));
    bob.next_of("ok");
    drop(bob);
    let after = scrape_until(
        admin,
        "chatroom_disconnects_total{reason=\"peer_closed\"}",
        1,
        DEADLINE,
    );
    assert_eq!(count(&after, "chatroom_connections{dialect=\"native\"}"), 1);
    // bob's leave, and the text client's lobby as it quit.
    assert_eq!(count(&after, "chatroom_leaves_total"), 2);
    drop(ann);
}

#[test]
fn the_durable_store_reports_its_commit_times() {
    // The default store: SQLite, in the scratch directory.
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .set("admin_listen", "127.0.0.1:0")
        .start();
    let admin = admin_addr(&server);
    let (mut ann, _) = JsonClient::hello(server.addr(), "ann", DEADLINE);
    ann.join("ops");
    ann.say("ops", "kept");
    let body = scrape_until(admin, "chatroom_history_commit_seconds_count", 1, DEADLINE);
    promtool_check(&body);
    assert!(
        sample(&body, "chatroom_history_commit_seconds_bucket{le=\"+Inf\"}") >= 1,
        "{body}"
    );
    // Committed within 100 ms: nothing waits for the writer any more.
    let end = Instant::now() + DEADLINE;
    while sample(&get(admin, "/metrics").1, "chatroom_history_queue") > 0 {
        assert!(Instant::now() < end, "the history queue never emptied");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A member that joins `room` and then reads nothing, through a small
/// receive buffer, so the server's queue for it fills.
fn stalled_member(addr: std::net::SocketAddr, nick: &str, room: &str) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket.set_recv_buffer_size(8 * 1024).expect("SO_RCVBUF");
    socket.set_tcp_mss(536).expect("TCP_MAXSEG");
    socket.connect(&addr.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    let hello = json!({"type": "hello", "version": 1, "nick": nick});
    let join = json!({"type": "join", "room": room, "history": 0});
    write!(stream, "{hello}\n{join}\n").expect("hello and join");
    stream
}

#[test]
fn queued_bytes_show_a_member_that_stopped_reading() {
    let server = start_with_admin(&[("rate_per_sec", "100000"), ("rate_burst", "100000")]);
    let admin = admin_addr(&server);
    let idle = get(admin, "/metrics").1;
    assert_eq!(sample(&idle, "chatroom_outbox_bytes"), 0, "{idle}");
    let (mut ann, _) = JsonClient::hello(server.addr(), "ann", DEADLINE);
    ann.join("flood");
    let stalled = stalled_member(server.addr(), "stalled", "flood");
    ann.wait_for_members("flood", &["ann", "stalled"], DEADLINE);

    // 2 MB of room traffic: more than the kernel holds for the stalled
    // member, less than its queue's 1 MiB plus that.
    let text = "x".repeat(3000);
    for _ in 0..700 {
        ann.send(&json!({"type": "say", "room": "flood", "text": text}));
    }
    for _ in 0..700 {
        ann.next_of("ok");
    }
    let body = scrape_until(admin, "chatroom_outbox_largest_bytes", 100_000, DEADLINE);
    promtool_check(&body);
    assert!(
        sample(&body, "chatroom_outbox_bytes") >= sample(&body, "chatroom_outbox_largest_bytes"),
        "{body}"
    );
    // Its queue goes with it.
    drop(stalled);
    let end = Instant::now() + DEADLINE;
    while sample(&get(admin, "/metrics").1, "chatroom_outbox_bytes") > 0 {
        assert!(Instant::now() < end, "the queue outlived its session");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn refusals_at_the_door_are_counted_by_limit() {
    let server = start_with_admin(&[("max_connections", "1")]);
    let admin = admin_addr(&server);
    let (_ann, _) = JsonClient::hello(server.addr(), "ann", DEADLINE);
    let mut refused = JsonClient::connect(server.addr());
    assert_eq!(refused.next()["code"], "server_full");
    scrape_until(
        admin,
        "chatroom_connections_refused_total{reason=\"server_full\"}",
        1,
        DEADLINE,
    );
}

#[test]
fn health_and_readiness_answer_with_small_json() {
    let server = start_with_admin(&[]);
    let admin = admin_addr(&server);
    let (status, body) = get(admin, "/healthz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = get(admin, "/readyz?verbose");
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        ready,
        json!({"status": "ready", "listening": true, "history_writable": true, "cluster_connected": null})
    );
    assert_eq!(get(admin, "/nowhere").0, 404);
    assert_eq!(
        raw(admin, "POST /metrics HTTP/1.1\r\nHost: t\r\n\r\n").0,
        405
    );
    let (status, body) = raw(admin, "HEAD /healthz HTTP/1.1\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, ""));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(raw(admin, &huge).0, 431);
}

#[test]
fn a_bad_admin_address_is_a_configuration_error() {
    let (code, log) = Server::builder()
        .listen("127.0.0.1:0")
        .set("admin_listen", "localhost")
        .expect_exit();
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("invalid setting admin_listen"), "{log}");
}

/// Says `n` lines at once in `room`, then reads the `n` answers; returns
/// how many were `rate_limited`.
fn say_burst(client: &mut JsonClient, room: &str, n: usize) -> usize {
    for i in 0..n {
        client.send(&json!({"type": "say", "room": room, "text": format!("m{i}")}));
    }
    let mut limited = 0;
    for _ in 0..n {
        let answer = client.next_where(|f| f["type"] == "ok" || f["type"] == "error");
        if answer["code"] == "rate_limited" {
            limited += 1;
        }
    }
    limited
}

/// A server on a free port, memory history, reading its settings from
/// `file`, which a SIGHUP reads again.
fn from_file(file: &std::path::Path) -> ServerBuilder {
    Server::builder()
        .listen("127.0.0.1:0")
        .set("history", "memory")
        .arg("--config")
        .arg(file)
}

#[test]
fn a_sighup_with_a_lower_rate_limits_a_live_connection() {
    let dir = TempDir::new("reload");
    let file = dir.write("server.toml", "rate_per_sec = 1000.0\nrate_burst = 1000\n");
    let mut server = from_file(&file).set("admin_listen", "127.0.0.1:0").start();
    let (mut ann, _) = JsonClient::hello(server.addr(), "ann", DEADLINE);
    ann.join("ops");
    assert_eq!(say_burst(&mut ann, "ops", 10), 0);

    dir.write(
        "server.toml",
        "rate_per_sec = 0.1\nrate_burst = 2\nserver_name = \"renamed\"\n",
    );
    server.signal("HUP");
    let applied = server.wait_for_log("settings reloaded", DEADLINE);
    assert!(
        applied.contains("rate_burst") && applied.contains("rate_per_sec"),
        "{applied}"
    );
    let restart = server.wait_for_log("only after a restart", DEADLINE);
    assert!(restart.contains("server_name"), "{restart}");

    // The same connection now has two frames of burst and almost no rate.
    assert_eq!(say_burst(&mut ann, "ops", 5), 3);
    let metrics = get(admin_addr(&server), "/metrics").1;
    assert_eq!(sample(&metrics, "chatroom_rate_limited_total"), 3);
    // A new connection gets the new rates too; the name stays as it was.
    let (_bob, welcome) = JsonClient::hello(server.addr(), "bob", DEADLINE);
    assert_eq!(welcome["server"], "chatroom");
}

#[test]
fn a_broken_file_on_sighup_keeps_the_old_settings() {
    let dir = TempDir::new("reload-bad");
    let file = dir.write("server.toml", "rate_per_sec = 1000.0\nrate_burst = 1000\n");
    let mut server = from_file(&file).start();
    let (mut ann, _) = JsonClient::hello(server.addr(), "ann", DEADLINE);
    ann.join("ops");

    dir.write("server.toml", "rate_burst = 2\nrate_per_sec = [oops\n");
    server.signal("HUP");
    let failed = server.wait_for_log("reload failed", DEADLINE);
    assert!(failed.contains("not valid TOML"), "{failed}");
    assert_eq!(say_burst(&mut ann, "ops", 10), 0);

    dir.write("server.toml", "rate_burst = 2\nrate_per_sec = -1.0\n");
    server.signal("HUP");
    let failed = server.wait_for_log("reload failed", DEADLINE);
    assert!(failed.contains("rate_per_sec"), "{failed}");
    assert_eq!(say_burst(&mut ann, "ops", 10), 0);
    assert!(server.is_running());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let scratch = TempDir::new("json-logs");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--set", "log_format=json"])
        .args(["--set", "history=memory"])
        .current_dir(scratch.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chatroom-server");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let mut next = || -> Value {
        let line = lines.next().expect("a log line").expect("UTF-8");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let started = Instant::now();
    let listening = loop {
        let event = next();
        if event["message"] == "listening" {
            break event;
        }
        assert!(started.elapsed() < DEADLINE, "no listening line");
    };
    assert_eq!(listening["level"], "INFO");
    let addr = listening["addr"]
        .as_str()
        .expect("the address as a field")
        .parse()
        .expect("a socket address");
    let (client, _) = JsonClient::hello(addr, "ann", DEADLINE);
    let connected = loop {
        let event = next();
        if event["message"] == "connected" {
            break event;
        }
    };
    assert_eq!(connected["nick"], "ann");
    drop(client);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    // Every line up to the end is an object of its own.
    loop {
        let event = next();
        assert!(event.is_object());
        if event["message"] == "stopped" {
            break;
        }
    }
    assert!(child.wait().expect("exit status").success());
}

/// packaging/chatroom.toml, relative to this crate.
const EXAMPLE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/chatroom.toml");

#[test]
fn the_example_config_names_every_setting_and_loads() {
    let example = std::fs::read_to_string(EXAMPLE_CONFIG).expect("packaging/chatroom.toml");
    // As shipped, everything is commented out: the defaults.
    let defaults = Server::builder().arg("--print-config").run();
    assert_eq!(defaults.code, Some(0), "{}", defaults.stderr);
    let shipped = Server::builder()
        .args(["--config", EXAMPLE_CONFIG, "--print-config"])
        .run();
    assert_eq!(shipped.code, Some(0), "{}", shipped.stderr);
    assert_eq!(shipped.stdout, defaults.stdout);

    // Uncommented, it names every setting with its real default, as the
    // real loader reads it.
    let uncommented: String = example
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.split_once(" = ")
                .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    for line in defaults.stdout.lines() {
        let key = line.split(" = ").next().expect("key = value");
        assert!(
            uncommented
                .lines()
                .any(|l| l.starts_with(&format!("{key} = "))),
            "packaging/chatroom.toml lacks `# {key} = ...`"
        );
    }
    let dir = TempDir::new("example-config");
    let file = dir.write("server.toml", &uncommented);
    let loaded = Server::builder()
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .run();
    assert_eq!(loaded.code, Some(0), "{}", loaded.stderr);
    assert_eq!(
        loaded.stdout, defaults.stdout,
        "a default in packaging/chatroom.toml is not the real one"
    );
}

/// IRC clients are counted as a dialect of their own, from registration
/// to their quit, which is counted by its reason like the others'.
#[test]
fn irc_sessions_are_counted_as_their_own_dialect() {
    let mut server = start_with_admin(&[("irc_listen", "127.0.0.1:0")]);
    let irc = irc_addr(&mut server);
    let admin = admin_addr(&server);
    let mut alice = IrcClient::registered(irc, "alice", DEADLINE);
    let during = scrape_until(admin, "chatroom_connections{dialect=\"irc\"}", 1, DEADLINE);
    assert_eq!(
        sample(&during, "chatroom_connections_total{dialect=\"irc\"}"),
        1
    );
    alice.send("QUIT :done");
    let after = scrape_until(
        admin,
        "chatroom_disconnects_total{reason=\"quit\"}",
        1,
        DEADLINE,
    );
    promtool_check(&after);
    assert_eq!(sample(&after, "chatroom_connections{dialect=\"irc\"}"), 0);
    assert_eq!(
        sample(&after, "chatroom_connections{dialect=\"native\"}"),
        0
    );
}

/// `/readyz` until it answers `status`; returns the body.
fn readyz_until(admin: std::net::SocketAddr, status: u16, limit: Duration) -> Value {
    let end = Instant::now() + limit;
    loop {
        let (got, body) = get(admin, "/readyz");
        if got == status {
            return serde_json::from_str(&body).expect("a JSON body");
        }
        assert!(Instant::now() < end, "/readyz stayed {got}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cluster_node_is_not_ready_without_nats_and_ready_when_it_returns() {
    let dir = TempDir::new("ready-cluster");
    let store = dir.join("nats");
    let nats = Nats::start(&store, &[]);
    let port = nats.port;
    let url = format!("nats://127.0.0.1:{port}");
    let builder = node(&url, "n1", &dir.join("n1")).set("admin_listen", "127.0.0.1:0");
    let server = start_node(&builder, "n1");
    let admin = admin_addr(&server);
    let ready = readyz_until(admin, 200, DEADLINE);
    assert_eq!(ready["cluster_connected"], true, "{ready}");

    // A say goes through JetStream and its acknowledgement is timed.
    let (mut ann, _) = JsonClient::hello(server.addr(), "ann", DEADLINE);
    ann.join("ops");
    ann.say("ops", "timed");
    let body = scrape_until(admin, "chatroom_broker_publish_seconds_count", 1, DEADLINE);
    promtool_check(&body);

    drop(nats);
    let down = readyz_until(admin, 503, DEADLINE);
    assert_eq!(down["status"], "not_ready", "{down}");
    assert_eq!(down["cluster_connected"], false, "{down}");
    assert_eq!(sample(&get(admin, "/metrics").1, "chatroom_ready"), 0);

    let _nats = Nats::start_on(port, &store, &[]).expect("nats-server again on its port");
    let back = readyz_until(admin, 200, Duration::from_secs(15));
    assert_eq!(back["cluster_connected"], true, "{back}");
}

#[test]
fn discovery_announces_the_server_on_loopback_until_it_stops() {
    use chatroom_core::discovery::{self, Scope};
    let mdns_port = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port();
    let port = mdns_port.to_string();
    let mut server = Server::builder()
        .listen("127.0.0.1:0")
        .set("history", "memory")
        .set("server_name", "discoverable")
        .set("discovery", "true")
        .set("discovery_port", &port)
        .start();
    // Announced before the `listening` line the start waited for.
    let log = server.log_lines();
    let announced = log.iter().find(|l| l.contains("announced on the LAN"));
    assert!(
        announced.is_some_and(|l| l.contains("_chatroom._tcp")),
        "{log:?}"
    );

    let found = discovery::browse(Duration::from_secs(2), mdns_port, Scope::Loopback)
        .expect("browse on loopback");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, "discoverable");
    assert_eq!(found[0].addr, server.addr());
    assert!(!found[0].tls);
    // What was found is where the server is.
    let (_ann, welcome) = JsonClient::hello(found[0].addr, "ann", DEADLINE);
    assert_eq!(welcome["server"], "discoverable");

    // A stopped server says goodbye: nobody answers for it any more.
    assert!(server.stop().success());
    let found = discovery::browse(Duration::from_secs(1), mdns_port, Scope::Loopback)
        .expect("browse on loopback");
    assert!(found.is_empty(), "{found:?}");
}

/// The YAML block that follows `heading` in docs/operations.md.
fn yaml_after(heading: &str) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .expect("docs/operations.md");
    let section = doc.split_once(heading).expect("the heading").1;
    let block = section.split_once("```yaml\n").expect("a yaml block").1;
    block
        .split_once("```")
        .expect("the block's end")
        .0
        .to_owned()
}

#[test]
fn the_documented_alert_rules_and_scrape_config_are_valid() {
    let dir = TempDir::new("promtool-rules");
    let rules = dir.write("rules.yml", &yaml_after("### What to alert on"));
    let scrape = yaml_after("### Scraping");
    let config = dir.write(
        "prometheus.yml",
        &format!("{scrape}rule_files:\n  - {}\n", rules.display()),
    );
    for args in [
        vec!["check".as_ref(), "rules".as_ref(), rules.as_os_str()],
        vec!["check".as_ref(), "config".as_ref(), config.as_os_str()],
    ] {
        let Ok(out) = Command::new("promtool").args(&args).output() else {
            eprintln!("skipped: promtool is not installed (.ci/install-test-deps installs it)");
            return;
        };
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The status line the server answers a WebSocket upgrade from `origin`
/// with.
fn upgrade_status(addr: std::net::SocketAddr, origin: &str) -> String {
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        socket,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {origin}\r\n\r\n"
    )
    .unwrap();
    let mut status = String::new();
    BufReader::new(socket).read_line(&mut status).unwrap();
    status.trim_end().to_owned()
}

#[test]
fn a_sighup_makes_and_unmakes_a_server_operator_and_changes_web_origins() {
    const CHEAP: &str = "hash_memory_kib = 64\nhash_iterations = 1\n";
    const ORIGIN: &str = "https://chat.example.com";
    let dir = TempDir::new("reload-operators");
    let file = dir.write("server.toml", CHEAP);
    let mut server = from_file(&file).start();
    let (mut root, _) = TextClient::greeted(server.addr(), DEADLINE);
    root.send("/nick root");
    root.line_with("is now known as root");
    root.send("/register a-long-password");
    root.line_with("* you are logged in as root");
    root.send("/modlog 5");
    let refused = root.line_where(|l| l.starts_with("! "));
    assert!(refused.contains("operators"), "{refused}");
    assert!(upgrade_status(server.addr(), ORIGIN).contains(" 403 "));

    dir.write(
        "server.toml",
        &format!("{CHEAP}operators = [\"root\"]\nweb_origins = [\"{ORIGIN}\"]\n"),
    );
    server.signal("HUP");
    let applied = server.wait_for_log("settings reloaded", DEADLINE);
    assert!(
        applied.contains("operators") && applied.contains("web_origins"),
        "{applied}"
    );
    // The same session, logged in before the reload, is an operator now.
    root.send("/modlog 5");
    root.line_with("* moderation log:");
    assert!(upgrade_status(server.addr(), ORIGIN).contains(" 101 "));

    dir.write("server.toml", CHEAP);
    server.signal("HUP");
    server.wait_for_log("settings reloaded", DEADLINE);
    root.send("/modlog 5");
    let refused = root.line_where(|l| l.starts_with("! "));
    assert!(refused.contains("operators"), "{refused}");
    assert!(upgrade_status(server.addr(), ORIGIN).contains(" 403 "));
}
