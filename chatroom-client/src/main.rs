//! `chatroom-client`: a terminal client for chatroom servers.
//!
//! ```text
//! chatroom-client                        # 127.0.0.1:7878, room #lobby
//! chatroom-client HOST PORT              # the seed's form
//! chatroom-client --server HOST:PORT --nick alice --room rust
//! chatroom-client --server A:7878,B:7878 --reconnect   # nodes of a cluster
//! chatroom-client --discover             # servers on the LAN: list, choose
//! ```
//!
//! With a terminal on stdin and stdout it runs a line editor: incoming lines
//! print above the line being typed. Otherwise it reads lines from stdin,
//! prints every event as one plain line, and at the end of input waits
//! for every request to be answered, then quits.
//!
//! Exit codes: 0 after `/quit` or the end of input; 1 when the server
//! cannot be reached or refuses the connection (a taken nick); 2 for bad
//! arguments; 3 when the server ends the connection or it is lost.
//!
//! Everything here is argument parsing and presentation; the protocol work
//! is `chatroom_core::client`.

mod discover;
mod render;

use std::error::Error;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use chatroom_core::client::{Client, ClientError, ClientOptions, Event, Events, Reconnect};
use chatroom_core::protocol::text::{self, TextInput};
use chatroom_core::protocol::{ClientMessage, ErrorCode, Nickname, RoomName};
use chatroom_core::transport::{TlsConnector, tls};
use clap::Parser;
use rustyline_async::{Readline, ReadlineEvent, SharedWriter};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};

use render::Style;

const DEFAULT_SERVER: &str = "127.0.0.1:7878";
const DEFAULT_PORT: u16 = 7878;

/// How long to keep printing events after our own `quit` was answered.
const DRAIN_AFTER_QUIT: Duration = Duration::from_secs(2);

/// A rate-limited request is retried after this long, this many times.
const RATE_LIMIT_PAUSE: Duration = Duration::from_millis(250);
const RATE_LIMIT_RETRIES: u32 = 40;

const EXIT_CONNECT: u8 = 1;
const EXIT_DISCONNECTED: u8 = 3;

const HELP: &[&str] = &[
    "* commands:",
    "*   /join ROOM        switch to ROOM (created if needed)",
    "*   /leave [ROOM]     leave the current room, or ROOM",
    "*   /nick NAME        change your nickname",
    "*   /rooms            list rooms",
    "*   /who [ROOM]       list who is in a room",
    "*   /msg NICK TEXT    send a private message",
    "*   /me ACTION        say an action",
    "*   /quit [REASON]    disconnect",
    "*   /help             this list",
    "*   anything else is said to your current room (//text says /text)",
];

/// A terminal client for chatroom servers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Server host (with PORT, the seed client's form).
    #[arg(conflicts_with = "server")]
    host: Option<String>,
    /// Server port.
    #[arg(requires = "host")]
    port: Option<u16>,
    /// Server address as HOST:PORT [default: 127.0.0.1:7878]. Repeat, or
    /// separate with commas, to name several nodes of a cluster: the client
    /// connects to the first that answers and, reconnecting, tries each in
    /// turn.
    #[arg(long, short, value_delimiter = ',')]
    server: Vec<String>,
    /// Nickname to ask for; the server picks one when absent.
    #[arg(long, short, value_parser = parse_nick)]
    nick: Option<Nickname>,
    /// Room to join on start.
    #[arg(long, short, default_value = "lobby", value_parser = parse_room)]
    room: RoomName,
    /// Reconnect with backoff when the connection ends, rejoining rooms and
    /// showing every message missed meanwhile once. On by default when
    /// stdin and stdout are a terminal; off for scripts unless given.
    #[arg(long, conflicts_with = "no_reconnect")]
    reconnect: bool,
    /// Never reconnect: end when the connection ends.
    #[arg(long)]
    no_reconnect: bool,
    /// Connect with TLS, checking the server's certificate against the
    /// system's roots (and --tls-ca).
    #[arg(long)]
    tls: bool,
    /// PEM file of a private CA to trust as well (implies --tls).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Never colour output, even on a terminal (NO_COLOR does the same).
    #[arg(long)]
    no_color: bool,
    /// Find servers on the LAN (multicast DNS, `_chatroom._tcp`), list
    /// them and connect to the one chosen: a number typed at the prompt on
    /// a terminal, --pick N, or else the first.
    #[arg(long, conflicts_with_all = ["server", "host"])]
    discover: bool,
    /// With --discover: connect to server N of the list without asking.
    #[arg(long, value_name = "N", requires = "discover")]
    pick: Option<usize>,
    /// With --discover: how long to listen for servers, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 2.0,
        requires = "discover"
    )]
    discover_secs: f64,
    /// With --discover: look on this machine only (loopback).
    #[arg(long, requires = "discover")]
    discover_loopback: bool,
    /// With --discover: the multicast DNS port; 5353 unless the servers
    /// were set to another with `discovery_port`.
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 5353,
        requires = "discover"
    )]
    discover_port: u16,
}

