//! The interactive `chatroom-client` on a real terminal: tmux runs it in a
//! detached session against an in-process engine on 127.0.0.1, the test
//! types with `send-keys` and reads the screen with `capture-pane`.
//!
//! What it guards: a line arriving while the user is half-way through
//! typing prints above the input line and leaves what was typed intact,
//! with the cursor where typing continues; and a user who fell behind in a
//! room sees the notice and then every message it missed, once.
//!
//! Another case puts the client beside irssi, a real IRC client, on an
//! engine that also serves IRC: each shows the other's lines.
//!
//! Without tmux the test says "skipped: tmux not installed" on stderr
//! (past the test harness's capture, so the skip shows in `cargo test`'s
//! output) and returns. `.ci/run` installs tmux when it is missing.
//!
//! Screens are polled against a deadline, never read after a fixed sleep,
//! and the whole test runs under a timeout. The tmux server and the engine
//! are stopped by guards, so a failing assertion leaves neither behind.

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use chatroom_core::client::{Client, ClientOptions, Event, Events};
use chatroom_core::protocol::{ErrorCode, Nickname, RoomName};
use chatroom_core::server::{HistoryKind, ServerConfig};
use chatroom_core::testing::{Peer, TestServer};
use tokio::process::Command;
use tokio::time::Instant;

/// The whole test.
const LIMIT: Duration = Duration::from_secs(60);
/// One wait for the screen to show something.
const SCREEN_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

const WIDTH: usize = 100;
const HEIGHT: usize = 20;

async fn within<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test timed out")
}

fn tmux_installed() -> bool {
    installed("tmux", "-V")
}

