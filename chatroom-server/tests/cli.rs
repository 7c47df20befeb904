//! Smoke tests of the real `chatroom-server` executable: arguments,
//! settings, signals and exit codes.
//!
//! Every server listens on a free loopback port and every wait has a
//! deadline, so a bug fails a test instead of hanging it.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chatroom_core::server::ServerConfig;

const BIN: &str = env!("CARGO_BIN_EXE_chatroom-server");
/// How long any one step may take before the test gives up.
const DEADLINE: Duration = Duration::from_secs(10);
/// A silent client is greeted after `sniff_ms` (250 by default).
const GREETING_WITHIN: Duration = Duration::from_millis(300);

/// The binary with a clean environment: no `RUST_LOG`, no `CHATROOM_*`
/// variables from whoever runs the tests.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    // Each run works in a directory of its own, so the default history
    // store (`./chatroom-data`) is never shared between tests.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("chatroom-cli-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(&dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHATROOM_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// What a run that ended left behind.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary and waits for it to exit on its own.
fn run(args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut child = command(args, env).spawn().expect("start chatroom-server");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_for_exit(&mut child, DEADLINE);
    Finished {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Waits for `child` to exit; kills it and fails the test after `limit`.
fn wait_for_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chatroom-server did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A server that is running and listening.
struct Running {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Running {
    /// Starts the binary and waits for its `listening addr=...` line.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = command(args, env).spawn().expect("start chatroom-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, log) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut running = Self {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        let line = running.wait_for_log("listening addr=");
        let addr = line
            .split("listening addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("an address after addr=");
        running.addr = addr.parse().expect("a socket address");
        running
    }

    /// The first stderr line from now on that contains `needle`.
    fn wait_for_log(&mut self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?} ({e})"),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    fn exit_status(&mut self) -> ExitStatus {
        wait_for_exit(&mut self.child, DEADLINE)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One TCP client that reads lines.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    connected: Instant,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            connected: Instant::now(),
        }
    }

    /// The nick the server derives from this client's address.
    fn address_nick(&self) -> String {
        let local = self.writer.local_addr().unwrap();
        format!("127-0-0-1-{}", local.port())
    }

    fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }

    /// The next line, with its line ending; fails after `limit`.
    fn line_within(&mut self, limit: Duration) -> String {
        self.writer
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .unwrap();
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("connection closed while waiting for a line"),
            Ok(_) => line,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no line within {limit:?} (got {line:?} so far)")
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// The first line from now on that satisfies `wanted`.
    fn line_where(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let line = self.line_within(end.saturating_duration_since(Instant::now()));
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Fails unless the server closes the connection soon.
    fn expect_closed(&mut self) {
        self.writer.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

/// A native client past its handshake; returns it and its `welcome` line.
fn native(addr: SocketAddr, nick: &str) -> (Client, String) {
    let mut client = Client::connect(addr);
    client.send(&format!(
        r#"{{"type":"hello","version":1,"nick":"{nick}"}}"#
    ));
    let welcome = client.line_where(|l| l.contains(r#""type":"welcome""#));
    (client, welcome)
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A config file unique to one test, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "chatroom-server-cli-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
    let server = Running::start(&["127.0.0.1", &port.to_string()], &[]);
    assert_eq!(server.addr, SocketAddr::from(([127, 0, 0, 1], port)));

    let mut alice = Client::connect(server.addr);
    let mut bob = Client::connect(server.addr);
    for client in [&mut alice, &mut bob] {
        let left = GREETING_WITHIN.saturating_sub(client.connected.elapsed());
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

#[test]
fn sigterm_says_bye_to_every_client_and_exits_zero() {
    let mut server = Running::start(&["--listen", "127.0.0.1:0"], &[]);
    let mut text = Client::connect(server.addr);
    text.line_where(|l| l.starts_with("* welcome"));
    let (mut json, _) = native(server.addr, "n1");
    server.wait_for_log("nick=n1");

    server.signal("TERM");
    let bye = text.line_where(|l| l.starts_with("* bye"));
    assert_eq!(bye, "* bye: server shutting down\r\n");
    let bye = json.line_where(|l| l.contains(r#""type":"bye""#));
    assert!(bye.contains("server shutting down"), "{bye}");
    text.expect_closed();
    json.expect_closed();

    let status = server.exit_status();
    assert_eq!(status.code(), Some(0), "{status}");
    server.wait_for_log("signal=SIGTERM");
}

#[test]
fn sigint_exits_zero() {
    let mut server = Running::start(&["--listen", "127.0.0.1:0"], &[]);
    server.signal("INT");
    assert_eq!(server.exit_status().code(), Some(0));
}

#[test]
fn several_listen_flags_serve_one_server() {
    let mut server = Running::start(&["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"], &[]);
    let line = server.wait_for_log("listening addr=");
    let second: SocketAddr = line
        .split("listening addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an address after addr=")
        .parse()
        .expect("a socket address");
    assert_ne!(second, server.addr);
    let (_first, _) = native(server.addr, "first");
    // One registry behind both: the nick is already taken on the other.
    let mut again = Client::connect(second);
    again.send(r#"{"type":"hello","version":1,"nick":"first"}"#);
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
    let file = TempFile::new("unknown-key", "max_conections = 5\n");
    let out = run(&["--config", file.path()], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert!(out.stderr.contains("max_conections"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn invalid_value_in_config_file_exits_2() {
    let file = TempFile::new("bad-value", "max_line_len = 5\n");
    let out = run(&["--config", file.path(), "--listen", "127.0.0.1:0"], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("max_line_len"), "{}", out.stderr);
    assert!(!out.stderr.contains("listening"), "{}", out.stderr);

    let file = TempFile::new("bad-type", "sniff_ms = \"soon\"\n");
    let out = run(&["--config", file.path()], &[]);
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
    let file = TempFile::new("env-override", "server_name = \"from-file\"\n");
    let server = Running::start(
        &["--config", file.path(), "--listen", "127.0.0.1:0"],
        &[("CHATROOM_SERVER_NAME", "from-env")],
    );
    let (_client, welcome) = native(server.addr, "n1");
    assert!(welcome.contains(r#""server":"from-env""#), "{welcome}");
}

#[test]
fn print_config_shows_defaults_file_env_then_flags() {
    let file = TempFile::new(
        "layers",
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
            file.path(),
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
    let printed = TempFile::new("printed", &out.stdout);
    let again = run(&["--config", printed.path(), "--print-config"], &[]);
    assert_eq!(again.stdout, out.stdout);

    let out = run(
        &[
            "--config",
            file.path(),
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
