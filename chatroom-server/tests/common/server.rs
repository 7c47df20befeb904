//! The `chatroom-server` executable under test: a builder for its command
//! line and environment, and a running server that knows where it listens,
//! keeps its log, and can be signalled, stopped, killed and restarted.
//!
//! Every start gets a clean environment (no `RUST_LOG` unless asked for, no
//! `CHATROOM_*` variable from whoever runs the tests) and a scratch working
//! directory of its own, so the default history store (`./chatroom-data`)
//! is never shared between tests; a restart keeps it. Every wait has a
//! deadline, and a server is killed when dropped: no test leaves a process
//! behind.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::log::Log;
use super::temp::TempDir;

/// The executable under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_chatroom-server");

/// How long a server may take to listen, or to exit once told to, unless
/// the builder says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The log line that says where a server listens.
const LISTENING: &str = "listening addr=";

/// How one server is started; [`ServerBuilder::start`] starts it.
#[derive(Clone, Debug)]
pub(crate) struct ServerBuilder {
    args: Vec<OsString>,
    /// `--listen` addresses, kept apart from `args` so that a restart can
    /// listen where the first run did.
    listen: Vec<String>,
    env: Vec<(OsString, OsString)>,
    log_filter: Option<String>,
    wait: Duration,
    label: Option<String>,
}

/// Why a server did not come up (see [`ServerBuilder::try_start`]).
#[derive(Debug)]
pub(crate) enum NotListening {
    /// It exited first: its exit code and everything it wrote on stderr.
    Exited { code: Option<i32>, log: String },
    /// It said nothing about listening in time; it has been killed.
    Silent { log: String },
}

/// What a run that ended on its own left behind (see [`ServerBuilder::run`]).
#[derive(Debug)]
pub(crate) struct Finished {
    /// The exit code; `None` when a signal ended it.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl ServerBuilder {
    /// Appends command-line arguments as they are.
    pub(crate) fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Appends one command-line argument.
    pub(crate) fn arg(self, arg: impl AsRef<OsStr>) -> Self {
        self.args([arg])
    }

    /// Listens on `addr` too (`--listen`; `127.0.0.1:0` for a free port).
    pub(crate) fn listen(mut self, addr: &str) -> Self {
        self.listen.push(addr.to_owned());
        self
    }

    /// One setting on the command line (`--set KEY=VALUE`).
    pub(crate) fn set(self, key: &str, value: &str) -> Self {
        self.args(["--set".to_owned(), format!("{key}={value}")])
    }

    /// `--set` for each of `settings`.
    pub(crate) fn settings(self, settings: &[(&str, &str)]) -> Self {
        settings
            .iter()
            .fold(self, |builder, (key, value)| builder.set(key, value))
    }

    /// One environment variable.
    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Each of `vars` as an environment variable.
    pub(crate) fn envs(self, vars: &[(&str, &str)]) -> Self {
        vars.iter()
            .fold(self, |builder, (key, value)| builder.env(key, value))
    }

    /// The history store's directory (`CHATROOM_DATA_DIR`), owned by the
    /// caller; without it the store lives in the scratch directory.
    pub(crate) fn data_dir(self, dir: &Path) -> Self {
        self.env("CHATROOM_DATA_DIR", dir)
    }

    /// `RUST_LOG` for the server; without it the server's default filter.
    pub(crate) fn log_filter(mut self, filter: &str) -> Self {
        self.log_filter = Some(filter.to_owned());
        self
    }

    /// How long to wait for the `listening` line, and for an exit.
    pub(crate) fn wait(mut self, limit: Duration) -> Self {
        self.wait = limit;
        self
    }

    /// Echo the server's error lines marked with `label` as they come.
    pub(crate) fn label(mut self, label: &str) -> Self {
        self.label = Some(label.to_owned());
        self
    }

    /// Starts the server and waits until it listens.
    ///
    /// # Panics
    /// When it exits or says nothing in time; the message holds its log.
    pub(crate) fn start(self) -> Server {
        self.try_start()
            .unwrap_or_else(|e| panic!("chatroom-server did not start: {e:?}"))
    }

    /// Starts the server and waits until it listens or exits.
    pub(crate) fn try_start(self) -> Result<Server, NotListening> {
        let scratch = TempDir::new("server");
        self.start_in(scratch)
    }

    /// Starts a server that is expected to fail at start; returns its exit
    /// code and everything it wrote on stderr.
    ///
    /// # Panics
    /// When it starts listening instead, or neither listens nor exits.
    pub(crate) fn expect_exit(self) -> (Option<i32>, String) {
        match self.try_start() {
            Err(NotListening::Exited { code, log }) => (code, log),
            Err(NotListening::Silent { log }) => {
                panic!("the server neither listened nor exited: {log}")
            }
            Ok(server) => panic!(
                "the server started on {}; it should have failed",
                server.addr()
            ),
        }
    }