/// Whether `program flag` runs and succeeds.
fn installed(program: &str, flag: &str) -> bool {
    StdCommand::new(program)
        .arg(flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Says that the test was skipped, on the real stderr: `eprintln!` would
/// be captured by the test harness and hidden when the test passes.
fn say_skipped(why: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "skipped: {why}");
}

/// Quotes `s` for `sh -c`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A tmux server on its own socket holding one detached session, `chat`,
/// that runs a command in a `WIDTH` x `HEIGHT` pane. Killed when dropped.
struct Tmux {
    socket: String,
    /// The socket file, which tmux leaves behind; removed on drop.
    socket_path: Option<PathBuf>,
}

impl Tmux {
    /// Starts `program args…` in a new session on the socket `socket`.
    fn start(socket: String, program: &str, args: &[&str]) -> Self {
        let mut command = vec![shell_quote(program)];
        command.extend(args.iter().map(|a| shell_quote(a)));
        let command = command.join(" ");
        let (width, height) = (WIDTH.to_string(), HEIGHT.to_string());
        // The guard exists before tmux runs, so a half-started server is
        // killed too.
        let mut tmux = Self {
            socket,
            socket_path: None,
        };
        let status = StdCommand::new("tmux")
            .args(["-L", &tmux.socket, "-f", "/dev/null"])
            // A dead pane stays, so a client that exits early leaves its
            // last words on screen for the failure message.
            .args([
                "start-server",
                ";",
                "set-option",
                "-g",
                "remain-on-exit",
                "on",
                ";",
            ])
            .args(["new-session", "-d", "-s", "chat"])
            .args(["-x", &width, "-y", &height, &command])
            .env_remove("TMUX")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed: {status}");
        let path = StdCommand::new("tmux")
            .args([
                "-L",
                &tmux.socket,
                "display-message",
                "-p",
                "#{socket_path}",
            ])
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        let path = String::from_utf8_lossy(&path.stdout).trim().to_owned();
        tmux.socket_path = (!path.is_empty()).then(|| PathBuf::from(path));
        tmux
    }

    async fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run tmux");
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("tmux prints UTF-8")
    }

    /// The visible screen, one string per row, trailing blanks trimmed
    /// (colours are not captured).
    async fn screen(&self) -> Vec<String> {
        let text = self.tmux(&["capture-pane", "-p", "-t", "chat"]).await;
        text.lines().map(|l| l.trim_end().to_owned()).collect()
    }

    /// The scrollback and the screen, for failure messages.
    async fn everything(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-S", "-", "-t", "chat"])
            .await
    }

    /// The cursor's column and row on the screen, from 0.
    async fn cursor(&self) -> (usize, usize) {
        let text = self
            .tmux(&[
                "display-message",
                "-p",
                "-t",
                "chat",
                "#{cursor_x} #{cursor_y}",
            ])
            .await;
        let mut parts = text
            .split_whitespace()
            .map(|n| n.parse().expect("a number"));
        (parts.next().expect("x"), parts.next().expect("y"))
    }

    /// Types `text` as is, without Enter.
    async fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "chat", "-l", text]).await;
    }

    async fn press_enter(&self) {
        self.tmux(&["send-keys", "-t", "chat", "Enter"]).await;
    }

    /// Polls the screen until `done` holds for it; returns that screen.
    async fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let screen = self.screen().await;
            if done(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the screen never showed {what}; it holds (with scrollback):\n{}",
                    self.everything().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = StdCommand::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A tmux socket name no other test or run uses.
fn unique_socket(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("chatroom-{test}-{}-{nanos}", std::process::id())
}

fn nick(s: &str) -> Nickname {
    Nickname::new(s).unwrap()
}

fn lobby() -> RoomName {
    RoomName::new("lobby").unwrap()
}

/// The last row that is not blank, and its index.
fn last_row(screen: &[String]) -> (usize, &str) {
    screen
        .iter()
        .enumerate()
        .rev()
        .find(|(_, row)| !row.is_empty())
        .map(|(i, row)| (i, row.as_str()))
        .unwrap_or((0, ""))
}

fn row_of(screen: &[String], row: &str) -> Option<usize> {
    screen.iter().position(|r| r == row)
}

/// Says `text`, again while the server says it comes too fast.
async fn say(client: &Client, text: &str) {
    loop {
        match client.say(&lobby(), text).await {
            Err(e) if e.code() == Some(ErrorCode::RateLimited) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("say {text:?}: {e}"),
            Ok(_) => return,
        }
    }
}

/// The next message event's sender and text.
async fn next_message(events: &mut Events) -> (Nickname, String) {
    loop {
        match events.next().await.expect("events ended") {
            Event::Message { from, text, .. } => return (from, text),
            _ => continue,
        }
    }
}

/// Asserts that the input row is the last one on screen, reads
/// `prompt_line`, holds it exactly once, and has the cursor at its end.
async fn assert_input_intact(tmux: &Tmux, screen: &[String], prompt_line: &str) -> usize {
    let (row, last) = last_row(screen);
    assert_eq!(
        last,
        prompt_line,
        "the input row is last and intact; screen:\n{}",
        screen.join("\n")
    );
    let typed = prompt_line.trim_start_matches("#lobby> ");
    let copies = screen.iter().filter(|r| r.contains(typed)).count();
    assert_eq!(
        copies,
        1,
        "what is typed shows once; screen:\n{}",
        screen.join("\n")
    );
    assert_eq!(
        tmux.cursor().await,
        (prompt_line.len(), row),
        "the cursor sits after what is typed; screen:\n{}",
        screen.join("\n")
    );
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_lines_print_above_a_half_typed_line_and_leave_it_intact() {
    if !tmux_installed() {
        say_skipped("tmux not installed");
        return;
    }
    within(async {
        let server = TestServer::start().await;
        let addr = server.addr.to_string();
        let tmux = Tmux::start(
            unique_socket("half-typed"),
            env!("CARGO_BIN_EXE_chatroom-client"),
            &["--server", &addr, "--nick", "typist"],
        );

        tmux.wait_for("the join and the prompt", |s| {
            row_of(s, "* in #lobby: typist").is_some() && last_row(s).1 == "#lobby>"
        })
        .await;

        tmux.type_text("half typed").await;
        let screen = tmux
            .wait_for("the half-typed line", |s| {
                last_row(s).1 == "#lobby> half typed"
            })
            .await;
        assert_input_intact(&tmux, &screen, "#lobby> half typed").await;

        // Someone else talks while the line is half typed.
        let options = ClientOptions::new().with_nick(nick("other"));
        let (other, mut other_events) = Client::connect(addr.clone(), options)
            .await
            .expect("connect");
        other.join(&lobby()).await.expect("join");
        say(&other, "hello from other").await;

        let screen = tmux
            .wait_for("the incoming line", |s| {
                row_of(s, "<other> hello from other").is_some()
            })
            .await;
        let joined = row_of(&screen, "* other joined #lobby").expect("a joined line");
        let said = row_of(&screen, "<other> hello from other").unwrap();
        let input = assert_input_intact(&tmux, &screen, "#lobby> half typed").await;
        assert!(
            joined < said && said < input,
            "presence, then the message, then the input row; screen:\n{}",
            screen.join("\n")
        );

        // A burst that scrolls the screen keeps the input row too, and the
        // lines keep their order.
        let burst: Vec<String> = (1..=HEIGHT + 5)
            .map(|i| format!("burst line {i}"))
            .collect();
        for line in &burst {
            say(&other, line).await;
        }
        let last = format!("<other> {}", burst.last().unwrap());
        let screen = tmux
            .wait_for("the end of the burst", |s| row_of(s, &last).is_some())
            .await;
        let input = assert_input_intact(&tmux, &screen, "#lobby> half typed").await;
        assert_eq!(
            input,
            HEIGHT - 1,
            "the screen scrolled; the input is at the bottom"
        );
        let shown: Vec<&String> = screen[..input].iter().collect();
        let expected: Vec<String> = burst[burst.len() - input..]
            .iter()
            .map(|l| format!("<other> {l}"))
            .collect();
        assert_eq!(
            shown,
            expected.iter().collect::<Vec<_>>(),
            "every row above the input is a burst line, in order"
        );

        // Finishing the line sends all of it, once.
        tmux.type_text(" rest").await;
        tmux.press_enter().await;
        assert_eq!(
            next_message(&mut other_events).await,
            (nick("typist"), "half typed rest".to_owned())
        );
        let screen = tmux
            .wait_for("the own line", |s| {
                row_of(s, "<You> half typed rest").is_some()
            })
            .await;
        let (row, last) = last_row(&screen);
        assert_eq!(last, "#lobby>", "an empty input row after Enter");
        assert_eq!(row_of(&screen, "<You> half typed rest"), Some(row - 1));
        assert_eq!(tmux.cursor().await, ("#lobby> ".len(), row));

        // Nothing else arrived at the other end: no partial line was sent.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Some(event) = other_events.try_next() {
            assert!(
                !matches!(event, Event::Message { .. }),
                "only the one line was sent: {event:?}"
            );
        }

        // `/quit` ends the client. Whether tmux then reports the pane dead
        // depends on how it was started (it may not reap the process when
        // the test harness's signal setup is inherited), so the process
        // itself is watched: gone, or exited and waiting to be reaped.
        let pid = tmux.tmux(&["display-message", "-p", "#{pane_pid}"]).await;
        let pid = pid.trim().to_owned();
        tmux.type_text("/quit").await;
        tmux.press_enter().await;
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            if stat.is_empty() || state == Some("Z") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the client did not exit after /quit; the screen holds:\n{}",
                tmux.everything().await
            );
            tokio::time::sleep(POLL).await;
        }
        let _ = other.quit(None).await;
        drop(tmux);
        drop(server);
    })
    .await;
}

