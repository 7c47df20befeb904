//! Receiving a room: one ordered push consumer per room live on this
//! node, delivering each message to the room's local members in stream
//! order, and the checks that restart a stalled feed and drop an idle one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::history::HistoryStore;
use crate::protocol::{MessageId, RoomName};

use super::link::Link;
use super::lock::lock;
use super::outgoing::InFlight;
use super::store::StreamStore;
use super::wire::{Wire, stream_name, stream_not_found, subject};
use crate::broker::{BrokerError, Cause, Outage};

/// How often the feeds that delivered nothing are checked against their
/// streams.
const FEED_CHECK: Duration = Duration::from_secs(2);
/// Most streams asked about in one check; the others take their turn.
const FEED_CHECKS_PER_ROUND: usize = 32;
/// How long a node's feed of a room outlives the room's last local member.
const FEED_LINGER: Duration = Duration::from_secs(10);

/// A room this node receives.
struct Feed {
    room: RoomName,
    /// The last id delivered locally.
    last: watch::Receiver<MessageId>,
    task: JoinHandle<()>,
    /// When a session last opened the room here.
    touched: Instant,
    /// The room's stream, to ask how far it goes.
    stream: stream::Stream,
    /// Where the room's `say`s are published (shared, not copied, per say).
    subject: async_nats::Subject,
    /// Shared with the feed's task.
    signals: FeedSignals,
    /// `last` as of the previous check of the feeds.
    seen: MessageId,
    /// Set, with `starts`, when a check found the stream ahead of `seen`; a
    /// second check that finds it so again, with no new consumer started
    /// meanwhile, kicks the feed.
    suspect: Option<(MessageId, u64)>,
}

