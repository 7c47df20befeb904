//! Sessions over the in-memory transport, with tokio's clock paused where
//! the test is about time: no sockets, no sleeping for real.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, LocalBroker, Outage, Pending};
use crate::history::MemoryStore;
use crate::protocol::{self, Nickname, RoomName, ServerFrame, ServerMessage};
use crate::registry::{Published, Room, SessionId};
use crate::server::{AccountsConfig, Server, ServerConfig};
use crate::transport::{Connection, PeerAddr};

use super::super::shared::Shared;

/// A peer on the far end of an in-memory pipe to one session.
struct Peer {
    lines: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    writer: tokio::io::WriteHalf<DuplexStream>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn shared() -> Arc<Shared> {
    Server::new(ServerConfig::default()).unwrap().shared
}

impl Peer {
    /// Opens a session on `shared`, as the engine would for an accepted
    /// connection.
    fn connect(shared: &Arc<Shared>, n: u64) -> Self {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let stop = CancellationToken::new();
        let conn = Connection::from_stream(server, PeerAddr::Memory(n));
        let task = tokio::spawn(super::serve(shared.clone(), conn, stop.clone()));
        let (reader, writer) = tokio::io::split(client);
        Self {
            lines: BufReader::new(reader),
            writer,
            stop,
            task,
        }
    }

    async fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }

    /// Sends `lines` in one write, so the session reads them together.
    async fn send_together(&mut self, lines: &[&str]) {
        let joined: String = lines.iter().map(|line| format!("{line}\n")).collect();
        self.writer.write_all(joined.as_bytes()).await.unwrap();
    }

    /// The next line, or `None` once the session closed the connection.
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = self.lines.read_line(&mut line).await.unwrap();
        (n > 0).then(|| line.trim_end().to_owned())
    }

    async fn frame(&mut self) -> ServerMessage {
        let line = self.line().await.expect("a frame, not a close");
        let frame: ServerFrame = protocol::decode(line.as_bytes()).unwrap();
        frame.message
    }

    /// The next frame that is not someone joining, nor the server's ping.
    async fn reply(&mut self) -> ServerMessage {
        loop {
            match self.frame().await {
                ServerMessage::Joined { .. } | ServerMessage::Ping => {}
                other => return other,
            }
        }
    }

    async fn hello(&mut self, nick: &str) {
        self.send(&format!(
            r#"{{"type":"hello","version":1,"nick":"{nick}"}}"#
        ))
        .await;
        assert!(matches!(self.frame().await, ServerMessage::Welcome { .. }));
    }
}

