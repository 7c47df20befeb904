//! The web page in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, through `fantoccini`) against the real server binary.
//!
//! Two browser sessions and an `nc`-style text client chat in `lobby`; markup
//! in a message shows as text; the server is stopped and started again on the
//! same port while messages are sent, and each page reconnects by itself and
//! shows the missed messages exactly once. Screenshots are saved under
//! `target/browser-test/`. A second case has the page chat with irssi (a
//! real IRC client on a terminal) in `lobby`; it skips without irssi.
//!
//! Chromium and chromedriver come from Debian's packages
//! (`bash .ci/install-browser`). When they are missing or cannot start, the
//! test prints `skipped: <reason>` and passes, unless
//! `BROWSER_TEST_REQUIRED=1` is set (as `.ci/run` does once it has
//! installed them), in which case that is a failure. Every wait has a
//! deadline.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::browser::{Page, STEP, eventually, eventually_within, with_pages};
use common::irc_client::irc_addr;
use common::irssi::{self, Irssi};
use common::json_client::JsonClient;
use common::server::Server;
use common::text_client::TextClient;
use fantoccini::Locator;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_chats_renders_text_as_text_and_resumes() {
    with_pages("chat", &["alice", "bob"], |pages, out| {
        let Ok([alice, bob]) = <[Page; 2]>::try_from(pages) else {
            panic!("two pages");
        };
        scenario(alice, bob, out)
    })
    .await;
}

async fn scenario(alice: Page, bob: Page, out: PathBuf) {
    // The default (sqlite) history, in the server's scratch directory,
    // which the restart keeps, so the ids go on across it and resume has
    // something to do.
    let mut server = Server::builder().listen("127.0.0.1:0").wait(STEP).start();
    let addr = server.addr();
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
    let mut carol = TextClient::greeted(addr, STEP).0;
    carol.send("/nick carol");
    carol.line_with("is now known as carol");
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
    carol.line_with("<alice> hello from alice");
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
    carol.line_with(&format!("<bob> {img}"));
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
    server.restart();
    assert_eq!(server.addr(), addr, "the server came back on its port");
    let mut carol = TextClient::greeted(addr, STEP).0;
    carol.send("/nick carol");
    carol.line_with("is now known as carol");
    carol.send("missed from carol");
    // The reply to /who proves the line before it was handled.
    carol.send("/who");
    carol.line_with("in #lobby");
    let mut dave = JsonClient::hello_in(addr, "dave", "lobby", STEP);
    let first = dave.say("lobby", "missed from dave 1");
    let second = dave.say("lobby", "missed from dave 2");
    assert_eq!(second, first + 1);
    dave.send(&json!({"ref": "j", "type": "join", "room": "rust", "history": 0}));
    dave.next_of("members");
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
    carol.line_with("<alice> back online");
    dave.send(&json!({"type": "say", "room": "lobby", "text": "welcome back"}));
    alice
        .wait_line("welcome back", Some("dave"), Some("msg"))
        .await;

    alice.screenshot(&out.join("chat.png")).await;
    bob.screenshot(&out.join("chat-bob.png")).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_irssi_chat_in_one_room() {
    if let Some(why) = irssi::missing() {
        println!("skipped: {why}");
        return;
    }
    with_pages("irssi", &["webber"], |pages, out| {
        let Ok([page]) = <[Page; 1]>::try_from(pages) else {
            panic!("one page");
        };
        with_irssi(page, out)
    })
    .await;
}

async fn with_irssi(page: Page, out: PathBuf) {
    let mut server = Server::builder()
        .listen("127.0.0.1:0")
        .set("irc_listen", "127.0.0.1:0")
        .wait(STEP)
        .start();
    let irc = irc_addr(&mut server);
    page.open(&format!("http://{}/", server.addr()), "webber")
        .await;
    page.wait_in("lobby").await;
    // irssi runs on a terminal and is read by polling it; off the runtime.
    let irssi = tokio::task::spawn_blocking(move || {
        let irssi = Irssi::connect("browser-irssi", irc, STEP);
        irssi.join_lobby(STEP);
        irssi
    })
    .await
    .expect("irssi joins");

    page.type_line("hello irssi").await;
    let irssi = tokio::task::spawn_blocking(move || {
        irssi.wait_for_line("webber", "hello irssi", STEP);
        irssi.terminal.type_line("hello browser");
        irssi
    })
    .await
    .expect("irssi hears the page");
    page.wait_line("hello browser", Some(irssi::NICK), Some("msg"))
        .await;
    page.screenshot(&out.join("chat-with-irssi.png")).await;
    drop(irssi);
    server.stop();
}