    fn start_in(self, scratch: TempDir) -> Result<Server, NotListening> {
        let mut child = self
            .command(scratch.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chatroom-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut log = Log::capture(stderr, self.label.clone());
        // One `listening` line per listener; with no `--listen` of the
        // builder's, the arguments name one address.
        let expected = self.listen.len().max(1);
        let mut addrs = Vec::with_capacity(expected);
        let end = Instant::now() + self.wait;
        while addrs.len() < expected {
            match log.next_within(end.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        addrs.push(addr);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("the server's exit status");
                    log.finish();
                    return Err(NotListening::Exited {
                        code: status.code(),
                        log: log.text(),
                    });
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    log.finish();
                    return Err(NotListening::Silent { log: log.text() });
                }
            }
        }
        Ok(Server {
            builder: self,
            child,
            addrs,
            log,
            scratch,
        })
    }

    /// Runs the server with stdout and stderr captured and waits for it to
    /// exit on its own (for `--help`, `--print-config` and start-up errors).
    ///
    /// # Panics
    /// When it has not exited within the wait; it is killed first.
    pub(crate) fn run(self) -> Finished {
        let scratch = TempDir::new("server");
        let mut child = self
            .command(scratch.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chatroom-server");
        let stdout = read_all(child.stdout.take().expect("piped stdout"));
        let stderr = read_all(child.stderr.take().expect("piped stderr"));
        let status = wait_for_exit(&mut child, self.wait);
        Finished {
            code: status.code(),
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        }
    }

    fn command(&self, scratch: &Path) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args)
            .current_dir(scratch)
            .stdin(Stdio::null());
        for addr in &self.listen {
            cmd.args(["--listen", addr]);
        }
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CHATROOM_") {
                cmd.env_remove(name);
            }
        }
        match &self.log_filter {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// A running server, killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    builder: ServerBuilder,
    child: Child,
    addrs: Vec<SocketAddr>,
    log: Log,
    /// The working directory, kept across restarts, removed on drop.
    scratch: TempDir,
}

impl Server {
    /// A server with no arguments yet.
    pub(crate) fn builder() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            listen: Vec::new(),
            env: Vec::new(),
            log_filter: None,
            wait: DEFAULT_WAIT,
            label: None,
        }
    }

    /// Where it listens (the first listener, when there are several).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Where it listens, one address per listener, in its log's order.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its working directory (where the default history store lives).
    pub(crate) fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// The first log line from now on that contains `needle`.
    ///
    /// # Panics
    /// After `limit`; the message holds the whole log.
    pub(crate) fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        self.log.wait_for(needle, limit)
    }

    /// Every log line not consumed yet by [`Server::wait_for_log`].
    pub(crate) fn drain_log(&mut self) -> Vec<String> {
        self.log.drain()
    }

    /// Every log line so far.
    pub(crate) fn log_lines(&self) -> Vec<String> {
        self.log.lines()
    }

    /// Sends the process a signal by name (`TERM`, `INT`, `STOP`, `CONT`).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit.
    ///
    /// # Panics
    /// When it has not exited within the builder's wait; it is killed.
    pub(crate) fn exit_status(&mut self) -> ExitStatus {
        wait_for_exit(&mut self.child, self.builder.wait)
    }

    /// Stops it as an operator would (SIGTERM) and waits for it to exit.
    pub(crate) fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.exit_status()
    }

    /// Kills it (SIGKILL), as a crash would, and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True while the process has not exited.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll child").is_none()
    }

    /// Starts it again (killing it first if it still runs) with the same
    /// settings, working directory and history, listening where it did.
    ///
    /// # Panics
    /// When it does not come up again.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let mut builder = self.builder.clone();
        if !builder.listen.is_empty() {
            builder.listen = self.addrs.iter().map(ToString::to_string).collect();
        }
        let scratch = std::mem::replace(&mut self.scratch, TempDir::new("server-swap"));
        let again = builder
            .start_in(scratch)
            .unwrap_or_else(|e| panic!("chatroom-server did not start again: {e:?}"));
        // The old value's drop only reaps the exited child and removes the
        // placeholder directory.
        *self = again;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address in a `listening addr=...` log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split(LISTENING).nth(1)?;
    let addr = rest.split_whitespace().next().unwrap_or("");
    Some(addr.parse().expect("a socket address after addr="))
}

/// Reads all of `pipe` on a thread of its own.
fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
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
