//! The web page in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, through `fantoccini`) against the real server binary.
//!
//! Two browser sessions and an `nc`-style text client chat in `lobby`; markup
//! in a message shows as text; the server is stopped and started again on the
//! same port while messages are sent, and each page reconnects by itself and
//! shows the missed messages exactly once. Screenshots are saved under
//! `target/browser-test/`.
//!
//! Chromium and chromedriver come from Debian's packages
//! (`bash .ci/install-browser`). When they are missing or cannot start, the
//! test prints `skipped: <reason>` and passes, unless
//! `BROWSER_TEST_REQUIRED=1` is set (as `.ci/run` does once it has
//! installed them), in which case that is a failure. Every wait has a
//! deadline.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_chatroom-server");
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any one step may take before the test gives up.
const STEP: Duration = Duration::from_secs(20);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// A fresh, empty directory under the system's temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatroom-browser-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// Where the screenshots go: `target/browser-test/` in the workspace.
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-test");
    std::fs::create_dir_all(&dir).expect("create target/browser-test");
    dir
}

/// Polls `check` until it gives a value; fails the test after [`STEP`].
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(STEP, what, check).await
}

/// Polls `check` until it gives a value; fails the test after `limit`.
async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// -------------------------------------------------------------------------
// The server binary

/// A running `chatroom-server` with its history in `data`.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts the binary on `listen` and waits for its `listening` line.
    fn start(listen: &str, data: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", listen])
            .current_dir(data)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CHATROOM_") {
                cmd.env_remove(name);
            }
        }
        // The default (sqlite) history, in a directory both runs share, so
        // the ids go on across the restart and resume has something to do.
        cmd.env("CHATROOM_DATA_DIR", data.join("data"));
        let mut child = cmd.spawn().expect("start chatroom-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening addr=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(STEP) {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chatroom-server did not listen on {listen} ({e})");
            }
        };
        Self {
            child,
            addr: addr.parse().expect("a socket address after addr="),
        }
    }

    /// SIGTERM, then waits for the process to exit.
    fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let end = Instant::now() + STEP;
        while self.child.try_wait().expect("poll the server").is_none() {
            assert!(
                Instant::now() < end,
                "the server did not exit after SIGTERM"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// -------------------------------------------------------------------------
// Plain TCP clients

/// A person on `nc`: the plain-text dialect, lines in and out.
struct TextClient {
    stream: TcpStream,
    lines: mpsc::Receiver<String>,
}

impl TextClient {
    /// Connects, sending nothing first, and reads the greeting.
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, STEP).expect("connect the text client");
        let reader = BufReader::new(stream.try_clone().expect("clone the socket"));
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut client = Self { stream, lines };
        client.expect("welcome to").await;
        client
    }

    fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the text client's socket");
    }

    /// The next line that contains `needle`; earlier lines are skipped.
    async fn expect(&mut self, needle: &str) -> String {
        let end = Instant::now() + STEP;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                if line.contains(needle) {
                    return line;
                }
            }
            assert!(
                Instant::now() < end,
                "timed out after {STEP:?}: the text client never saw {needle:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A native-dialect client, used to send messages whose `ok` proves the
/// server took them.
struct NativeClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl NativeClient {
    fn join(addr: SocketAddr, nick: &str, room: &str) -> Self {
        let stream = TcpStream::connect_timeout(&addr, STEP).expect("connect the native client");
        stream
            .set_read_timeout(Some(STEP))
            .expect("set a read timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone the socket"));
        let mut client = Self { stream, reader };
        client.send(&json!({"type": "hello", "version": 1, "nick": nick}));
        client.until("welcome");
        client.send(&json!({"ref": "j", "type": "join", "room": room, "history": 0}));
        client.until("members");
        client
    }

    fn send(&mut self, frame: &Value) {
        writeln!(self.stream, "{frame}").expect("write to the native client's socket");
    }

    /// Reads frames until one of type `kind`, which it returns.
    fn until(&mut self, kind: &str) -> Value {
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("native client waiting for {kind}: {e}"));
            assert!(
                n > 0,
                "native client: connection closed while waiting for {kind}"
            );
            let frame: Value = serde_json::from_str(&line).expect("a JSON frame");
            assert_ne!(
                frame["type"], "error",
                "native client got an error: {frame}"
            );
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Says `text` in `room` and waits for the `ok`; returns the id.
    fn say(&mut self, room: &str, text: &str) -> u64 {
        self.send(&json!({"ref": "s", "type": "say", "room": room, "text": text}));
        let ok = self.until("ok");
        ok["id"].as_u64().expect("an id in the ok")
    }
}

// -------------------------------------------------------------------------
// The browser

