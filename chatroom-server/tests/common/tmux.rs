//! A program on a real terminal: a tmux server on a socket of its own runs
//! it detached; the test types with `send-keys` and reads the screen with
//! `capture-pane`, polling against a deadline. The tmux server is killed
//! when the guard drops, so a failing test leaves nothing behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `program --version`-style probing finds `program` on the path.
pub(crate) fn installed(program: &str, probe: &str) -> bool {
    Command::new(program)
        .arg(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A detached tmux session, `main`, running one command.
#[derive(Debug)]
pub(crate) struct Terminal {
    socket: String,
    /// The socket file, which tmux leaves behind; removed on drop.
    socket_path: Option<std::path::PathBuf>,
}

impl Terminal {
    /// Starts `argv` in a 120x30 pane on the tmux socket `socket` (unique
    /// per test). The pane stays after the program exits, so its last
    /// words are still there for a failure message.
    pub(crate) fn start(socket: &str, argv: &[&str]) -> Self {
        // The guard exists before tmux runs, so a half-started server is
        // killed too.
        let mut terminal = Self {
            socket: format!("{socket}-{}", std::process::id()),
            socket_path: None,
        };
        let command: Vec<String> = argv
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let status = terminal
            .tmux()
            .args(["-f", "/dev/null", "start-server", ";"])
            .args(["set-option", "-g", "remain-on-exit", "on", ";"])
            .args(["new-session", "-d", "-s", "main", "-x", "120", "-y", "30"])
            .arg(command.join(" "))
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed: {status}");
        let path = terminal
            .tmux()
            .args(["display-message", "-p", "#{socket_path}"])
            .output()
            .expect("run tmux");
        let path = String::from_utf8_lossy(&path.stdout).trim().to_owned();
        terminal.socket_path = (!path.is_empty()).then(|| path.into());
        terminal
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command
            .args(["-L", &self.socket])
            .env_remove("TMUX")
            .stdin(Stdio::null());
        command
    }

    /// Types `text` and presses Enter.
    pub(crate) fn type_line(&self, text: &str) {
        let typed = self
            .tmux()
            .args(["send-keys", "-t", "main", "-l", text])
            .status()
            .is_ok_and(|s| s.success());
        let entered = self
            .tmux()
            .args(["send-keys", "-t", "main", "Enter"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(typed && entered, "tmux send-keys failed");
    }

    /// The visible screen, rows joined by newlines.
    pub(crate) fn screen(&self) -> String {
        let output = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "main"])
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls the screen until one row satisfies `wanted`; returns that
    /// row. Fails with the screen after `wait`.
    pub(crate) fn wait_for_row(
        &self,
        what: &str,
        wait: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let screen = self.screen();
            if let Some(row) = screen.lines().find(|row| wanted(row)) {
                return row.trim_end().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self
            .tmux()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}
