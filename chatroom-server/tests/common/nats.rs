//! A `nats-server` for tests: found on this machine, started on a free
//! loopback port with a store directory of its own, killed when dropped.
//!
//! `nats-server` is Debian's package (`apt-get install nats-server`); tests
//! fail, never skip, when it cannot be found. `NATS_SERVER` names another
//! binary.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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

/// A free loopback port (free when asked; nothing holds it).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A child process killed when the test ends, however it ends.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory under the system's temporary one, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory; `name` keeps concurrent tests apart.
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("chatroom-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self(dir)
    }

    /// The directory itself.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(nats_server_binary());
            cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(store)
                .args(args);
            if let Some(proc) = spawn(cmd, port) {
                return Self { _proc: proc, port };
            }
        }
        panic!("nats-server did not start on any of three free ports");
    }

    /// Its URL, `scheme://[userinfo@]127.0.0.1:PORT`.
    pub(crate) fn url(&self, scheme: &str, userinfo: &str) -> String {
        let at = if userinfo.is_empty() { "" } else { "@" };
        format!("{scheme}://{userinfo}{at}127.0.0.1:{}", self.port)
    }
}

/// Spawns a nats-server command, quiet, and waits until it serves on
/// `port`; `None` when it exits first (the port was taken, say).
pub(crate) fn spawn(mut cmd: Command, port: u16) -> Option<Proc> {
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