/// Publishers in the lag test: more than the terminal's queue holds.
const PUBLISHERS: usize = 12;
/// The terminal session's queue, in frames: room traffic beyond it is held
/// back and caught up.
const SMALL_QUEUE: usize = 8;

/// The engine and the test share one thread here, so the publishers'
/// sessions all run before the terminal session's writer does: the
/// terminal's queue overflows every time, not when scheduling happens to
/// allow it.
#[tokio::test(flavor = "current_thread")]
async fn a_user_who_fell_behind_sees_the_notice_then_each_missed_line_once() {
    if !tmux_installed() {
        say_skipped("tmux not installed");
        return;
    }
    within(async {
        let mut config = ServerConfig::default();
        config.history.store = HistoryKind::Memory;
        config.limits.outbox_frames = SMALL_QUEUE;
        config.limits.max_connections_per_ip = 100;
        config.limits.connect_burst_per_ip = 100;
        let server = TestServer::with_config(config).await;
        let addr = server.addr.to_string();
        let tmux = Tmux::start(
            unique_socket("fell-behind"),
            env!("CARGO_BIN_EXE_chatroom-client"),
            &["--server", &addr, "--nick", "reader"],
        );
        tmux.wait_for("the join and the prompt", |s| {
            row_of(s, "* in #lobby: reader").is_some() && last_row(s).1 == "#lobby>"
        })
        .await;

        // Text clients, like `nc`: a line they type is not answered, so
        // their own queues hold only what the room says.
        let mut publishers = Vec::new();
        for _ in 0..PUBLISHERS {
            publishers.push(Peer::text(server.addr).await);
        }
        let last_join = format!("* {} joined #lobby", publishers[PUBLISHERS - 1].nick());
        tmux.wait_for("every publisher's join", |s| {
            row_of(s, &last_join).is_some()
        })
        .await;

        // One line each, all written before the engine runs again.
        let lines: Vec<String> = publishers
            .iter()
            .map(|p| format!("line from {}", p.nick()))
            .collect();
        for (publisher, line) in publishers.iter_mut().zip(&lines) {
            publisher.send(line).await;
        }
        tmux.wait_for("the last line", |s| {
            s.iter()
                .any(|r| r.ends_with(lines[PUBLISHERS - 1].as_str()))
        })
        .await;
        // Catch-up lines may still be on their way when the last one shows
        // (they come in id order, but the screen is read, not the socket):
        // wait until the scrollback holds every line.
        let deadline = Instant::now() + SCREEN_WAIT;
        let all = loop {
            let all = tmux.everything().await;
            let rows: Vec<&str> = all.lines().map(str::trim_end).collect();
            if lines
                .iter()
                .all(|l| rows.iter().any(|r| r.ends_with(l.as_str())))
                || Instant::now() >= deadline
            {
                break all;
            }
            tokio::time::sleep(POLL).await;
        };
        let rows: Vec<&str> = all.lines().map(str::trim_end).collect();
        let is_line = |r: &str| lines.iter().any(|l| r.ends_with(l.as_str()));
        for line in &lines {
            let shown = rows.iter().filter(|r| r.ends_with(line.as_str())).count();
            assert_eq!(shown, 1, "{line:?} shows once; the terminal holds:\n{all}");
        }
        let notice = rows
            .iter()
            .position(|r| r.starts_with("* you fell behind in #lobby"))
            .unwrap_or_else(|| panic!("no notice; the terminal holds:\n{all}"));
        let before = rows[..notice].iter().filter(|r| is_line(r)).count();
        let after = rows[notice + 1..].iter().filter(|r| is_line(r)).count();
        assert!(
            before >= 1 && after >= PUBLISHERS - SMALL_QUEUE,
            "what the queue held comes first, then the notice, then the rest:\n{all}"
        );
        assert!(!all.contains("too slow"), "nobody was disconnected:\n{all}");
        drop(publishers);
        drop(tmux);
        drop(server);
    })
    .await;
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The client and irssi (a real IRC client, `.ci/install-test-deps`
/// installs it) side by side on terminals, against one engine serving the
/// chat port and an IRC listener: each shows what the other says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_and_irssi_chat_in_lobby() {
    use chatroom_core::server::Server;
    use chatroom_core::transport::TcpListener;
    use tokio_util::sync::CancellationToken;

    if !tmux_installed() || !installed("irssi", "--version") {
        say_skipped("tmux or irssi not installed");
        return;
    }
    within(async {
        let chat = TcpListener::bind("127.0.0.1:0".to_owned())
            .await
            .expect("bind");
        let irc = TcpListener::bind("127.0.0.1:0".to_owned())
            .await
            .expect("bind");
        let (chat_addr, irc_port) = (
            chat.local_socket_addr().to_string(),
            irc.local_socket_addr().port().to_string(),
        );
        let server = Server::new(ServerConfig::default()).expect("the default config is valid");
        let stop = CancellationToken::new();
        let engine = tokio::spawn(server.run_with_irc(
            vec![chat],
            vec![irc],
            stop.clone().cancelled_owned(),
        ));

        // irssi gets a home of its own with no networks in its config, so
        // it touches no ~/.irssi and reaches only this engine.
        let home = Scratch(std::env::temp_dir().join(unique_socket("irssi-home")));
        std::fs::create_dir_all(&home.0).expect("irssi's home");
        std::fs::write(
            home.0.join("config"),
            "settings = { core = { nick = \"ircfan\"; settings_autosave = \"no\"; }; };\n",
        )
        .expect("irssi's config");
        let home_arg = format!("--home={}", home.0.display());
        let irssi = Tmux::start(
            unique_socket("irssi"),
            "irssi",
            &[
                &home_arg,
                "-c",
                "127.0.0.1",
                "-p",
                &irc_port,
                "-n",
                "ircfan",
            ],
        );
        irssi
            .wait_for("irssi's welcome", |s| {
                s.iter().any(|r| r.contains("Welcome to the chatroom chat"))
            })
            .await;
        let client = Tmux::start(
            unique_socket("beside-irssi"),
            env!("CARGO_BIN_EXE_chatroom-client"),
            &["--server", &chat_addr, "--nick", "typist"],
        );
        // Each line is typed on one terminal and awaited on the other.
        client
            .wait_for("the prompt", |s| row_of(s, "* in #lobby: typist").is_some())
            .await;
        let steps = [
            (&irssi, "/join #lobby", &client, "* ircfan joined #lobby"),
            (
                &irssi,
                "hello from irssi",
                &client,
                "<ircfan> hello from irssi",
            ),
            (
                &client,
                "hello from the client",
                &irssi,
                "< typist> hello from the client",
            ),
        ];
        for (typed_on, line, shown_on, shown) in steps {
            typed_on.type_text(line).await;
            typed_on.press_enter().await;
            shown_on
                .wait_for(shown, |s| s.iter().any(|r| r.contains(shown)))
                .await;
        }

        stop.cancel();
        engine
            .await
            .expect("the engine task")
            .expect("the engine stops cleanly");
    })
    .await;
}