fn parse_nick(s: &str) -> Result<Nickname, String> {
    Nickname::new(s).map_err(|e| e.to_string())
}

fn parse_room(s: &str) -> Result<RoomName, String> {
    RoomName::parse_typed(s).map_err(|e| e.to_string())
}

impl Args {
    /// The server addresses, in the order to try them; never empty.
    fn addrs(&self) -> Vec<String> {
        let servers: Vec<String> = self
            .server
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !servers.is_empty() {
            return servers;
        }
        let addr = match &self.host {
            Some(host) => {
                let port = self.port.unwrap_or(DEFAULT_PORT);
                if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            }
            None => DEFAULT_SERVER.to_owned(),
        };
        vec![addr]
    }
}

/// An error and its causes on one line, each said once. The OS's
/// "(os error N)" suffix is left out.
fn describe(err: &dyn Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    let parts: Vec<String> = parts
        .into_iter()
        .map(|p| match p.rfind(" (os error ") {
            Some(i) if p.ends_with(')') => p[..i].to_owned(),
            _ => p,
        })
        .collect();
    render::clean(&parts.join(": "))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {}", describe(&e));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(args));
    // Reading stdin parks a blocking thread in read(2) that no one can
    // wake; waiting for it would keep the process alive after the
    // connection ended, until the user pressed Enter.
    runtime.shutdown_background();
    ExitCode::from(code)
}

async fn run(mut args: Args) -> u8 {
    if args.discover {
        let how = discover::Discover {
            wait: Duration::try_from_secs_f64(args.discover_secs).unwrap_or(Duration::from_secs(2)),
            mdns_port: args.discover_port,
            loopback: args.discover_loopback,
            pick: args.pick,
        };
        match discover::choose(how).await {
            Ok(chosen) => {
                args.server = vec![chosen.addr.to_string()];
                args.tls |= chosen.tls;
            }
            Err((line, code)) => {
                eprintln!("error: {line}");
                return code;
            }
        }
    }
    let addrs = args.addrs();
    let addr = addrs.join(", ");
    let mut options = ClientOptions::new();
    if let Some(nick) = args.nick.clone() {
        options = options.with_nick(nick);
    }
    let on_a_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if args.reconnect || (on_a_terminal && !args.no_reconnect) {
        options = options.with_reconnect(Reconnect::new());
    }
    let connected = if args.tls || args.tls_ca.is_some() {
        let connectors = tls::client_config(args.tls_ca.as_deref()).and_then(|config| {
            addrs
                .iter()
                .map(|addr| TlsConnector::new(addr.clone(), config.clone()))
                .collect::<Result<Vec<_>, _>>()
        });
        match connectors {
            Ok(connectors) => Client::connect_with_any(connectors, options).await,
            Err(e) => {
                eprintln!("error: {}", render::clean(&e.to_string()));
                return 2;
            }
        }
    } else {
        Client::connect_any(addrs, options).await
    };
    let (client, events) = match connected {
        Ok(connected) => connected,
        Err(e) => {
            let message = match &e {
                ClientError::Server {
                    code: ErrorCode::NickTaken,
                    message,
                } => format!("{}; pick another with --nick", render::clean(message)),
                ClientError::Transport(_) => describe(&e),
                _ => format!("cannot connect to {addr}: {}", describe(&e)),
            };
            eprintln!("error: {message}");
            return EXIT_CONNECT;
        }
    };
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let color = std::io::stdout().is_terminal()
        && !args.no_color
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let input = if interactive {
        match Readline::new("> ".to_owned()) {
            Ok((mut editor, writer)) => {
                editor.should_print_line_on(false, false);
                Some((Input::Editor(Box::new(editor)), Out::Editor(writer)))
            }
            Err(e) => {
                eprintln!("error: cannot start the line editor: {}", describe(&e));
                None
            }
        }
    } else {
        None
    };
    let (input, out) = input.unwrap_or_else(|| {
        let lines = BufReader::new(tokio::io::stdin()).lines();
        (Input::Plain(lines), Out::Plain)
    });
    let mut ui = Ui {
        client,
        current: None,
        out,
        style: Style { color },
        interactive,
    };
    ui.run(events, input, args.room).await
}

