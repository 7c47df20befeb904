//! A chat node's credentials and TLS towards NATS, against a real
//! `nats-server` that asks for them: user and password, token, a `.creds`
//! file in operator mode, TLS with a private CA, mutual TLS; and the
//! refusals, which must be readable and must not show the secret.
//!
//! Every node logs at debug level here, so that a secret leaking into any
//! log line (the client library's included) fails the test.

#[path = "common/nats.rs"]
mod nats;
#[path = "common/operator.rs"]
mod operator;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chatroom_core::testing::TestPki;
use serde_json::{Value, json};

use nats::{Nats, Proc, TempDir};
use operator::Operator;

const BIN: &str = env!("CARGO_BIN_EXE_chatroom-server");
const DEADLINE: Duration = Duration::from_secs(20);

/// What became of a chat node started against NATS.
enum Node {
    /// It joined the cluster and listens.
    Up {
        proc: Proc,
        addr: SocketAddr,
        log: mpsc::Receiver<String>,
    },
    /// It exited: its exit code and everything it wrote on stderr.
    Exited { code: Option<i32>, stderr: String },
}

/// Starts a node on NATS at `url` with `--set` for each of `settings`;
/// waits until it listens or exits.
fn start_node(dir: &TempDir, url: &str, settings: &[(&str, &str)]) -> Node {
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--cluster", url])
        .env("CHATROOM_DATA_DIR", dir.join("data"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHATROOM_") {
            cmd.env_remove(name);
        }
    }
    for (key, value) in settings {
        cmd.arg("--set").arg(format!("{key}={value}"));
    }
    let mut child = cmd.spawn().expect("start chatroom-server");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, log) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut proc = Proc(child);
    let mut seen = Vec::new();
    let end = Instant::now() + DEADLINE;
    loop {
        match log.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(rest) = line.split("listening addr=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    let addr = addr.parse().expect("a socket address");
                    // Lines already read are checked for secrets too.
                    let (tx, again) = mpsc::channel();
                    for line in seen {
                        let _ = tx.send(line);
                    }
                    thread::spawn(move || {
                        for line in log {
                            let _ = tx.send(line);
                        }
                    });
                    return Node::Up {
                        proc,
                        addr,
                        log: again,
                    };
                }
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = proc.0.wait().expect("the node's exit status");
                return Node::Exited {
                    code: status.code(),
                    stderr: seen.join("\n"),
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the node neither listened nor exited: {}", seen.join("\n"))
            }
        }
    }
}

impl Node {
    fn addr(&self) -> SocketAddr {
        match self {
            Self::Up { addr, .. } => *addr,
            Self::Exited { code, stderr } => panic!("the node exited ({code:?}): {stderr}"),
        }
    }

    /// The exit code and stderr of a node that was expected to fail.
    fn failure(self) -> (Option<i32>, String) {
        match self {
            Self::Exited { code, stderr } => (code, stderr),
            Self::Up { addr, .. } => panic!("the node started on {addr}; it should have failed"),
        }
    }

    /// Fails if any log line so far holds `secret`.
    fn assert_never_logged(&self, secret: &str) {
        if let Self::Up { log, .. } = self {
            for line in log.try_iter() {
                assert!(!line.contains(secret), "secret in a log line: {line}");
            }
        }
    }

    fn stop(self) {
        if let Self::Up { proc, .. } = self {
            drop(proc);
        }
    }
}

/// One JSON-lines client of a node.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects as `nick` and joins `room`.
    fn join(addr: SocketAddr, nick: &str, room: &str) -> Self {
        let writer = TcpStream::connect(addr).expect("connect to the node");
        writer.set_read_timeout(Some(DEADLINE)).unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        let mut client = Self { writer, reader };
        client.send(json!({"type": "hello", "version": 1, "nick": nick}));
        client.expect("welcome");
        client.send(json!({"type": "join", "room": room, "history": 0}));
        client.expect("members");
        client
    }

    fn send(&mut self, frame: Value) {
        writeln!(self.writer, "{frame}").expect("send a frame");
    }

    /// The next frame of type `kind`; any error frame fails the test.
    fn expect(&mut self, kind: &str) -> Value {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("a frame in time");
            assert!(!line.is_empty(), "the node closed the connection");
            let frame: Value = serde_json::from_str(&line).expect("a JSON frame");
            assert_ne!(frame["type"], "error", "waiting for {kind}: {frame}");
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}

/// A message said on node `a` is heard on node `b`: the two share rooms
/// through NATS.
fn assert_nodes_chat(a: &Node, b: &Node) {
    let mut alice = Client::join(a.addr(), "alice", "lobby");
    let mut bob = Client::join(b.addr(), "bob", "lobby");
    alice.send(json!({"type": "say", "room": "lobby", "text": "over NATS"}));
    alice.expect("ok");
    let heard = bob.expect("message");
    assert_eq!(heard["from"], "alice");
    assert_eq!(heard["text"], "over NATS");
}

#[test]
fn nodes_log_in_with_a_user_and_password() {
    let dir = TempDir::new("auth-user");
    let nats = Nats::start(
        &dir.join("nats"),
        &["--user", "chat", "--pass", "pw-Secret-1"],
    );
    let password_file = dir.join("password");
    std::fs::write(&password_file, "pw-Secret-1\n").unwrap();
    let a = start_node(
        &dir,
        &nats.url("nats", ""),
        &[
            ("cluster_user", "chat"),
            ("cluster_password_file", password_file.to_str().unwrap()),
        ],
    );
    // The same credentials written into the URL instead.
    let b = start_node(&dir, &nats.url("nats", "chat:pw-Secret-1"), &[]);
    assert_nodes_chat(&a, &b);
    a.assert_never_logged("pw-Secret-1");
    b.assert_never_logged("pw-Secret-1");
}

