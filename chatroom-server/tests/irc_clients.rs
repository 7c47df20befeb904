//! IRC clients that other people wrote, against the real binary: irssi on
//! a terminal (tmux), and the Python `irc` library. Each chats with a
//! person on `nc` (the text dialect) in `#lobby`; irssi also with a
//! program on the native dialect and a web user (the page's WebSocket).
//! The library also logs in with its SASL PLAIN and kicks and bans with
//! its own `KICK` and `MODE`.
//!
//! `.ci/install-test-deps` installs irssi, tmux and the library (in a
//! virtual environment under the target directory) when they are missing;
//! without them a test says `skipped: …` on stderr and passes, as the
//! terminal test of chatroom-client does. Neither client reaches anything
//! but the loopback server: irssi gets a fresh home directory holding only
//! a config with no networks, and connects to the address given.

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::irc_client::irc_addr;
use common::irssi::{self, Irssi};
use common::json_client::JsonClient;
use common::server::Server;
use common::text_client::TextClient;
use common::web_client::WebClient;
use serde_json::json;

/// How long any one wait may take.
const WAIT: Duration = Duration::from_secs(10);

/// Says that a test was skipped, past the test harness's capture.
fn say_skipped(why: &str) {
    let _ = writeln!(std::io::stderr().lock(), "skipped: {why}");
}

/// A server with a chat listener and an IRC listener; returns both
/// addresses.
fn start() -> (Server, SocketAddr, SocketAddr) {
    start_with(&[])
}

/// [`start`], with more settings.
fn start_with(settings: &[(&str, &str)]) -> (Server, SocketAddr, SocketAddr) {
    let mut server = Server::builder()
        .listen("127.0.0.1:0")
        .set("irc_listen", "127.0.0.1:0")
        .set("sniff_ms", "100")
        .settings(settings)
        .start();
    let chat = server.addr();
    let irc = irc_addr(&mut server);
    (server, chat, irc)
}

#[test]
fn irssi_chats_with_nc_native_and_web_users_in_lobby() {
    if let Some(why) = irssi::missing() {
        return say_skipped(why);
    }
    let (_server, chat, irc) = start();
    let (mut nc, nc_nick) = TextClient::greeted(chat, WAIT);
    let irssi = Irssi::connect("irssi", irc, WAIT);
    irssi.join_lobby(WAIT);
    nc.line_with("irssiuser joined #lobby");

    let mut native = JsonClient::hello_in(chat, "native", "lobby", WAIT);
    let mut web = WebClient::connect(chat, WAIT);
    web.send(&json!({"type": "hello", "version": 1, "nick": "webby"}));
    web.send(&json!({"type": "join", "room": "lobby"}));
    web.next_of("members");
    irssi
        .terminal
        .wait_for_row("the web user's join", WAIT, |row| {
            row.contains("webby") && row.contains("has joined #lobby")
        });

    irssi.terminal.type_line("hello from irssi");
    assert_eq!(
        nc.line_with("hello from irssi").trim_end(),
        "<irssiuser> hello from irssi"
    );
    for heard in [native.next_of("message"), web.next_of("message")] {
        assert_eq!(
            (&heard["from"], &heard["text"]),
            (&json!("irssiuser"), &json!("hello from irssi"))
        );
    }
    nc.send("hello from nc");
    irssi.wait_for_line(&nc_nick, "hello from nc", WAIT);
    native.say("lobby", "hello from native");
    web.send(&json!({"type": "say", "room": "lobby", "text": "hello from the web"}));
    irssi.wait_for_line("native", "hello from native", WAIT);
    irssi.wait_for_line("webby", "hello from the web", WAIT);
    // `/me` is a CTCP ACTION, an action line for the others.
    irssi.terminal.type_line("/me waves");
    assert_eq!(nc.line_with("waves").trim_end(), "* irssiuser waves");

    irssi.terminal.type_line("/quit see you");
    assert_eq!(
        nc.line_with("irssiuser").trim_end(),
        "* irssiuser left #lobby (see you)"
    );
}