/// chromedriver, listening on a port of its own.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver, or says why it cannot.
    async fn start(log: &Path) -> Result<Self, String> {
        for path in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(path).exists() {
                return Err(format!("{path} is missing (run: bash .ci/install-browser)"));
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for chromedriver: {e}"))?
            .port();
        let log_file = std::fs::File::create(log).map_err(|e| format!("chromedriver log: {e}"))?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot run {CHROMEDRIVER}: {e}"))?;
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let end = Instant::now() + STEP;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                return Err(format!("chromedriver exited at start ({status})"));
            }
            if Instant::now() > end {
                return Err("chromedriver did not listen in time".to_owned());
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(driver)
    }

    /// A new browser with a profile of its own in `profile`.
    async fn session(&self, profile: &Path) -> Result<Client, String> {
        let profile = format!("--user-data-dir={}", profile.display());
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,760",
            &profile,
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".to_owned(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(caps);
        let connect = builder.connect(&self.url);
        match tokio::time::timeout(STEP, connect).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(format!("Chromium did not start: {e}")),
            Err(_) => Err("Chromium did not start in time".to_owned()),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser showing the page, seen through WebDriver.
#[derive(Clone)]
struct Page {
    client: Client,
    name: &'static str,
}

/// Counts the lines of #messages whose text is exactly `arguments[0]`,
/// from `arguments[1]` when that is not null, of class `arguments[2]` when
/// that is not null.
const COUNT_LINES: &str = r"
    const [text, from, kind] = arguments;
    return [...document.querySelectorAll('#messages > .line')].filter((li) => {
        const t = li.querySelector('.text');
        return t !== null && t.textContent === text
            && (from === null || li.dataset.from === from)
            && (kind === null || li.classList.contains(kind));
    }).length;
";

/// The connection status the page shows, and its reconnect schedule.
const STATUS: &str = r"
    const s = document.getElementById('status');
    return {
        state: s.dataset.state,
        text: s.textContent,
        attempt: Number(s.dataset.attempt || 0),
        retry_in: Number(s.dataset.retryAt || 0) - Date.now(),
    };
";

impl Page {
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{}: script failed: {e}", self.name))
    }

    /// Loads the page and picks `nick` in the nickname dialog.
    async fn open(&self, base: &str, nick: &str) {
        self.client.goto(base).await.expect("load the page");
        self.pick_nick(nick).await;
    }

    /// Types `nick` into the nickname dialog, once it shows, and submits it.
    async fn pick_nick(&self, nick: &str) {
        eventually(&format!("{} to ask for a nickname", self.name), || async {
            let shown = self
                .js(
                    "return !document.getElementById('nick-dialog').hidden;",
                    vec![],
                )
                .await;
            (shown == true).then_some(())
        })
        .await;
        let field = self
            .client
            .find(Locator::Id("nick-input"))
            .await
            .expect("#nick-input");
        field.clear().await.expect("clear the nickname field");
        field.send_keys(nick).await.expect("type the nickname");
        self.click("#nick-ok").await;
    }

    /// Waits until the page is online with `room` as its current room.
    async fn wait_in(&self, room: &str) {
        self.wait_status("online").await;
        let want = format!("#{room}");
        eventually(&format!("{} to be in {want}", self.name), || async {
            let current = self
                .js(
                    "return document.getElementById('current-room').textContent;",
                    vec![],
                )
                .await;
            (current == want.as_str()).then_some(())
        })
        .await;
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no {css}: {e}", self.name))
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}: click {css}: {e}", self.name));
    }

    /// Types `line` into the message box and sends it.
    async fn type_line(&self, line: &str) {
        let input = self
            .client
            .find(Locator::Id("input"))
            .await
            .expect("#input");
        input.send_keys(line).await.expect("type into #input");
        self.click("#send").await;
    }

    async fn status(&self) -> Value {
        self.js(STATUS, vec![]).await
    }

    async fn wait_status(&self, state: &str) -> Value {
        eventually(&format!("{} to be {state}", self.name), || async {
            let status = self.status().await;
            (status["state"] == state).then_some(status)
        })
        .await
    }

    async fn count(&self, text: &str, from: Option<&str>, kind: Option<&str>) -> u64 {
        self.js(COUNT_LINES, vec![json!(text), json!(from), json!(kind)])
            .await
            .as_u64()
            .expect("a count")
    }

    /// Waits until a line with exactly `text` (from `from`) is shown.
    async fn wait_line(&self, text: &str, from: Option<&str>, kind: Option<&str>) {
        eventually(&format!("{} to show {text:?}", self.name), || async {
            (self.count(text, from, kind).await > 0).then_some(())
        })
        .await;
    }

    /// Asserts that `text` is shown exactly once.
    async fn assert_once(&self, text: &str) {
        let n = self.count(text, None, None).await;
        assert_eq!(n, 1, "{} shows {text:?} {n} times, not once", self.name);
    }

    async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("take a screenshot");
        std::fs::write(path, png).expect("save the screenshot");
    }
}