#[test]
fn a_wrong_password_stops_the_node_without_showing_it() {
    let dir = TempDir::new("auth-wrong");
    let nats = Nats::start(
        &dir.join("nats"),
        &["--user", "chat", "--pass", "pw-Right-2"],
    );
    let node = start_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_user", "chat"), ("cluster_password", "pw-Wrong-2")],
    );
    let (code, stderr) = node.failure();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot join the cluster"), "{stderr}");
    assert!(stderr.contains("authorization"), "{stderr}");
    assert!(!stderr.contains("pw-Wrong-2"), "{stderr}");
    // No credentials at all: refused the same way.
    let (code, stderr) = start_node(&dir, &nats.url("nats", ""), &[]).failure();
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn nodes_log_in_with_a_token() {
    let dir = TempDir::new("auth-token");
    let nats = Nats::start(&dir.join("nats"), &["--auth", "tok-Secret-3"]);
    let a = start_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_token", "tok-Secret-3")],
    );
    let b = start_node(&dir, &nats.url("nats", "tok-Secret-3"), &[]);
    assert_nodes_chat(&a, &b);
    a.assert_never_logged("tok-Secret-3");
    b.assert_never_logged("tok-Secret-3");
    let (code, stderr) = start_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_token", "tok-Wrong-3")],
    )
    .failure();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("tok-Wrong-3"), "{stderr}");
}

#[test]
fn nodes_trust_a_private_ca() {
    let dir = TempDir::new("auth-tls");
    let pki = TestPki::new("nats-tls");
    let (cert, key, ca) = (
        pki.path("cert.pem"),
        pki.path("key.pem"),
        pki.path("ca.pem"),
    );
    let nats = Nats::start(
        &dir.join("nats"),
        &[
            "--tls",
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ],
    );
    let ca = ca.to_str().unwrap();
    let a = start_node(&dir, &nats.url("tls", ""), &[("cluster_tls_ca", ca)]);
    let b = start_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_tls_ca", ca), ("cluster_tls_required", "true")],
    );
    assert_nodes_chat(&a, &b);
    // The system's roots do not know the private CA.
    let (code, stderr) = start_node(&dir, &nats.url("nats", ""), &[]).failure();
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn nodes_show_a_client_certificate_to_a_verifying_nats() {
    let dir = TempDir::new("auth-mtls");
    let pki = TestPki::new("nats-mtls");
    let path = |file: &str| pki.path(file).to_str().unwrap().to_owned();
    let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    let nats = Nats::start(
        &dir.join("nats"),
        &[
            "--tlsverify",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--tlscacert",
            &ca,
        ],
    );
    // The test PKI has one certificate; it serves as the client's too.
    let with_cert = [
        ("cluster_tls_ca", ca.as_str()),
        ("cluster_tls_cert", cert.as_str()),
        ("cluster_tls_key", key.as_str()),
    ];
    let a = start_node(&dir, &nats.url("nats", ""), &with_cert);
    let b = start_node(&dir, &nats.url("nats", ""), &with_cert);
    assert_nodes_chat(&a, &b);
    a.stop();
    let (code, stderr) = start_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_tls_ca", ca.as_str())],
    )
    .failure();
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn a_certificate_without_its_key_is_a_configuration_error() {
    let dir = TempDir::new("auth-nokey");
    let (code, stderr) = start_node(
        &dir,
        "nats://127.0.0.1:1",
        &[("cluster_tls_cert", "/nonexistent/cert.pem")],
    )
    .failure();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cluster_tls_key"), "{stderr}");
}

#[test]
fn nodes_log_in_with_a_creds_file_in_operator_mode() {
    let dir = TempDir::new("auth-creds");
    let setup = Operator::write(dir.path());
    let nats = Nats::start(&dir.join("nats"), &["-c", setup.config.to_str().unwrap()]);
    let creds = [("cluster_creds", setup.creds.to_str().unwrap())];
    let a = start_node(&dir, &nats.url("nats", ""), &creds);
    let b = start_node(&dir, &nats.url("nats", ""), &creds);
    assert_nodes_chat(&a, &b);
    let seed = std::fs::read_to_string(&setup.creds).unwrap();
    let seed = seed
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a user seed");
    a.assert_never_logged(seed);
    b.assert_never_logged(seed);
    // Operator mode lets nobody in without a creds file.
    let (code, stderr) = start_node(&dir, &nats.url("nats", ""), &[]).failure();
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn unreadable_credential_files_are_named() {
    let dir = TempDir::new("auth-files");
    // NATS need not run: the files are read before any connection.
    let url = "nats://127.0.0.1:1";
    let missing = dir.join("missing.creds");
    let missing = missing.to_str().unwrap();
    let (code, stderr) = start_node(&dir, url, &[("cluster_creds", missing)]).failure();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("credentials file") && stderr.contains(missing),
        "{stderr}"
    );

    let bad = dir.join("bad.creds");
    std::fs::write(&bad, "SUANOTASEED-secret-4\n").unwrap();
    let (code, stderr) =
        start_node(&dir, url, &[("cluster_creds", bad.to_str().unwrap())]).failure();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is not a .creds file"), "{stderr}");
    assert!(!stderr.contains("secret-4"), "{stderr}");

    let (code, stderr) = start_node(
        &dir,
        url,
        &[("cluster_user", "chat"), ("cluster_password_file", missing)],
    )
    .failure();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cluster_password_file") && stderr.contains(missing),
        "{stderr}"
    );
}
