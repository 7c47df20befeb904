//! The abuse suite's healthy pair: two well-behaved clients in one room
//! whose messages must keep arriving, in order and in time, whatever a case
//! does to the server meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chatroom_core::testing::{Peer, WAIT};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The longest a healthy client's message may take from its sender to its
/// receiver while an attack runs. An idle server delivers in well under a
/// millisecond on loopback and most cases stay under 100 ms; the bound
/// leaves room for a debug build on a loaded 2-core CI machine that also
/// runs the attacking clients (the worst seen, with a fuzzer holding one
/// of the two cores, was 550 ms, while 333 slowloris text clients left the
/// default room at once).
pub(crate) const LATENCY_BOUND: Duration = Duration::from_secs(1);
/// How often the healthy sender speaks: 10 a second, well under the
/// default rate limit (20 a second), so it is never limited itself.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// The healthy sender says at least this many lines, however short a case.
const PROBE_MIN_MESSAGES: u64 = 10;

/// What a healthy pair of clients saw while a case ran.
#[derive(Debug, Default)]
pub(crate) struct ProbeReport {
    sent: u64,
    received: u64,
    /// Every message id the receiver saw in the probe room, in order.
    ids: Vec<u64>,
    max_latency: Duration,
    /// Everything else the receiver saw, with when (since the probe began).
    events: Vec<(Duration, Value)>,
}

impl ProbeReport {
    /// Nothing lost, nothing out of order, nothing late.
    pub(crate) fn assert_healthy(&self, case: &str) {
        println!(
            "{case}: healthy receiver got {}/{} messages, max latency {:?}",
            self.received, self.sent, self.max_latency
        );
        assert!(self.sent > 0, "{case}: the healthy sender sent nothing");
        assert_eq!(self.received, self.sent, "{case}: messages were lost");
        for pair in self.ids.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "{case}: a gap in the room's ids");
        }
        assert!(
            self.max_latency <= LATENCY_BOUND,
            "{case}: a message took {:?} (bound {LATENCY_BOUND:?})",
            self.max_latency
        );
    }

    /// Messages in the probe room from `nick`.
    pub(crate) fn messages_from(&self, nick: &str) -> usize {
        self.events
            .iter()
            .filter(|(_, f)| f["type"] == "message" && f["from"] == nick)
            .count()
    }

    /// When the receiver saw `nick` leave the probe room, and why.
    pub(crate) fn left(&self, nick: &str) -> Option<(Duration, String)> {
        self.events.iter().find_map(|(at, f)| {
            (f["type"] == "left" && f["nick"] == nick)
                .then(|| (*at, f["reason"].as_str().unwrap_or("").to_owned()))
        })
    }
}

/// Two healthy clients in one room: one says a timestamped line every
/// [`PROBE_INTERVAL`], the other checks each arrives, in order, in time.
pub(crate) struct Probe {
    epoch: Instant,
    stop: Arc<AtomicBool>,
    sender: JoinHandle<u64>,
    receiver: JoinHandle<ProbeReport>,
}

impl Probe {
    pub(crate) async fn start(addr: SocketAddr, room: &str) -> Self {
        Self::start_from(addr, room, None).await
    }

    /// As [`Probe::start`], with both clients bound to `source`.
    pub(crate) async fn start_from(addr: SocketAddr, room: &str, source: Option<IpAddr>) -> Self {
        let connect = |nick: &'static str| async move {
            let mut peer = match source {
                Some(ip) => Peer::connect_from(ip, addr)
                    .await
                    .expect("connect from the probe's address"),
                None => Peer::connect(addr).await,
            };
            peer.hello(nick).await;
            peer
        };
        let mut rx = connect("probe-rx").await;
        rx.join(room).await;
        let mut tx = connect("probe-tx").await;
        tx.join(room).await;
        rx.until_type("joined").await;
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));

        let room_name = room.to_owned();
        let stopping = stop.clone();
        let mut writer = tx.into_talker();
        let sender = tokio::spawn(async move {
            let mut sent = 0u64;
            while sent < PROBE_MIN_MESSAGES || !stopping.load(Ordering::Relaxed) {
                let at = epoch.elapsed().as_micros();
                writer
                    .send_json(
                        json!({"type": "say", "room": room_name, "text": format!("probe {sent} {at}")}),
                    )
                    .await;
                sent += 1;
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            writer
                .send_json(json!({"type": "say", "room": room_name, "text": "probe end"}))
                .await;
            sent
        });

        let receiver = tokio::spawn(async move {
            let mut report = ProbeReport::default();
            loop {
                let frame = rx.frame().await;
                let at = epoch.elapsed();
                match frame["type"].as_str() {
                    Some("ping") => rx.send_json(json!({"type": "pong"})).await,
                    Some("message") => {
                        report.ids.push(frame["id"].as_u64().expect("an id"));
                        if frame["from"] != "probe-tx" {
                            report.events.push((at, frame));
                            continue;
                        }
                        let text = frame["text"].as_str().expect("a text");
                        if text == "probe end" {
                            return report;
                        }
                        let sent_at: u64 = text
                            .rsplit(' ')
                            .next()
                            .and_then(|t| t.parse().ok())
                            .expect("a timestamp");
                        let latency = at.saturating_sub(Duration::from_micros(sent_at));
                        report.max_latency = report.max_latency.max(latency);
                        report.received += 1;
                    }
                    _ => report.events.push((at, frame)),
                }
            }
        });
        Self {
            epoch,
            stop,
            sender,
            receiver,
        }
    }

    /// Time since the probe began, on the clock its report uses.
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub(crate) async fn finish(self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.await.expect("probe sender");
        let mut report = tokio::time::timeout(WAIT, self.receiver)
            .await
            .expect("the healthy receiver saw the last message in time")
            .expect("probe receiver");
        report.sent = sent;
        report
    }
}