/// What the feed checker and a feed's task share.
#[derive(Clone, Default)]
struct FeedSignals {
    /// Tells the feed to start its consumer again.
    kick: Arc<Notify>,
    /// How many consumers the feed has started.
    starts: Arc<AtomicU64>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The rooms this node receives.
pub(super) struct Feeds {
    link: Arc<Link>,
    store: Arc<StreamStore>,
    in_flight: Arc<InFlight>,
    /// Room key → its feed.
    rooms: Mutex<HashMap<String, Feed>>,
}

impl Feeds {
    /// No room received yet; each is started by [`Feeds::open`].
    pub(super) fn new(link: Arc<Link>, store: Arc<StreamStore>, in_flight: Arc<InFlight>) -> Self {
        Self {
            link,
            store,
            in_flight,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// Marks `room` as opened now if it is received here already; false
    /// when it is not.
    pub(super) fn touch(&self, room: &RoomName) -> bool {
        match lock(&self.rooms).get_mut(&room.key()) {
            Some(feed) => {
                feed.touched = Instant::now();
                true
            }
            None => false,
        }
    }

    /// How far this node has delivered `room`, if it receives it.
    pub(super) fn delivered(&self, room: &RoomName) -> Option<watch::Receiver<MessageId>> {
        lock(&self.rooms).get(&room.key()).map(|f| f.last.clone())
    }

    /// Where `room`'s `say`s are published, with how far this node has
    /// delivered it, if it receives it.
    pub(super) fn route(
        &self,
        room: &RoomName,
    ) -> Option<(watch::Receiver<MessageId>, async_nats::Subject)> {
        lock(&self.rooms)
            .get(&room.key())
            .map(|f| (f.last.clone(), f.subject.clone()))
    }

    /// Stops receiving every room.
    pub(super) fn clear(&self) {
        lock(&self.rooms).clear();
    }

    /// Starts receiving `room` here unless it is received already; its
    /// stream is made when `create` is set, else a room without one is
    /// left alone.
    pub(super) async fn open(
        self: Arc<Self>,
        room: RoomName,
        create: bool,
    ) -> Result<(), BrokerError> {
        self.link.connected()?;
        let key = room.key();
        let retention = self.link.config.retention;
        let config = stream::Config {
            name: stream_name(&key),
            subjects: vec![subject(&key)],
            max_messages: i64::try_from(retention.max_messages).unwrap_or(i64::MAX),
            max_age: retention
                .max_age_ms
                .map_or(Duration::ZERO, Duration::from_millis),
            storage: stream::StorageType::File,
            allow_direct: true,
            num_replicas: self.link.config.replicas,
            ..Default::default()
        };
        let wait = self.link.config.request_timeout;
        let fail = |e: Cause| BrokerError::from(Outage::RoomStream(e));
        let stream = if create {
            timeout(wait, self.link.js.get_or_create_stream(config))
                .await
                .map_err(|e| fail(e.into()))?
                .map_err(|e| fail(e.into()))?
        } else {
            match timeout(wait, self.link.js.get_stream(config.name)).await {
                Err(e) => return Err(fail(e.into())),
                Ok(Ok(stream)) => stream,
                // Never made on any node: nothing to receive, and the
                // registry finds no such room.
                Ok(Err(e)) if stream_not_found(&e) => return Ok(()),
                Ok(Err(e)) => return Err(fail(e.into())),
            }
        };
        let last = stream.cached_info().state.last_sequence;
        let mut feeds = lock(&self.rooms);
        if let Some(feed) = feeds.get_mut(&key) {
            feed.touched = Instant::now();
            return Ok(());
        }
        self.store.note(&key, last);
        let known = self.store.last_id(&room).unwrap_or(last);
        let (tx, rx) = watch::channel(known);
        let room_subject = subject(&key).into();
        let signals = FeedSignals::default();
        let task = tokio::spawn(self.clone().consume(
            room.clone(),
            stream.clone(),
            known + 1,
            tx,
            signals.clone(),
        ));
        feeds.insert(
            key,
            Feed {
                room,
                last: rx,
                task,
                touched: Instant::now(),
                stream,
                subject: room_subject,
                signals,
                seen: known,
                suspect: None,
            },
        );
        Ok(())
    }

    /// Receives the room's stream from `next` on, for as long as the feed
    /// lives, starting over where it stopped after any interruption.
    async fn consume(
        self: Arc<Self>,
        room: RoomName,
        stream: stream::Stream,
        mut next: MessageId,
        delivered: watch::Sender<MessageId>,
        signals: FeedSignals,
    ) {
        loop {
            match self
                .consume_from(&room, &stream, &mut next, &delivered, &signals)
                .await
            {
                Ok(()) => tracing::warn!(%room, "room feed ended; starting it again"),
                Err(e) => {
                    tracing::warn!(%room, error = %e, "room feed interrupted; starting it again")
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn consume_from(
        &self,
        room: &RoomName,
        stream: &stream::Stream,
        next: &mut MessageId,
        delivered: &watch::Sender<MessageId>,
        signals: &FeedSignals,
    ) -> Result<(), async_nats::Error> {
        let key = room.key();
        let mut connections = self.link.connections.clone();
        connections.mark_unchanged();
        let consumer = stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: self.link.client.new_inbox(),
                filter_subject: subject(&key),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: *next,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        signals.starts.fetch_add(1, Ordering::Relaxed);
        loop {
            let message = tokio::select! {
                message = messages.next() => match message {
                    Some(message) => message?,
                    None => break,
                },
                changed = connections.changed() => {
                    if changed.is_ok() {
                        tracing::info!(%room, "reconnected to NATS; starting the room feed again");
                    }
                    break;
                }
                () = signals.kick.notified() => {
                    // Its consumer lived on a NATS server that died: the
                    // client library would notice only after 10 s of
                    // missed heartbeats, and back off after that.
                    tracing::warn!(%room, "room feed stalled behind its stream; starting it again");
                    break;
                }
            };
            let seq = message.info()?.stream_sequence;
            if seq < *next {
                continue;
            }
            self.apply(room, &key, seq, &message.payload);
            *next = seq + 1;
            delivered.send_replace(seq);
        }
        Ok(())
    }

    /// Delivers message `seq` of `room` to its local members.
    fn apply(&self, room: &RoomName, key: &str, seq: MessageId, payload: &[u8]) {
        // Known before the live room is looked up: a room made live after
        // this point starts from here, one made live before gets it below.
        self.store.note(key, seq);
        let wire = match serde_json::from_slice::<Wire>(payload) {
            Ok(wire) => wire,
            Err(e) => {
                tracing::warn!(%room, seq, error = %e, "skipped a malformed message");
                return;
            }
        };
        let except = if wire.node == self.link.instance {
            self.in_flight.take(wire.token)
        } else {
            None
        };
        let live = self.link.registry.get().and_then(|r| r.room(room));
        if let Some(live) = live {
            live.deliver_message(seq, wire.into_entry(seq), except);
        }
    }
}

impl Feeds {
    /// Kicks the feeds that stalled: delivered nothing since the last check
    /// while their stream went further, twice in a row. Only feeds that
    /// delivered nothing are asked about, at most
    /// [`FEED_CHECKS_PER_ROUND`] a round, taking turns.
    pub(super) async fn watch(self: Arc<Self>) {
        let mut turn = 0usize;
        loop {
            tokio::time::sleep(FEED_CHECK).await;
            if self.link.connected().is_err() {
                continue;
            }
            let mut quiet: Vec<(String, stream::Stream, (MessageId, u64))> = {
                let mut feeds = lock(&self.rooms);
                feeds
                    .iter_mut()
                    .filter_map(|(key, feed)| {
                        let now = *feed.last.borrow();
                        if now != feed.seen {
                            feed.seen = now;
                            feed.suspect = None;
                            return None;
                        }
                        let starts = feed.signals.starts.load(Ordering::Relaxed);
                        Some((key.clone(), feed.stream.clone(), (now, starts)))
                    })
                    .collect()
            };
            if quiet.is_empty() {
                continue;
            }
            quiet.sort_by(|a, b| a.0.cmp(&b.0));
            let start = turn % quiet.len();
            quiet.rotate_left(start);
            quiet.truncate(FEED_CHECKS_PER_ROUND);
            turn = turn.wrapping_add(quiet.len());
            for (key, mut stream, state) in quiet {
                let info = timeout(self.link.config.request_timeout, stream.info()).await;
                let Ok(Ok(info)) = info else {
                    continue;
                };
                let behind = info.state.last_sequence > state.0;
                if let Some(feed) = lock(&self.rooms).get_mut(&key) {
                    match feed.suspect {
                        _ if !behind => feed.suspect = None,
                        Some(before) if before == state => {
                            feed.signals.kick.notify_waiters();
                            feed.suspect = None;
                        }
                        _ => feed.suspect = Some(state),
                    }
                }
            }
        }
    }

    /// Stops receiving rooms that have had no local member for a while.
    pub(super) async fn drop_idle(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let Some(registry) = self.link.registry.get() else {
                continue;
            };
            let mut feeds = lock(&self.rooms);
            feeds.retain(|_, feed| {
                feed.touched.elapsed() < FEED_LINGER || registry.room(&feed.room).is_some()
            });
        }
    }
}
