//! irssi, a real IRC client, on a terminal (see [`super::tmux`]): started
//! with a fresh home directory that holds only a config with no networks,
//! connected to the one loopback address given, as `irssiuser`.

use std::net::SocketAddr;
use std::time::Duration;

use super::temp::TempDir;
use super::tmux::{Terminal, installed};

/// The nick irssi registers with.
pub(crate) const NICK: &str = "irssiuser";

/// irssi's config: who it is, no networks and no servers of its own, and
/// nothing written back.
const CONFIG: &str = r#"settings = {
  core = {
    real_name = "Irssi Tester";
    user_name = "irssiuser";
    nick = "irssiuser";
    settings_autosave = "no";
  };
  "fe-common/core" = { autolog = "no"; };
};
"#;

/// irssi on its terminal, and its home directory (removed on drop, after
/// the terminal).
#[derive(Debug)]
pub(crate) struct Irssi {
    pub(crate) terminal: Terminal,
    _home: TempDir,
}

/// Why irssi cannot run here, if it cannot.
pub(crate) fn missing() -> Option<&'static str> {
    (!installed("tmux", "-V") || !installed("irssi", "--version"))
        .then_some("irssi or tmux is not installed (.ci/install-test-deps installs them)")
}

impl Irssi {
    /// Starts irssi against the IRC listener `irc` (tmux socket named
    /// after `test`) and waits for the server's welcome.
    pub(crate) fn connect(test: &str, irc: SocketAddr, wait: Duration) -> Self {
        let home = TempDir::new("irssi");
        home.write("config", CONFIG);
        let home_arg = format!("--home={}", home.path().display());
        let port = irc.port().to_string();
        let terminal = Terminal::start(
            &format!("chatroom-{test}"),
            &[
                "irssi",
                &home_arg,
                "-c",
                "127.0.0.1",
                "-p",
                &port,
                "-n",
                NICK,
            ],
        );
        terminal.wait_for_row("the welcome", wait, |row| {
            row.contains("Welcome to the chatroom chat")
        });
        Self {
            terminal,
            _home: home,
        }
    }

    /// Types `/join #lobby` and waits until irssi shows its own join.
    pub(crate) fn join_lobby(&self, wait: Duration) {
        self.terminal.type_line("/join #lobby");
        self.terminal.wait_for_row("the join", wait, |row| {
            row.contains(NICK) && row.contains("has joined #lobby")
        });
    }

    /// Waits until irssi shows `text` said by `nick` (`< nick> text`).
    pub(crate) fn wait_for_line(&self, nick: &str, text: &str, wait: Duration) {
        let row = self
            .terminal
            .wait_for_row(text, wait, |row| row.contains(text));
        assert!(row.contains(&format!("< {nick}> {text}")), "{row}");
    }
}
