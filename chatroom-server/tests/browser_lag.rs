//! A page that falls behind, in a real browser (headless Chromium over
//! WebDriver, as in tests/browser.rs) against the real binary: the server
//! keeps four frames per queue (`outbox_frames = 4`), so a person on `nc`
//! pasting 200 lines at once outruns the page's queue. The page shows that
//! it fell behind and then every line once, in order, with nothing missed:
//! what #14 asks of a lagging client. A screenshot is saved under
//! `target/browser-test/`.
//!
//! Skips (prints `skipped: …`) without Chromium and chromedriver, unless
//! `BROWSER_TEST_REQUIRED=1`.

mod common;

use std::path::PathBuf;

use common::browser::{Page, eventually, with_pages};
use common::server::Server;
use common::text_client::TextClient;
use serde_json::json;

/// Lines the person on `nc` pastes.
const LINES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_falls_behind_says_so_then_shows_each_missed_line_once() {
    with_pages("lag", &["reader"], |pages, out| {
        let Ok([reader]) = <[Page; 1]>::try_from(pages) else {
            panic!("one page");
        };
        scenario(reader, out)
    })
    .await;
}

/// The texts of the page's lines that start with `prefix`, in the order
/// shown.
const LINES_STARTING: &str = r"
    const [prefix] = arguments;
    return [...document.querySelectorAll('#messages > .line .text')]
        .map((t) => t.textContent)
        .filter((t) => t.startsWith(prefix));
";

async fn scenario(reader: Page, out: PathBuf) {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .settings(&[
            ("outbox_frames", "4"),
            ("history", "memory"),
            ("rate_per_sec", "100000"),
            ("rate_burst", "100000"),
        ])
        .wait(common::browser::STEP)
        .start();
    let addr = server.addr();
    reader.open(&format!("http://{addr}/"), "reader").await;
    reader.wait_in("lobby").await;

    let (mut talker, nick) = TextClient::greeted(addr, common::browser::STEP);
    talker.send("/nick talker");
    talker.line_with("is now known as talker");
    reader
        .wait_line(&format!("{nick} is now known as talker"), None, None)
        .await;

    let paste: String = (0..LINES).map(|i| format!("burst line {i}\n")).collect();
    talker.send_raw(paste.as_bytes());

    // The page says it fell behind...
    eventually("the page to say it fell behind", || async {
        let shown = reader
            .js(LINES_STARTING, vec![json!("you fell behind in #lobby")])
            .await;
        (shown.as_array().is_some_and(|a| !a.is_empty())).then_some(())
    })
    .await;
    // ...and then shows every line, once, in order.
    let expected: Vec<String> = (0..LINES).map(|i| format!("burst line {i}")).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let shown = loop {
        let shown = reader.js(LINES_STARTING, vec![json!("burst line ")]).await;
        let shown: Vec<String> = serde_json::from_value(shown).expect("a list of texts");
        if shown.len() >= LINES || std::time::Instant::now() >= deadline {
            break shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    reader.screenshot(&out.join("lag-reader.png")).await;
    if shown != expected {
        let all = reader.js(LINES_STARTING, vec![json!("")]).await;
        let log = server.log_lines();
        let tail = &log[log.len().saturating_sub(40)..];
        panic!(
            "each line once, in order: shown {} lines\n{shown:?}\nall lines: {all}\nserver log:\n{}",
            shown.len(),
            tail.join("\n")
        );
    }
    drop(talker);
}
