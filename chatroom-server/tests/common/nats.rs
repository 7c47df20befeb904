//! A `nats-server` for tests: found on this machine, started on a free
//! loopback port with a store directory of its own, killed when dropped.
//!
//! `nats-server` is Debian's package (`apt-get install nats-server`); tests
//! fail, never skip, when it cannot be found. `NATS_SERVER` names another
//! binary.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::temp::free_port;

/// How long NATS may take to listen.
const LISTEN_DEADLINE: Duration = Duration::from_secs(15);

/// The nats-server executable.
pub(crate) fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let candidates = ["/usr/sbin/nats-server", "/usr/bin/nats-server"];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found (looked in {candidates:?} and $NATS_SERVER): \
                 install it with `apt-get install nats-server`"
            )
        })
}

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A NATS server with JetStream on a free loopback port.
pub(crate) struct Nats {
    _proc: Proc,
    /// Where it listens.
    pub(crate) port: u16,
}

impl Nats {
    /// Starts `nats-server -js` with its store in `store` and `args` added
    /// (authentication, TLS), and waits until it serves; on another free
    /// port if the first one was taken meanwhile.
    pub(crate) fn start(store: &Path, args: &[&str]) -> Self {
        (0..3)
            .find_map(|_| Self::start_on(free_port(), store, args))
            .expect("nats-server did not start on any of three free ports")
    }

    /// Starts `nats-server -js` on `port` with its store in `store` and
    /// `args` added, and waits until it serves; `None` when it could not
    /// take the port.
    pub(crate) fn start_on(port: u16, store: &Path, args: &[&str]) -> Option<Self> {
        let mut cmd = Command::new(nats_server_binary());
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .args(args);
        spawn(cmd, port).map(|proc| Self { _proc: proc, port })
    }

    /// Starts member `n` of a three-server NATS cluster with JetStream,
    /// with routes to the others on loopback; `ports` holds each member's
    /// client and cluster port. `None` when it could not take its ports.
    pub(crate) fn member(n: usize, ports: &[(u16, u16)], dir: &Path) -> Option<Self> {
        let (port, cluster_port) = ports[n];
        let routes: Vec<String> = ports
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != n)
            .map(|(_, (_, c))| format!("nats://127.0.0.1:{c}"))
            .collect();
        let mut cmd = Command::new(nats_server_binary());
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-server_name", &format!("nats{n}")])
            .args(["-cluster_name", "chatroom-test"])
            .args(["-cluster", &format!("nats://127.0.0.1:{cluster_port}")])
            .args(["-routes", &routes.join(",")])
            .arg("-sd")
            .arg(dir.join(format!("nats{n}")));
        spawn(cmd, port).map(|proc| Self { _proc: proc, port })
    }

    /// Its URL, `scheme://[userinfo@]127.0.0.1:PORT`.
    pub(crate) fn url(&self, scheme: &str, userinfo: &str) -> String {
        let at = if userinfo.is_empty() { "" } else { "@" };
        format!("{scheme}://{userinfo}{at}127.0.0.1:{}", self.port)
    }
}

/// Spawns a nats-server command, quiet, and waits until it serves on
/// `port`; `None` when it exits first (the port was taken, say).
fn spawn(mut cmd: Command, port: u16) -> Option<Proc> {
    let mut nats = Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}")),
    );
    let started = Instant::now();
    // Up once it greets as NATS and is still running: a port found free a
    // moment ago may have been taken by another test's socket since.
    loop {
        if !nats.0.try_wait().is_ok_and(|exit| exit.is_none()) {
            return None;
        }
        if greets_as_nats(port) {
            return Some(nats);
        }
        assert!(
            started.elapsed() < LISTEN_DEADLINE,
            "nats-server did not start on {port}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether whoever listens on `port` speaks first with NATS's `INFO`.
fn greets_as_nats(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}