/// Where lines come from.
enum Input {
    /// Lines from a pipe or file.
    Plain(Lines<BufReader<Stdin>>),
    /// A line editor on a terminal.
    Editor(Box<Readline>),
}

enum Typed {
    Line(String),
    End,
}

impl Input {
    /// The next line.
    ///
    /// # Cancel safety
    /// Both sources keep a partly read line when the future is dropped.
    async fn next(&mut self) -> Typed {
        match self {
            Self::Plain(lines) => match lines.next_line().await {
                Ok(Some(line)) => Typed::Line(line),
                Ok(None) | Err(_) => Typed::End,
            },
            Self::Editor(editor) => match editor.readline().await {
                Ok(ReadlineEvent::Line(line)) => {
                    if !line.trim().is_empty() {
                        editor.add_history_entry(line.clone());
                    }
                    Typed::Line(line)
                }
                Ok(ReadlineEvent::Eof | ReadlineEvent::Interrupted) | Err(_) => Typed::End,
            },
        }
    }

    fn set_prompt(&mut self, room: Option<&RoomName>) {
        if let Self::Editor(editor) = self {
            let prompt = match room {
                Some(r) => format!("{}> ", render::room(r)),
                None => "> ".to_owned(),
            };
            let _ = editor.update_prompt(&prompt);
        }
    }

    /// Writes out what the editor still holds and restores the terminal.
    fn finish(self) {
        if let Self::Editor(mut editor) = self {
            let _ = editor.flush();
        }
    }
}

/// Where lines go.
enum Out {
    Plain,
    /// Above the line being edited.
    Editor(SharedWriter),
}

impl Out {
    fn line(&mut self, line: &str) {
        match self {
            Self::Plain => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
            Self::Editor(writer) => {
                let _ = writeln!(writer, "{line}");
            }
        }
    }
}

/// What the loop does after a line.
enum Flow {
    Continue,
    Quit(Option<String>),
}

struct Ui {
    client: Client,
    /// Where plain lines are said.
    current: Option<RoomName>,
    out: Out,
    style: Style,
    interactive: bool,
}

