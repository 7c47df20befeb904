//! Accounts and moderation on the web page, in a real browser (headless
//! Chromium over WebDriver, as in tests/browser.rs) against the real
//! binary: one page registers its nick with the Account form, another logs
//! in to an account with it; an operator on `nc` kicks and then bans the
//! logged-in page user from `#hall`. The watching page shows both actions,
//! the removed page says it was removed and why, and its way back in is
//! refused while the ban holds. A screenshot of each page is saved under
//! `target/browser-test/`.
//!
//! Skips (prints `skipped: …`) without Chromium and chromedriver, unless
//! `BROWSER_TEST_REQUIRED=1`.

mod common;

use std::path::PathBuf;

use common::browser::{Page, eventually, with_pages};
use common::server::Server;
use common::text_client::TextClient;
use fantoccini::Locator;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_registers_logs_in_and_shows_kicks_and_bans() {
    with_pages("moderation", &["pat", "visitor"], |pages, out| {
        let Ok([pat, visitor]) = <[Page; 2]>::try_from(pages) else {
            panic!("two pages");
        };
        scenario(pat, visitor, out)
    })
    .await;
}

/// Types `text` into the field with id `id`.
async fn fill(page: &Page, id: &str, text: &str) {
    let field = page
        .client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("{}: no #{id}: {e}", page.name));
    field.clear().await.expect("clear the field");
    field.send_keys(text).await.expect("type into the field");
}

/// Waits until the element with id `id` shows exactly `text`.
async fn wait_text(page: &Page, id: &str, text: &str) {
    eventually(
        &format!("{} to show {text:?} in #{id}", page.name),
        || async {
            let shown = page
                .js(
                    "return document.getElementById(arguments[0]).textContent;",
                    vec![json!(id)],
                )
                .await;
            (shown == text).then_some(())
        },
    )
    .await;
}

/// Waits until a line of #messages has a text containing `needle` (and
/// the class `kind`).
async fn wait_line_with(page: &Page, needle: &str, kind: &str) {
    eventually(
        &format!("{} to show a {kind} line with {needle:?}", page.name),
        || async {
            let found = page
                .js(
                    "const [needle, kind] = arguments;
                 return [...document.querySelectorAll('#messages > .line.' + kind + ' .text')]
                    .some((t) => t.textContent.includes(needle));",
                    vec![json!(needle), json!(kind)],
                )
                .await;
            (found == true).then_some(())
        },
    )
    .await;
}

async fn scenario(pat: Page, visitor: Page, out: PathBuf) {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .settings(&[("hash_memory_kib", "64"), ("hash_iterations", "1")])
        .wait(common::browser::STEP)
        .start();
    let addr = server.addr();
    let base = format!("http://{addr}/");
    let wait = common::browser::STEP;

    // The operator: a registered account on nc, owner of #hall.
    let mut chair = TextClient::greeted(addr, wait).0;
    chair.send("/nick chair");
    chair.line_with("is now known as chair");
    chair.send("/register chair-password");
    chair.line_with("* you are logged in as chair");
    chair.send("/join hall");
    chair.line_with("you own #hall");
    // An account the visitor will log in to.
    let mut dana = TextClient::greeted(addr, wait).0;
    dana.send("/nick dana");
    dana.line_with("is now known as dana");
    dana.send("/register dana-password");
    dana.line_with("* you are logged in as dana");
    dana.send("/quit");
    dana.expect_closed();

    // Pat registers the page's nick with the Account form.
    pat.open(&base, "pat").await;
    pat.wait_in("lobby").await;
    fill(&pat, "account-password", "pat-password").await;
    pat.click("#account-register").await;
    wait_text(&pat, "account-state", "logged in as pat").await;
    wait_line_with(&pat, "you are logged in as pat", "info").await;

    // The visitor logs in to dana's account: the page takes its nick.
    visitor.open(&base, "visitor").await;
    visitor.wait_in("lobby").await;
    fill(&visitor, "account-nick", "dana").await;
    fill(&visitor, "account-password", "dana-password").await;
    visitor.click("#account-login").await;
    wait_text(&visitor, "account-state", "logged in as dana").await;
    wait_text(&visitor, "me", "dana").await;

    for page in [&pat, &visitor] {
        page.type_line("/join hall").await;
        page.wait_in("hall").await;
    }
    chair.line_with("dana joined #hall");

    // A kick: the room sees it, the one kicked is told it was removed.
    chair.send("/kick dana off topic");
    wait_line_with(
        &pat,
        "chair kicked dana from #hall (off topic)",
        "moderation",
    )
    .await;
    wait_line_with(
        &visitor,
        "you were removed from #hall: kicked by chair: off topic",
        "removed",
    )
    .await;
    wait_text(&visitor, "current-room", "#lobby").await;

    // Back in, then banned by account: removed again, and kept out.
    visitor.type_line("/join hall").await;
    visitor.wait_in("hall").await;
    chair.send("/ban account:dana spamming");
    wait_line_with(
        &pat,
        "chair banned account:dana from #hall (spamming)",
        "moderation",
    )
    .await;
    wait_line_with(
        &visitor,
        "you were removed from #hall: banned by chair",
        "removed",
    )
    .await;
    visitor.type_line("/join hall").await;
    wait_line_with(&visitor, "you are banned from #hall: spamming", "error").await;

    pat.screenshot(&out.join("moderation-watcher.png")).await;
    visitor
        .screenshot(&out.join("moderation-removed.png"))
        .await;
    drop(server);
}