// -------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_chats_renders_text_as_text_and_resumes() {
    let required = std::env::var("BROWSER_TEST_REQUIRED").is_ok_and(|v| v == "1");
    let skip = |reason: String| {
        assert!(!required, "BROWSER_TEST_REQUIRED=1 but {reason}");
        println!("skipped: {reason}");
    };
    let out = output_dir();
    let driver = match Driver::start(&out.join("chromedriver.log")).await {
        Ok(driver) => driver,
        Err(reason) => return skip(reason),
    };
    let profiles = temp_dir("profiles");
    let mut pages = Vec::new();
    for name in ["alice", "bob"] {
        match driver.session(&profiles.join(name)).await {
            Ok(client) => pages.push(Page { client, name }),
            Err(reason) => {
                for page in pages {
                    let _ = page.client.close().await;
                }
                return skip(reason);
            }
        }
    }
    let bob = pages.pop().expect("bob's page");
    let alice = pages.pop().expect("alice's page");

    // The scenario runs on a task of its own so that, pass or fail, the
    // browsers are closed before the test ends.
    let outcome = tokio::spawn(scenario(alice.clone(), bob.clone(), out)).await;
    for page in [alice, bob] {
        let _ = page.client.close().await;
    }
    drop(driver);
    let _ = std::fs::remove_dir_all(&profiles);
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the scenario did not finish: {e}"),
        }
    }
}

