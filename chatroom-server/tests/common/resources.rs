//! A running server seen from outside through /proc: resident memory and
//! open descriptors; and the sizes heavy cases run at.

use std::thread;
use std::time::{Duration, Instant};

use super::server::Server;

impl Server {
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