impl Ui {
    async fn run(&mut self, mut events: Events, mut input: Input, room: RoomName) -> u8 {
        self.switch(room).await;
        input.set_prompt(self.current.as_ref());
        let mut last_disconnect = None;
        let code = loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(event) => {
                        if let Event::Disconnected { reason } = &event {
                            last_disconnect = Some(reason.clone());
                        }
                        self.print_event(&event);
                    }
                    // The connection ended for good; the reason was printed.
                    None => break EXIT_DISCONNECTED,
                },
                typed = input.next() => {
                    let reason = match typed {
                        Typed::Line(line) => match self.handle_line(&line).await {
                            Flow::Continue => {
                                input.set_prompt(self.current.as_ref());
                                continue;
                            }
                            Flow::Quit(reason) => reason,
                        },
                        Typed::End => None,
                    };
                    // Every request so far was answered (each line waits for
                    // its reply), so quitting now loses nothing. A failed
                    // quit means the connection is already gone, which is
                    // where quitting leads anyway.
                    let _ = self.client.quit(reason.as_deref()).await;
                    self.drain(&mut events).await;
                    break 0;
                }
            }
        };
        input.finish();
        if code != 0 && !self.interactive {
            // A pipe's reader sees the reason on stdout; say it on stderr too,
            // where scripts look for failures.
            if let Some(reason) = last_disconnect {
                eprintln!("error: {}", render::disconnect(&reason));
            }
        }
        code
    }

    /// Prints what is still queued after our `quit`, up to the end.
    async fn drain(&mut self, events: &mut Events) {
        let _ = tokio::time::timeout(DRAIN_AFTER_QUIT, async {
            while let Some(event) = events.next().await {
                // Our own goodbye needs no line.
                if !matches!(event, Event::Disconnected { .. }) {
                    self.print_event(&event);
                }
            }
        })
        .await;
    }

    fn print_event(&mut self, event: &Event) {
        let me = self.client.current_nick();
        for line in render::event(&self.style, event, &me, self.current.as_ref()) {
            self.out.line(&line);
        }
    }

    fn error(&mut self, e: &ClientError) {
        let line = format!("! {}", describe(e));
        self.out.line(&line);
    }

    /// Joins `room`, then leaves the current one, as `/join` does in the
    /// server's text dialect: plain lines go to one room at a time.
    async fn switch(&mut self, room: RoomName) {
        if self.current.as_ref().is_some_and(|c| c.key() == room.key()) {
            return;
        }
        let joined = retry(|| self.client.join(&room)).await;
        match joined {
            Ok(members) => {
                let line = render::members(&self.style, &room, &members);
                self.out.line(&line);
                if let Some(old) = self.current.replace(room)
                    && let Err(e) = retry(|| self.client.leave(&old)).await
                {
                    self.error(&e);
                }
            }
            Err(e) => self.error(&e),
        }
    }

    async fn handle_line(&mut self, line: &str) -> Flow {
        let input = match text::parse_line(line, self.current.as_ref()) {
            Ok(input) => input,
            Err(e) => {
                let line = format!("! {}", describe(&e));
                self.out.line(&line);
                return Flow::Continue;
            }
        };
        match input {
            TextInput::Empty => {}
            TextInput::Help => {
                for line in HELP {
                    self.out.line(line);
                }
            }
            TextInput::Switch(room) => self.switch(room).await,
            TextInput::Request(message) => return self.request(message).await,
            _ => self
                .out
                .line("! that command is not supported by this client"),
        }
        Flow::Continue
    }

    async fn request(&mut self, message: ClientMessage) -> Flow {
        let client = self.client.clone();
        let result = match message {
            ClientMessage::Say { room, text, action } => {
                let sent = if action {
                    retry(|| client.action(&room, text.clone())).await
                } else {
                    retry(|| client.say(&room, text.clone())).await
                };
                sent.map(|_| {
                    if self.interactive {
                        let you = self.style.you();
                        let line = if action {
                            format!("* {you} {}", render::clean(&text))
                        } else {
                            format!("<{you}> {}", render::clean(&text))
                        };
                        self.out.line(&line);
                    }
                })
            }
            ClientMessage::Whisper { to, text } => {
                retry(|| client.whisper(&to, text.clone())).await
            }
            ClientMessage::Nick { nick } => retry(|| client.nick(&nick)).await,
            ClientMessage::Leave { room } => retry(|| client.leave(&room)).await.map(|()| {
                if self.current.as_ref().is_some_and(|c| c.key() == room.key()) {
                    self.current = None;
                }
                let line = format!("* you left {}", render::room(&room));
                self.out.line(&line);
            }),
            ClientMessage::Rooms => retry(|| client.rooms()).await.map(|rooms| {
                let line = render::rooms(&rooms);
                self.out.line(&line);
            }),
            ClientMessage::Who { room } => retry(|| client.who(&room)).await.map(|members| {
                let line = render::members(&self.style, &room, &members);
                self.out.line(&line);
            }),
            ClientMessage::Quit { reason } => return Flow::Quit(reason),
            _ => {
                self.out
                    .line("! that command is not supported by this client");
                Ok(())
            }
        };
        if let Err(e) = result {
            self.error(&e);
        }
        Flow::Continue
    }
}

/// Runs a request again while the server says it comes too fast, so that
/// piped input is delivered in full rather than partly refused.
async fn retry<T, F, Fut>(mut request: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut tries = 0;
    loop {
        match request().await {
            Err(e) if e.code() == Some(ErrorCode::RateLimited) && tries < RATE_LIMIT_RETRIES => {
                tries += 1;
                tokio::time::sleep(RATE_LIMIT_PAUSE).await;
            }
            other => return other,
        }
    }
}