async fn scenario(alice: Page, bob: Page, out: PathBuf) {
    let dir = temp_dir("server");
    let mut server = Server::start("127.0.0.1:0", &dir);
    let addr = server.addr;
    let base = format!("http://{addr}/");

    // Two browsers and a person on nc, all in lobby.
    alice.open(&base, "alice").await;
    alice.wait_in("lobby").await;
    // A nickname that is taken (ignoring case) is refused in the dialog.
    bob.open(&base, "Alice").await;
    eventually("bob to be told that Alice is taken", || async {
        let error = bob
            .js(
                "return document.getElementById('nick-error').textContent;",
                vec![],
            )
            .await;
        error
            .as_str()
            .is_some_and(|e| e.contains("taken"))
            .then_some(())
    })
    .await;
    bob.pick_nick("bob").await;
    bob.wait_in("lobby").await;
    let mut carol = TextClient::connect(addr).await;
    carol.send("/nick carol");
    carol.expect("is now known as carol").await;
    for page in [&alice, &bob] {
        eventually(&format!("{} to see carol arrive", page.name), || async {
            let shown = page
                .js(
                    "return [...document.querySelectorAll('#messages > .presence .text')]
                        .some((t) => t.textContent.endsWith('is now known as carol'));",
                    vec![],
                )
                .await;
            (shown == true).then_some(())
        })
        .await;
    }

    // Chat: page to page and nc, nc to the pages.
    alice.type_line("hello from alice").await;
    bob.wait_line("hello from alice", Some("alice"), Some("msg"))
        .await;
    carol.expect("<alice> hello from alice").await;
    eventually("alice's own line to be confirmed with an id", || async {
        let id = alice
            .js(
                "const l = [...document.querySelectorAll('#messages > .line.own')]
                    .find((li) => li.querySelector('.text').textContent === 'hello from alice');
                 return l && !l.classList.contains('pending') ? l.dataset.id : null;",
                vec![],
            )
            .await;
        id.as_str().map(str::to_owned)
    })
    .await;
    carol.send("hi from carol");
    alice
        .wait_line("hi from carol", Some("carol"), Some("msg"))
        .await;
    bob.wait_line("hi from carol", Some("carol"), Some("msg"))
        .await;

    // Markup is text, from a page and from nc.
    let img = "<img src=x onerror=alert(1)>";
    let script = "<b>bold</b><script>window.pwned = 1</script>";
    bob.type_line(img).await;
    carol.expect(&format!("<bob> {img}")).await;
    carol.send(script);
    for page in [&alice, &bob] {
        page.wait_line(script, Some("carol"), Some("msg")).await;
    }
    alice.wait_line(img, Some("bob"), Some("msg")).await;
    for page in [&alice, &bob] {
        let lines = page
            .client
            .find_all(Locator::Css("#messages > .line.msg .text"))
            .await
            .expect("message lines");
        let mut texts = Vec::new();
        for line in lines {
            texts.push(line.text().await.expect("a line's text"));
        }
        assert!(
            texts.iter().any(|t| t == img),
            "{}: {img} not shown as text: {texts:?}",
            page.name
        );
        assert!(
            texts.iter().any(|t| t == script),
            "{}: markup not shown as text",
            page.name
        );
        for tag in ["img", "b", "script"] {
            let found = page
                .client
                .find_all(Locator::Css(&format!("#messages {tag}")))
                .await
                .expect("query #messages");
            assert!(
                found.is_empty(),
                "{}: a <{tag}> element appeared in #messages",
                page.name
            );
        }
        let pwned = page.js("return window.pwned === undefined;", vec![]).await;
        assert_eq!(pwned, true, "{}: a script from a message ran", page.name);
    }

    // A private message and its reply button.
    alice.type_line("/msg bob psst, bob").await;
    bob.wait_line("psst, bob", Some("alice"), Some("private"))
        .await;
    bob.click("#messages > .line.private .reply").await;
    let prefilled = bob
        .js("return document.getElementById('input').value;", vec![])
        .await;
    assert_eq!(prefilled, "/msg alice ", "the reply button fills in /msg");
    bob.type_line("psst back").await;
    alice
        .wait_line("psst back", Some("bob"), Some("private"))
        .await;

    // A second room: alice joins it with /join and goes back to lobby by
    // clicking it in the room list; she stays in both.
    alice.type_line("/join rust").await;
    alice.wait_in("rust").await;
    alice
        .click(r#"#rooms li[data-room="lobby"] .room-open"#)
        .await;
    alice.wait_in("lobby").await;
    let joined = alice
        .client
        .find_all(Locator::Css("#rooms li.joined"))
        .await
        .expect("the room list");
    assert_eq!(joined.len(), 2, "alice is in lobby and rust");

    // The server goes away: both pages notice and keep retrying.
    server.stop();
    for page in [&alice, &bob] {
        page.wait_status("waiting").await;
    }
    // Wait until both pages are far enough into their backoff (0.5 s, 1 s,
    // 2 s, 4 s, 8 s, ... between attempts) that the messages below are
    // certainly sent while they are disconnected.
    let backoff = Duration::from_secs(45);
    eventually_within(
        backoff,
        "both pages to be between two far-apart retries",
        || async {
            let mut ready = true;
            for page in [&alice, &bob] {
                let s = page.status().await;
                ready &= s["state"] == "waiting"
                    && s["attempt"].as_u64().unwrap_or(0) >= 3
                    && s["retry_in"].as_f64().unwrap_or(0.0) > 2500.0;
            }
            ready.then_some(())
        },
    )
    .await;

    // The server comes back on the same port with the same history, and
    // the room goes on without the pages.
    server = Server::start(&addr.to_string(), &dir);
    assert_eq!(server.addr, addr, "the server came back on its port");
    let mut carol = TextClient::connect(addr).await;
    carol.send("/nick carol");
    carol.expect("is now known as carol").await;
    carol.send("missed from carol");
    // The reply to /who proves the line before it was handled.
    carol.send("/who");
    carol.expect("in #lobby").await;
    let mut dave = NativeClient::join(addr, "dave", "lobby");
    let first = dave.say("lobby", "missed from dave 1");
    let second = dave.say("lobby", "missed from dave 2");
    assert_eq!(second, first + 1);
    dave.send(&json!({"ref": "j", "type": "join", "room": "rust", "history": 0}));
    dave.until("members");
    dave.say("rust", "missed in rust");
    for page in [&alice, &bob] {
        let s = page.status().await;
        assert_eq!(
            s["state"], "waiting",
            "{} reconnected too early to test resume",
            page.name
        );
    }

    // Each page reconnects by itself and shows what it missed, once.
    let missed = [
        "missed from carol",
        "missed from dave 1",
        "missed from dave 2",
    ];
    for page in [&alice, &bob] {
        page.wait_status("online").await;
        for text in missed {
            page.wait_line(text, None, Some("msg")).await;
        }
    }
    alice
        .wait_line("missed in rust", Some("dave"), Some("msg"))
        .await;
    let unread = alice
        .js(
            r#"const u = document.querySelector('#rooms li[data-room="rust"] .unread');
               return u && u.textContent;"#,
            vec![],
        )
        .await;
    assert_eq!(
        unread, "1",
        "rust shows one unread message in alice's room list"
    );
    // Give a late duplicate the time to show up, then count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    alice.assert_once("missed in rust").await;
    assert_eq!(
        bob.count("missed in rust", None, None).await,
        0,
        "bob is not in rust"
    );
    for page in [&alice, &bob] {
        for text in missed
            .iter()
            .chain(&["hello from alice", "hi from carol", img, script])
        {
            page.assert_once(text).await;
        }
    }

    // And the room is live again for everyone.
    alice.type_line("back online").await;
    bob.wait_line("back online", Some("alice"), Some("msg"))
        .await;
    carol.expect("<alice> back online").await;
    dave.send(&json!({"type": "say", "room": "lobby", "text": "welcome back"}));
    alice
        .wait_line("welcome back", Some("dave"), Some("msg"))
        .await;

    alice.screenshot(&out.join("chat.png")).await;
    bob.screenshot(&out.join("chat-bob.png")).await;
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
