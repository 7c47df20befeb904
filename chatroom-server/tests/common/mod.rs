//! Running the real `chatroom-server` executable for tests: start it on a
//! free loopback port, read the port from its log, and look at the process
//! from outside (resident memory, open descriptors) through /proc.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The executable under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_chatroom-server");

/// Log filter for servers under load: the `listening` line and warnings,
/// not one line per connection.
const QUIET_LOG: &str = "warn,chatroom_core::server=info,chatroom_core::server::session=warn";

/// A running server, killed when dropped.
pub(crate) struct Server {
    child: Child,
    /// The server's own history directory, removed on drop: runs never
    /// share rooms or ids.
    data_dir: std::path::PathBuf,
    /// Where it listens (127.0.0.1, a free port).
    pub(crate) addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts the binary on `127.0.0.1:0` with `--set KEY=VALUE` for each
    /// of `settings`, and waits for its `listening addr=...` line.
    pub(crate) fn start(settings: &[(&str, &str)]) -> Self {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data_dir =
            std::env::temp_dir().join(format!("chatroom-abuse-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0"])
            .env("CHATROOM_DATA_DIR", &data_dir)
            .env("RUST_LOG", QUIET_LOG)
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
        // The pipe is always drained, so a chatty server never blocks on it.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let mut server = Self {
            child,
            data_dir,
            addr: "0.0.0.0:0".parse().expect("literal"),
            log,
        };
        let line = server.wait_for_log("listening addr=", Duration::from_secs(10));
        server.addr = line
            .split("listening addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("an address after addr=")
            .parse()
            .expect("a socket address");
        server
    }

    /// The first log line from now on that contains `needle`.
    pub(crate) fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?} ({e})"),
            }
        }
    }

    /// Every log line so far that has not been consumed yet.
    pub(crate) fn drain_log(&mut self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub(crate) fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory so far, in KiB (`VmHWM`).
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    /// Open file descriptors now: listeners, sockets, pipes, the runtime's.
    pub(crate) fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }

    /// Waits until the server holds at most `target` descriptors; returns
    /// the count it settled at (which may be above `target` on timeout).
    pub(crate) fn settle_fds(&self, target: usize, limit: Duration) -> usize {
        let end = Instant::now() + limit;
        loop {
            let n = self.open_fds();
            if n <= target || Instant::now() > end {
                return n;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// True while the process has not exited.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll child").is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The soft limit on open files of this process (the server inherits it).
pub(crate) fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// A size from the environment variable `name`, or `default`: heavy cases
/// run CI-sized unless asked for more.
pub(crate) fn size_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}
