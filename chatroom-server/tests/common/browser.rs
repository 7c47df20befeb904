//! Headless Chromium driven over WebDriver (chromedriver, through
//! `fantoccini`): starting the driver and a browser, and one page seen
//! through it, with waits that poll until a deadline.
//!
//! Chromium and chromedriver come from Debian's packages
//! (`bash .ci/install-browser`).

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use super::temp::TempDir;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any one step may take before the test gives up.
pub(crate) const STEP: Duration = Duration::from_secs(20);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// Where the screenshots go: `target/browser-test/` in the workspace.
pub(crate) fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-test");
    std::fs::create_dir_all(&dir).expect("create target/browser-test");
    dir
}

/// Polls `check` until it gives a value; fails the test after [`STEP`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(STEP, what, check).await
}

/// Polls `check` until it gives a value; fails the test after `limit`.
pub(crate) async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
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

/// chromedriver, listening on a port of its own.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver, or says why it cannot.
    pub(crate) async fn start(log: &Path) -> Result<Self, String> {
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
    pub(crate) async fn session(&self, profile: &Path) -> Result<Client, String> {
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
pub(crate) struct Page {
    /// The WebDriver session.
    pub(crate) client: Client,
    /// Whose page it is, in failure messages.
    pub(crate) name: &'static str,
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
    pub(crate) async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{}: script failed: {e}", self.name))
    }

    /// Loads the page and picks `nick` in the nickname dialog.
    pub(crate) async fn open(&self, base: &str, nick: &str) {
        self.client.goto(base).await.expect("load the page");
        self.pick_nick(nick).await;
    }

    /// Types `nick` into the nickname dialog, once it shows, and submits it.
    pub(crate) async fn pick_nick(&self, nick: &str) {
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
    pub(crate) async fn wait_in(&self, room: &str) {
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

    pub(crate) async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no {css}: {e}", self.name))
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}: click {css}: {e}", self.name));
    }

    /// Types `line` into the message box and sends it.
    pub(crate) async fn type_line(&self, line: &str) {
        let input = self
            .client
            .find(Locator::Id("input"))
            .await
            .expect("#input");
        input.send_keys(line).await.expect("type into #input");
        self.click("#send").await;
    }

    pub(crate) async fn status(&self) -> Value {
        self.js(STATUS, vec![]).await
    }

    pub(crate) async fn wait_status(&self, state: &str) -> Value {
        eventually(&format!("{} to be {state}", self.name), || async {
            let status = self.status().await;
            (status["state"] == state).then_some(status)
        })
        .await
    }

    pub(crate) async fn count(&self, text: &str, from: Option<&str>, kind: Option<&str>) -> u64 {
        self.js(COUNT_LINES, vec![json!(text), json!(from), json!(kind)])
            .await
            .as_u64()
            .expect("a count")
    }

    /// Waits until a line with exactly `text` (from `from`) is shown.
    pub(crate) async fn wait_line(&self, text: &str, from: Option<&str>, kind: Option<&str>) {
        eventually(&format!("{} to show {text:?}", self.name), || async {
            (self.count(text, from, kind).await > 0).then_some(())
        })
        .await;
    }

    /// Asserts that `text` is shown exactly once.
    pub(crate) async fn assert_once(&self, text: &str) {
        let n = self.count(text, None, None).await;
        assert_eq!(n, 1, "{} shows {text:?} {n} times, not once", self.name);
    }

    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("take a screenshot");
        std::fs::write(path, png).expect("save the screenshot");
    }
}

/// Starts chromedriver and one browser per name in `names`, then runs
/// `scenario` with their pages (in that order) and the output directory
/// on a task of its own, so that, pass or fail, the browsers are closed
/// before the test ends; the test then fails as the scenario did. When the
/// browser cannot start it prints `skipped: <reason>` and returns, unless
/// `BROWSER_TEST_REQUIRED=1` is set, which makes that a failure. `label`
/// names the driver's log and the profiles' directory.
pub(crate) async fn with_pages<F, Fut>(label: &str, names: &[&'static str], scenario: F)
where
    F: FnOnce(Vec<Page>, PathBuf) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let required = std::env::var("BROWSER_TEST_REQUIRED").is_ok_and(|v| v == "1");
    let skip = |reason: String| {
        assert!(!required, "BROWSER_TEST_REQUIRED=1 but {reason}");
        println!("skipped: {reason}");
    };
    let out = output_dir();
    let driver = match Driver::start(&out.join(format!("chromedriver-{label}.log"))).await {
        Ok(driver) => driver,
        Err(reason) => return skip(reason),
    };
    let profiles = TempDir::new(&format!("browser-{label}"));
    let mut pages = Vec::new();
    for &name in names {
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
    let outcome = tokio::spawn(scenario(pages.clone(), out)).await;
    for page in pages {
        let _ = page.client.close().await;
    }
    drop(driver);
    drop(profiles);
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the scenario did not finish: {e}"),
        }
    }
}