/// The Python of the virtual environment `.ci/install-test-deps` makes in
/// the target directory, if it is there.
fn venv_python() -> Option<PathBuf> {
    // The test runs from TARGET/debug/deps/.
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?;
    let python = target.join("test-venv").join("bin").join("python");
    python.exists().then_some(python)
}

#[test]
fn the_python_irc_library_joins_says_and_parts() {
    let Some(python) = venv_python() else {
        return say_skipped(
            "the Python irc library is not installed (.ci/install-test-deps installs it)",
        );
    };
    let (_server, chat, irc) = start();
    let (mut nc, _) = TextClient::greeted(chat, WAIT);
    let port = irc.port().to_string();
    let mut script = Script::spawn(
        &python,
        "irc_lib_client.py",
        &["127.0.0.1", &port, "pybot", "#lobby"],
    );
    let mut next = || script.next();
    assert_eq!(next(), "JOINED #lobby");
    assert_eq!(
        nc.line_with("hello from python").trim_end(),
        "<pybot> hello from python"
    );
    nc.send("hi python");
    assert!(next().ends_with(" hi python"));
    nc.send("please part");
    assert!(next().ends_with(" please part"));
    assert_eq!(next(), "PARTED #lobby");
    assert_eq!(nc.line_with("pybot").trim_end(), "* pybot left #lobby");
    script.success();
}

#[test]
fn the_python_irc_library_logs_in_with_sasl_and_kicks_and_bans() {
    let Some(python) = venv_python() else {
        return say_skipped(
            "the Python irc library is not installed (.ci/install-test-deps installs it)",
        );
    };
    let (_server, chat, irc) = start_with(&[("hash_memory_kib", "64"), ("hash_iterations", "1")]);
    let (mut op, _) = TextClient::greeted(chat, WAIT);
    op.send("/nick pyop");
    op.line_with("is now known as pyop");
    op.send("/register pyop-password");
    op.line_with("* you are logged in as pyop");
    op.send("/quit");
    op.expect_closed();

    // The library's own SASL PLAIN logs it in; being first in the empty
    // room makes it the owner.
    let port = irc.port().to_string();
    let mut script = Script::spawn(
        &python,
        "irc_lib_moderator.py",
        &["127.0.0.1", &port, "pyop", "pyop-password", "#hall"],
    );
    assert_eq!(script.next(), "LOGGEDIN pyop");
    assert_eq!(script.next(), "JOINED #hall");
    let (mut nc, nc_nick) = TextClient::greeted(chat, WAIT);
    nc.send("/join hall");
    nc.line_with("* in #hall: ");
    nc.send("kick me");
    assert_eq!(script.next(), format!("KICK {nc_nick} as asked"));
    nc.line_with(&format!("* pyop kicked {nc_nick} from #hall (as asked)"));
    nc.send("/join hall");
    nc.line_with("* in #hall: ");
    nc.send("ban somebody");
    assert_eq!(script.next(), "MODE +b somebody!*@*");
    nc.line_with("* pyop banned nick:somebody from #hall");
    nc.send("done");
    script.success();
}

/// A Python client of tests/clients/ run with the venv's Python, its
/// output read line by line with a deadline.
struct Script {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
}

impl Script {
    fn spawn(python: &std::path::Path, name: &str, args: &[&str]) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients")
            .join(name);
        let mut child = KillOnDrop(
            Command::new(python)
                .arg(script)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the python client"),
        );
        let (tx, lines) = mpsc::channel();
        let stdout = child.0.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line the client printed.
    fn next(&mut self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("the python client said nothing more")
    }

    /// Waits for the client to end, which must be a success.
    fn success(mut self) {
        let status = self.child.0.wait().expect("the python client ends");
        assert!(status.success(), "{status}");
    }
}

/// A child process killed if the test ends before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
