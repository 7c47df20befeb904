//! Smoke tests of the real `chatroom-server` executable: arguments,
//! settings, signals and exit codes.
//!
//! Every server listens on a free loopback port and every wait has a
//! deadline, so a bug fails a test instead of hanging it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chatroom_core::server::ServerConfig;
use common::json_client::{JsonClient, hello_frame};
use common::server::{Finished, Server};
use common::temp::{TempDir, free_port};
use common::text_client::TextClient;

/// How long any one step may take before the test gives up.
const DEADLINE: Duration = Duration::from_secs(10);
/// A silent client is greeted after `sniff_ms` (40 by default); the
/// bound leaves room for a loaded machine (the figure itself is measured
/// by examples/bench/greeting.py, docs/benchmarks.md).
const GREETING_WITHIN: Duration = Duration::from_millis(300);

/// Runs the binary with `args` and `env` and waits for it to exit.
fn run(args: &[&str], env: &[(&str, &str)]) -> Finished {
    Server::builder().args(args).envs(env).run()
}

/// Starts the binary with `args` and `env` and waits until it listens.
fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    Server::builder().args(args).envs(env).start()
}

fn field_names() -> Vec<String> {
    toml::Table::try_from(ServerConfig::default())
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn help_documents_flags_settings_and_exit_codes() {
    let out = run(&["--help"], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for needle in [
        "--listen",
        "--config",
        "--set",
        "--print-config",
        "CHATROOM_",
        "CHATROOM_LISTEN",
        "RUST_LOG",
        "SIGTERM",
        "EXIT CODES",
        "127.0.0.1:7878",
    ] {
        assert!(out.stdout.contains(needle), "--help lacks {needle}");
    }
    for field in field_names() {
        assert!(out.stdout.contains(&field), "--help lacks {field}");
        let var = format!("CHATROOM_{}", field.to_ascii_uppercase());
        assert!(out.stdout.contains(&var), "--help lacks {var}");
    }
}

#[test]
fn defaults_listen_on_loopback_7878() {
    let out = run(&["--print-config"], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .lines()
            .any(|l| l == r#"listen = ["127.0.0.1:7878"]"#),
        "{}",
        out.stdout
    );
    for field in field_names() {
        assert!(out.stdout.contains(&format!("{field} = ")), "{field}");
    }
}

#[test]
fn seed_form_greets_silent_clients_and_relays_lines() {
    let port = free_port();
    let server = start(&["127.0.0.1", &port.to_string()], &[]);
    assert_eq!(server.addr(), SocketAddr::from(([127, 0, 0, 1], port)));

    let mut alice = TextClient::connect(server.addr(), DEADLINE);
    let mut bob = TextClient::connect(server.addr(), DEADLINE);
    for client in [&mut alice, &mut bob] {
        let left = GREETING_WITHIN.saturating_sub(client.connected_for());
        let greeting = client.line_within(left);
        let expected = format!("you are {}", client.address_nick());
        assert!(
            greeting.starts_with("* welcome to chatroom") && greeting.contains(&expected),
            "{greeting:?}"
        );
        assert!(greeting.ends_with("\r\n"), "{greeting:?}");
    }

    alice.send("hello from the seed form");
    let heard = bob.line_where(|l| l.starts_with('<'));
    assert_eq!(
        heard,
        format!("<{}> hello from the seed form\r\n", alice.address_nick())
    );
}

/// Sends one HTTP request on `conn` and reads the whole answer.
fn ask_for_the_page(mut conn: std::net::TcpStream, addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        conn,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A person on `nc` is greeted after the short window; a browser that
/// opened a connection ahead of need and sends its request a second later
/// is still served the page, because its address asked for a page before
/// (the long window, here 3 s, applies to such addresses only).
#[test]
fn a_browsers_late_request_is_served_and_others_are_greeted_at_once() {
    use std::io::Read;
    let server = start(&["--set", "browser_sniff_ms=3000"], &[]);
    let addr = server.addr();

    // No page asked for yet: a silent client is a text one.
    let mut person = TextClient::connect(addr, DEADLINE);
    let greeting = person.line_within(Duration::from_secs(2));
    assert!(
        greeting.starts_with("* welcome to chatroom"),
        "{greeting:?}"
    );

    // A browser asks for the page at once on its first connection...
    let first = ask_for_the_page(std::net::TcpStream::connect(addr).unwrap(), addr);
    assert!(first.starts_with("HTTP/1.1 200"), "{first:.200}");

    // ...and opens another that stays silent for a second: no greeting.
    let mut spare = std::net::TcpStream::connect(addr).unwrap();
    spare
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = spare.read(&mut byte);
    assert!(
        early.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "the spare connection was sent {early:?} {byte:?}"
    );
    let late = ask_for_the_page(spare, addr);
    assert!(late.starts_with("HTTP/1.1 200"), "{late:.200}");
}

#[test]
fn sigterm_says_bye_to_every_client_and_exits_zero() {
    let mut server = start(&["--listen", "127.0.0.1:0"], &[]);
    let mut text = TextClient::connect(server.addr(), DEADLINE);
    text.line_where(|l| l.starts_with("* welcome"));
    let (mut json, _) = JsonClient::hello(server.addr(), "n1", DEADLINE);
    server.wait_for_log("nick=n1", DEADLINE);

    server.signal("TERM");
    let bye = text.line_where(|l| l.starts_with("* bye"));
    assert_eq!(bye, "* bye: server shutting down\r\n");
    let bye = json.next_where(|f| f["type"] == "bye").to_string();
    assert!(bye.contains("server shutting down"), "{bye}");
    text.expect_closed();
    json.expect_closed();

    let status = server.exit_status();
    assert_eq!(status.code(), Some(0), "{status}");
    server.wait_for_log("signal=SIGTERM", DEADLINE);
}

#[test]
fn sigint_exits_zero() {
    let mut server = start(&["--listen", "127.0.0.1:0"], &[]);
    server.signal("INT");
    assert_eq!(server.exit_status().code(), Some(0));
}

#[test]
fn several_listen_flags_serve_one_server() {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .listen("127.0.0.1:0")
        .start();
    let second = server.addrs()[1];
    assert_ne!(second, server.addr());
    let (_first, _) = JsonClient::hello(server.addr(), "first", DEADLINE);
    // One registry behind both: the nick is already taken on the other.
    let mut again = TextClient::connect(second, DEADLINE);
    again.send(&hello_frame("first").to_string());
    let refused = again.line_within(DEADLINE);
    assert!(refused.contains(r#""type":"error""#), "{refused}");
}

#[test]
fn port_in_use_exits_3() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = run(&["--listen", &addr], &[]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(
        errors[0].contains(&format!("cannot listen on {addr}")),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("in use"), "{}", errors[0]);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn address_not_on_this_machine_exits_3() {
    // 192.0.2.0/24 is reserved for documentation; no host has it.
    let out = run(&["--listen", "192.0.2.1:7878"], &[]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("error: cannot listen on 192.0.2.1:7878"),
        "{}",
        out.stderr
    );
}

#[test]
fn malformed_address_exits_2() {
    for args in [
        &["--listen", "nonsense"][..],
        &["--listen", "127.0.0.1:99999"],
        &["999.0.0.1", "7878"],
        &["127.0.0.1"],
    ] {
        let out = run(args, &[]);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    }
    let out = run(&[], &[("CHATROOM_LISTEN", "7878")]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("listen"), "{}", out.stderr);
}

#[test]
fn unknown_key_in_config_file_exits_2() {
    let file_dir = TempDir::new("cli-unknown-key");
    let file = file_dir.write("unknown-key.toml", "max_conections = 5\n");
    let out = run(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert!(out.stderr.contains("max_conections"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn invalid_value_in_config_file_exits_2() {
    let file_dir = TempDir::new("cli-bad-value");
    let file = file_dir.write("bad-value.toml", "max_line_len = 5\n");
    let out = run(
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("max_line_len"), "{}", out.stderr);
    assert!(!out.stderr.contains("listening"), "{}", out.stderr);

    let file_dir = TempDir::new("cli-bad-type");
    let file = file_dir.write("bad-type.toml", "sniff_ms = \"soon\"\n");
    let out = run(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("sniff_ms"), "{}", out.stderr);

    let out = run(&["--config", "/nonexistent/chatroom.toml"], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read config file"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_environment_variable_exits_2() {
    let out = run(&[], &[("CHATROOM_MAX_CONECTIONS", "5")]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("CHATROOM_MAX_CONECTIONS"),
        "{}",
        out.stderr
    );
}

#[test]
fn environment_overrides_file_and_names_the_server() {
    let file_dir = TempDir::new("cli-env-override");
    let file = file_dir.write("env-override.toml", "server_name = \"from-file\"\n");
    let server = start(
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("CHATROOM_SERVER_NAME", "from-env")],
    );
    let (_client, welcome) = JsonClient::hello(server.addr(), "n1", DEADLINE);
    let welcome = welcome.to_string();
    assert!(welcome.contains(r#""server":"from-env""#), "{welcome}");
}

#[test]
fn print_config_shows_defaults_file_env_then_flags() {
    let file_dir = TempDir::new("cli-layers");
    let file = file_dir.write(
        "layers.toml",
        "server_name = \"file\"\nmax_connections = 7\nrate_burst = 9\n",
    );
    let env = [
        ("CHATROOM_SERVER_NAME", "env"),
        ("CHATROOM_RATE_BURST", "11"),
        ("CHATROOM_LISTEN", "127.0.0.1:1,127.0.0.1:2"),
    ];
    let out = run(
        &[
            "--config",
            file.to_str().unwrap(),
            "--set",
            "rate_burst=12",
            "--print-config",
        ],
        &env,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for line in [
        r#"listen = ["127.0.0.1:1", "127.0.0.1:2"]"#,
        r#"server_name = "env""#,
        "max_connections = 7",
        "rate_burst = 12",
        "shutdown_timeout_secs = 5",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{line}\n{}",
            out.stdout
        );
    }

    // The printed settings are a config file that reads back the same.
    let printed_dir = TempDir::new("cli-printed");
    let printed = printed_dir.write("printed.toml", &out.stdout);
    let again = run(
        &["--config", printed.to_str().unwrap(), "--print-config"],
        &[],
    );
    assert_eq!(again.stdout, out.stdout);

    let out = run(
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "[::1]:3",
            "--print-config",
        ],
        &env,
    );
    assert!(
        out.stdout.lines().any(|l| l == r#"listen = ["[::1]:3"]"#),
        "{}",
        out.stdout
    );
}