/// Two native peers past their hellos, both in `den` with its members read.
async fn ann_and_bob_in_den(shared: &Arc<Shared>) -> (Peer, Peer) {
    let mut ann = Peer::connect(shared, 1);
    let mut bob = Peer::connect(shared, 2);
    ann.hello("ann").await;
    bob.hello("bob").await;
    for peer in [&mut ann, &mut bob] {
        peer.send(r#"{"type":"join","room":"den","history":0}"#)
            .await;
        while !matches!(peer.frame().await, ServerMessage::Members { .. }) {}
    }
    (ann, bob)
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_greeted_as_text_once_the_sniff_window_passes() {
    let shared = shared();
    let mut peer = Peer::connect(&shared, 1);
    let start = Instant::now();
    let welcome = peer.line().await.unwrap();
    assert!(welcome.starts_with("* welcome to"), "{welcome}");
    assert!(
        start.elapsed() >= shared.limits.sniff,
        "{:?}",
        start.elapsed()
    );
    // The text client is seated in the default room.
    let joined = peer.line().await.unwrap();
    assert!(
        joined.contains(shared.limits.default_room.as_str()),
        "{joined}"
    );
}

/// A native client that says `hello` only after the sniff window has been
/// greeted in text; its `hello` is refused with a readable line and the
/// connection closed, and the room never sees the JSON as a chat line.
#[tokio::test(start_paused = true)]
async fn a_native_hello_after_the_sniff_window_is_refused_not_said() {
    let shared = shared();
    let mut watcher = Peer::connect(&shared, 1);
    watcher.hello("watcher").await;
    watcher
        .send(r#"{"ref":"j","type":"join","room":"lobby","history":0}"#)
        .await;
    while !matches!(watcher.reply().await, ServerMessage::Members { .. }) {}

    let mut late = Peer::connect(&shared, 2);
    let greeting = late.line().await.unwrap();
    assert!(greeting.starts_with("* welcome to"), "{greeting}");
    late.send(r#"{"type":"hello","version":1,"nick":"late"}"#)
        .await;
    let mut lines = Vec::new();
    while let Some(line) = late.line().await {
        lines.push(line);
    }
    assert!(
        lines.iter().any(|l| l.contains("native hello came after")),
        "{lines:?}"
    );
    assert!(lines.last().unwrap().starts_with("* bye"), "{lines:?}");

    // The watcher sees the late one come and go, and no line from it.
    loop {
        match watcher.frame().await {
            ServerMessage::Left { reason, .. } => {
                assert_eq!(reason.as_deref(), Some("native hello on a text connection"));
                break;
            }
            ServerMessage::Message { text, .. } => panic!("the hello was said: {text}"),
            _ => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_native_peer_without_hello_is_closed_when_the_handshake_times_out() {
    let shared = shared();
    let mut peer = Peer::connect(&shared, 1);
    let start = Instant::now();
    peer.send(r#"{"type":"ping","ref":"p"}"#).await;
    match peer.frame().await {
        ServerMessage::Error { code, .. } => assert_eq!(code.as_str(), "handshake_required"),
        other => panic!("expected an error, got {other:?}"),
    }
    match peer.frame().await {
        ServerMessage::Error { message, .. } => assert_eq!(message, "no hello in time"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(matches!(peer.frame().await, ServerMessage::Bye { .. }));
    assert_eq!(peer.line().await, None);
    let waited = start.elapsed();
    let timeout = shared.limits.handshake_timeout;
    assert!(waited >= timeout && waited < timeout * 2, "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_quiet_native_peer_is_pinged_then_closed_as_idle() {
    let shared = shared();
    let mut peer = Peer::connect(&shared, 1);
    peer.hello("quiet").await;
    let start = Instant::now();
    assert!(matches!(peer.frame().await, ServerMessage::Ping));
    let pinged = start.elapsed();
    assert!(pinged >= shared.limits.ping_interval, "{pinged:?}");
    match peer.frame().await {
        ServerMessage::Error { code, .. } => assert_eq!(code.as_str(), "idle_timeout"),
        other => panic!("expected idle_timeout, got {other:?}"),
    }
    let closed = start.elapsed();
    assert!(closed >= shared.limits.idle_timeout, "{closed:?}");
    assert!(matches!(peer.frame().await, ServerMessage::Bye { .. }));
    assert_eq!(peer.line().await, None);
}

#[tokio::test(start_paused = true)]
async fn a_pong_keeps_a_native_peer_connected() {
    let shared = shared();
    let mut peer = Peer::connect(&shared, 1);
    peer.hello("awake").await;
    for _ in 0..3 {
        assert!(matches!(peer.frame().await, ServerMessage::Ping));
        peer.send(r#"{"type":"pong"}"#).await;
    }
    // Three ping intervals passed, more than the idle timeout: still here.
    peer.send(r#"{"type":"ping","ref":"still"}"#).await;
    assert!(matches!(peer.frame().await, ServerMessage::Pong));
}

#[tokio::test]
async fn replies_follow_request_order_and_a_line_reaches_the_other_member() {
    let shared = shared();
    let (mut ann, mut bob) = ann_and_bob_in_den(&shared).await;
    // Pipelined: a say, a bad line, a say to a room ann is not in, a ping.
    ann.send(r#"{"type":"say","room":"den","text":"one","ref":"1"}"#)
        .await;
    ann.send("{not json").await;
    ann.send(r#"{"type":"say","room":"elsewhere","text":"two","ref":"3"}"#)
        .await;
    ann.send(r#"{"type":"ping","ref":"4"}"#).await;
    assert!(matches!(
        ann.reply().await,
        ServerMessage::Ok { id: Some(_), .. }
    ));
    match ann.reply().await {
        ServerMessage::Error { code, .. } => assert_eq!(code.as_str(), "bad_frame"),
        other => panic!("expected bad_frame, got {other:?}"),
    }
    match ann.reply().await {
        ServerMessage::Error { code, .. } => assert_eq!(code.as_str(), "not_in_room"),
        other => panic!("expected not_in_room, got {other:?}"),
    }
    assert!(matches!(ann.reply().await, ServerMessage::Pong));
    loop {
        match bob.frame().await {
            ServerMessage::Message { from, text, .. } => {
                assert_eq!((from.as_str(), text.as_str()), ("ann", "one"));
                break;
            }
            ServerMessage::Joined { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_says_bye_and_the_nick_is_free_again() {
    let shared = shared();
    let mut ann = Peer::connect(&shared, 1);
    ann.hello("ann").await;
    ann.stop.cancel();
    match ann.frame().await {
        ServerMessage::Bye { reason } => assert_eq!(reason, "server shutting down"),
        other => panic!("expected bye, got {other:?}"),
    }
    assert_eq!(ann.line().await, None);
    (&mut ann.task).await.unwrap();
    let mut again = Peer::connect(&shared, 2);
    again.hello("ann").await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_reads_nothing_is_closed_once_a_write_waits_past_the_write_timeout() {
    let shared = shared();
    let mut dead = Peer::connect(&shared, 1);
    dead.hello("dead").await;
    dead.send(r#"{"type":"join","room":"den","history":0}"#)
        .await;
    while !matches!(dead.frame().await, ServerMessage::Members { .. }) {}
    let mut talker = Peer::connect(&shared, 2);
    talker.hello("talker").await;
    talker
        .send(r#"{"type":"join","room":"den","history":0}"#)
        .await;
    while !matches!(talker.frame().await, ServerMessage::Members { .. }) {}

    // From here `dead` reads nothing: 20 lines of 4,000 bytes fill its
    // pipe, then its queue, and the room holds the rest back (no cut-off).
    let start = Instant::now();
    let text = "x".repeat(4000);
    for _ in 0..20 {
        talker
            .send(&format!(r#"{{"type":"say","room":"den","text":"{text}"}}"#))
            .await;
        assert!(matches!(talker.reply().await, ServerMessage::Ok { .. }));
    }
    let timeout = shared.limits.write_timeout;
    tokio::time::timeout(timeout * 2, &mut dead.task)
        .await
        .expect("the dead peer's session ends by itself")
        .unwrap();
    let waited = start.elapsed();
    assert!(waited >= timeout, "closed after {waited:?}");
    // The talker was never held up, and is told the dead peer left.
    match talker.reply().await {
        ServerMessage::Left { nick, reason, .. } => {
            assert_eq!(nick.as_str(), "dead");
            assert!(reason.unwrap_or_default().contains("timed out"));
        }
        other => panic!("expected left, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_quiet_long_enough_to_give_back_its_read_buffer_reads_whole_lines_after() {
    let shared = shared();
    let (mut ann, mut bob) = ann_and_bob_in_den(&shared).await;
    // Past the quiet time: both sessions dropped their read buffers.
    tokio::time::sleep(super::QUIET_READ_BUFFER * 3).await;
    // A line longer than the first buffer, arriving in two parts with a
    // pause between, then a short one in the same write as the long one's
    // end.
    let long = "x".repeat(3000);
    let line = format!(r#"{{"type":"say","room":"den","text":"{long}","ref":"1"}}"#);
    let (head, tail) = line.split_at(700);
    ann.writer.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    ann.writer.write_all(tail.as_bytes()).await.unwrap();
    ann.send("\n{\"type\":\"say\",\"room\":\"den\",\"text\":\"short\",\"ref\":\"2\"}")
        .await;
    for expected in [long.as_str(), "short"] {
        assert!(matches!(
            ann.reply().await,
            ServerMessage::Ok { id: Some(_), .. }
        ));
        match bob.reply().await {
            ServerMessage::Message { from, text, .. } => {
                assert_eq!((from.as_str(), text.as_str()), ("ann", expected));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// One node whose question to another node about a nick always fails, as
/// when the node holding it does not answer in time.
#[derive(Debug)]
struct Unanswering;

impl Broker for Unanswering {
    fn open(&self, room: &RoomName) -> Pending<Result<(), BrokerError>> {
        LocalBroker.open(room)
    }

    fn publish(
        &self,
        room: &Arc<Room>,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
    ) -> Pending<Result<Published, BrokerError>> {
        LocalBroker.publish(room, sender, from, text, action)
    }

    fn claim(&self, nick: &Nickname) -> Pending<Result<(), BrokerError>> {
        LocalBroker.claim(nick)
    }

    fn release(&self, _nick: &Nickname) {}

    fn ban_mask(&self, _nick: &Nickname) -> Pending<Result<Option<String>, BrokerError>> {
        let cause = "deadline has elapsed".into();
        Pending::ready(Err(Outage::MaskUnanswered(cause).into()))
    }
}

#[tokio::test]
async fn a_ban_whose_holder_cannot_be_asked_bans_the_nick_and_tells_the_operator() {
    let accounts = AccountsConfig::default()
        .with_hash_memory_kib(64)
        .with_hash_iterations(1)
        .with_operators(vec!["op".to_owned()]);
    let config = ServerConfig::default().with_accounts(accounts);
    let store = Arc::new(MemoryStore::new(16));
    let shared = Server::with_broker(config, store, Arc::new(Unanswering))
        .unwrap()
        .shared;
    let mut op = Peer::connect(&shared, 1);
    op.hello("op").await;
    op.send(r#"{"type":"register","password":"operator-password"}"#)
        .await;
    while !matches!(op.frame().await, ServerMessage::LoggedIn { .. }) {}
    op.send(r#"{"type":"join","room":"den","history":0}"#).await;
    while !matches!(op.frame().await, ServerMessage::Members { .. }) {}

    op.send(r#"{"type":"ban","room":"den","mask":"ghost","ref":"b"}"#)
        .await;
    let mut told = None;
    loop {
        match op.frame().await {
            ServerMessage::Notice { text } if text.contains("could be banned") => {
                told = Some(text);
            }
            ServerMessage::Moderated(event) => {
                let text = told.as_deref().expect("the notice comes first");
                assert!(
                    text.starts_with("* only nick:ghost could be banned: "),
                    "{text}"
                );
                assert_eq!(event.target.as_deref(), Some("nick:ghost"));
            }
            ServerMessage::Ok { .. } => break,
            _ => {}
        }
    }
    assert!(told.is_some());
    let rules = shared.moderation.rules("den");
    let masks: Vec<&str> = rules.bans.iter().map(|b| b.mask.as_str()).collect();
    assert_eq!(masks, ["nick:ghost"]);
}

/// One node that counts how `say`s reach it: held for a run, or at once.
#[derive(Debug, Default)]
struct Counting {
    held: std::sync::atomic::AtomicUsize,
    plain: std::sync::atomic::AtomicUsize,
}

impl Broker for Counting {
    fn open(&self, room: &RoomName) -> Pending<Result<(), BrokerError>> {
        LocalBroker.open(room)
    }

    fn publish(
        &self,
        room: &Arc<Room>,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
    ) -> Pending<Result<Published, BrokerError>> {
        self.plain
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LocalBroker.publish(room, sender, from, text, action)
    }

    fn publish_held(
        &self,
        room: &Arc<Room>,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
    ) -> Pending<Result<Published, BrokerError>> {
        self.held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LocalBroker.publish_held(room, sender, from, text, action)
    }

    fn claim(&self, nick: &Nickname) -> Pending<Result<(), BrokerError>> {
        LocalBroker.claim(nick)
    }

    fn release(&self, _nick: &Nickname) {}
}

/// Three `say`s into `den`, sent together to make a run.
const ONE_TWO_THREE: [&str; 3] = [
    r#"{"type":"say","room":"den","text":"one"}"#,
    r#"{"type":"say","room":"den","text":"two"}"#,
    r#"{"type":"say","room":"den","text":"three"}"#,
];

/// `say`s read together are published as a run: each with another line
/// read behind it is held, the last is published at once (and hands the
/// run over); a lone `say` is published at once; a whisper behind a `say`
/// ends the run before it is sent, so the other member sees the room's
/// line first.
#[tokio::test]
async fn says_read_together_are_held_for_a_run_and_the_run_ends_before_anything_else() {
    use std::sync::atomic::Ordering::Relaxed;
    let broker = Arc::new(Counting::default());
    let store = Arc::new(MemoryStore::new(16));
    let shared = Server::with_broker(ServerConfig::default(), store, broker.clone())
        .unwrap()
        .shared;
    let (mut ann, mut bob) = ann_and_bob_in_den(&shared).await;
    let counts = || (broker.held.load(Relaxed), broker.plain.load(Relaxed));

    ann.send_together(&ONE_TWO_THREE).await;
    for _ in 0..3 {
        assert!(matches!(ann.reply().await, ServerMessage::Ok { .. }));
    }
    assert_eq!(counts(), (2, 1));

    ann.send(r#"{"type":"say","room":"den","text":"four"}"#)
        .await;
    assert!(matches!(ann.reply().await, ServerMessage::Ok { .. }));
    assert_eq!(counts(), (2, 2));

    ann.send_together(&[
        r#"{"type":"say","room":"den","text":"five"}"#,
        r#"{"type":"whisper","to":"bob","text":"six"}"#,
    ])
    .await;
    // The say's `ok`, then the whisper's echo and its `ok`.
    let mut oks = 0;
    while oks < 2 {
        match ann.reply().await {
            ServerMessage::Ok { .. } => oks += 1,
            ServerMessage::Private { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(counts(), (3, 2));

    let mut seen = Vec::new();
    while seen.len() < 6 {
        match bob.frame().await {
            ServerMessage::Message { text, .. } | ServerMessage::Private { text, .. } => {
                seen.push(text)
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["one", "two", "three", "four", "five", "six"]);
}

/// A run of `say`s read together reaches the other members as one joined
/// entry of their queues: a native member reads it as message frames and a
/// text member as readable lines, one per message, in order.
#[tokio::test]
async fn a_run_reaches_native_and_text_members_a_message_at_a_time() {
    let shared = shared();
    let (mut ann, mut bob) = ann_and_bob_in_den(&shared).await;
    let mut carol = Peer::connect(&shared, 3);
    carol.send("/join den").await;
    // Bob sees the text client arrive in den.
    loop {
        if let ServerMessage::Joined { room, .. } = bob.frame().await
            && room.as_str() == "den"
        {
            break;
        }
    }

    ann.send_together(&ONE_TWO_THREE).await;
    for _ in 0..3 {
        assert!(matches!(ann.reply().await, ServerMessage::Ok { .. }));
    }
    let mut frames = Vec::new();
    while frames.len() < 3 {
        if let ServerMessage::Message { from, text, .. } = bob.frame().await {
            frames.push(format!("{from}: {text}"));
        }
    }
    assert_eq!(frames, ["ann: one", "ann: two", "ann: three"]);
    let mut lines = Vec::new();
    while lines.len() < 3 {
        let line = carol.line().await.expect("carol is still connected");
        if line.starts_with("<ann>") {
            lines.push(line);
        }
    }
    assert_eq!(lines, ["<ann> one", "<ann> two", "<ann> three"]);
}
