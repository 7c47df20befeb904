//! The cluster broker: several nodes share one room space through NATS
//! JetStream.
//!
//! - **One stream per room**, `CHATROOM_<room key>`, with the one subject
//!   `chatroom.room.<room key>`. A `say` is published there; the stream
//!   sequence JetStream gives it is the message's id, so ids are the room's
//!   consecutive numbers and the stream's order is the room's one order.
//!   Retention is the stream's limits (`max_msgs`, `max_age`), which remove
//!   the oldest first and never renumber.
//! - **One ordered push consumer per room live on a node**, started at the
//!   room's last id + 1 when a session first opens the room there. Each
//!   message is delivered through [`Room::deliver_message`] (under the
//!   room's lock, to every local member but its sender), so every node
//!   fans a room out in stream order. A node's feed of a room is dropped a
//!   while after the room has no local member.
//! - **History is the stream**: [`StreamStore`] answers pages by reading
//!   the stream by sequence, so a client resumes on any node.
//! - **Nicks** are claimed in the key-value bucket `chatroom_nicks` with a
//!   create-only put: the first node wins, every other is refused. Entries
//!   expire after the lease (`max_age` of the bucket); the owning node
//!   renews each claim every third of it, so a dead node's nicks free
//!   themselves.
//! - **Presence** (who is in which room on the other nodes) travels on core
//!   subjects as numbered changes with heartbeats (module `presence`);
//!   `who`, `rooms` and the `members` reply of a join span every node.
//! - **Losing NATS** is told to this node's clients as a `notice`, and so
//!   is its return; meanwhile what needs NATS is refused with an error.

mod connect;
mod outgoing;
mod presence;
mod whisper;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::history::{HistoryError, HistoryStore, Page, PageQuery, Retention};
use crate::protocol::{
    HistoryEntry, MessageId, Nickname, RoomInfo, RoomName, ServerMessage, Timestamp,
};
use crate::registry::{
    CutReason, Outbound, Published, RegistryError, Room, RoomRegistry, SessionId, now_ms,
};

use super::presence::Change;
use presence::Presence;

use super::{Broker, BrokerError, Pending};

pub use connect::{ClientCert, NatsAuth, NatsTls, redact_url};

/// The key-value bucket that holds nickname claims.
pub const NICK_BUCKET: &str = "chatroom_nicks";
/// The longest a cursor from another node waits for this node's feed.
const CATCH_UP: Duration = Duration::from_secs(2);
/// The longest a stopping node waits to tell the cluster its last changes.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// How often the feeds that delivered nothing are checked against their
/// streams.
const FEED_CHECK: Duration = Duration::from_secs(2);
/// Most streams asked about in one check; the others take their turn.
const FEED_CHECKS_PER_ROUND: usize = 32;
/// How long a node's feed of a room outlives the room's last local member.
const FEED_LINGER: Duration = Duration::from_secs(10);

/// How a node joins the cluster. Its `Debug` never shows a secret.
#[derive(Clone)]
pub struct NatsConfig {
    /// NATS server URLs (`nats://host:port`); the client fails over
    /// between them.
    pub servers: Vec<String>,
    /// This node's name, in logs and in nick claims.
    pub node: String,
    /// How long a nick claim lives without renewal (a dead node's nicks
    /// are free after this).
    pub nick_lease: Duration,
    /// The longest NATS may take to answer a request.
    pub request_timeout: Duration,
    /// Retention of each room's stream.
    pub retention: Retention,
    /// Copies of each stream the node creates (rooms, nick claims) kept by
    /// a NATS cluster: 1 on a single server, 3 to survive losing one.
    pub replicas: usize,
    /// How often the node says it is alive; a node silent for three of
    /// these is taken as gone, and its members leave.
    pub presence_interval: Duration,
    /// The credentials this node shows NATS.
    pub auth: NatsAuth,
    /// TLS towards NATS.
    pub tls: NatsTls,
}

impl NatsConfig {
    /// Defaults for `servers` and `node`: a 15 s nick lease, a 5 s request
    /// timeout, the default retention and one replica per stream.
    pub fn new(servers: Vec<String>, node: impl Into<String>) -> Self {
        Self {
            servers,
            node: node.into(),
            nick_lease: Duration::from_secs(15),
            request_timeout: Duration::from_secs(5),
            retention: Retention::default(),
            replicas: 1,
            presence_interval: Duration::from_secs(1),
            auth: NatsAuth::None,
            tls: NatsTls::default(),
        }
    }
}

/// What a nick's entry in the bucket holds: who claimed it, and where a
/// whisper to it goes.
#[derive(Serialize, Deserialize)]
struct Claim {
    node: String,
    instance: String,
}

/// What a `say` looks like in a room's stream.
#[derive(Serialize, Deserialize)]
struct Wire {
    from: Nickname,
    text: String,
    ts: Timestamp,
    action: bool,
    /// The publishing node's instance, so it can leave the sender out.
    node: String,
    /// The publish on that node, matched to the sending session.
    token: u64,
}

fn stream_name(room_key: &str) -> String {
    format!("CHATROOM_{room_key}")
}

fn subject(room_key: &str) -> String {
    format!("chatroom.room.{room_key}")
}

fn stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

fn unavailable(what: &str, e: impl fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("{what}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tells every client of this node, once the registry is attached.
fn notify(registry: &OnceLock<RoomRegistry>, text: &str) {
    if let Some(registry) = registry.get() {
        registry.broadcast_all(&Outbound::message(ServerMessage::Notice {
            text: text.to_owned(),
        }));
    }
}

/// A history store that reads the rooms' streams: the cluster's shared
/// history. `append` does nothing (the stream has the message already),
/// `sweep` does nothing (the stream's limits apply retention), `last_id`
/// answers from what this node has seen of each room.
pub struct StreamStore {
    js: jetstream::Context,
    runtime: tokio::runtime::Handle,
    request_timeout: Duration,
    /// Room key → the last id this node knows of.
    last: Mutex<HashMap<String, MessageId>>,
}

impl fmt::Debug for StreamStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamStore").finish_non_exhaustive()
    }
}

impl StreamStore {
    /// Raises the room's last known id to `id`.
    fn note(&self, key: &str, id: MessageId) {
        let mut last = lock(&self.last);
        let known = last.entry(key.to_owned()).or_insert(0);
        *known = (*known).max(id);
    }

    async fn read(&self, room: &RoomName, query: PageQuery) -> Result<Page, HistoryError> {
        let key = room.key();
        let fail = |e: &dyn fmt::Display| HistoryError::Unavailable(e.to_string());
        let stream = match self.js.get_stream(stream_name(&key)).await {
            Ok(stream) => stream,
            Err(e) if stream_not_found(&e) => return Ok(Page::default()),
            Err(e) => return Err(fail(&e)),
        };
        let state = stream.cached_info().state.clone();
        if state.messages == 0 {
            return Ok(Page::default());
        }
        let (first, last) = (state.first_sequence, state.last_sequence);
        let (from, to, more) = match query {
            PageQuery::After { after, limit } => {
                let from = (after + 1).max(first);
                let to = from.saturating_add(limit as u64 - 1).min(last);
                (from, to, to < last)
            }
            PageQuery::Before { before, limit } => {
                let to = before.map_or(last, |b| b.saturating_sub(1)).min(last);
                let from = to.saturating_sub(limit as u64 - 1).max(first);
                (from, to, from > first)
            }
        };
        let mut messages = Vec::new();
        for seq in from..=to {
            match stream.get_raw_message(seq).await {
                Ok(raw) => {
                    if let Ok(wire) = serde_json::from_slice::<Wire>(&raw.payload) {
                        messages.push(HistoryEntry {
                            id: seq,
                            from: wire.from,
                            text: wire.text,
                            ts: wire.ts,
                            action: wire.action,
                        });
                    }
                }
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(fail(&e)),
            }
        }
        Ok(Page { messages, more })
    }
}

impl HistoryStore for StreamStore {
    fn last_id(&self, room: &RoomName) -> Option<MessageId> {
        lock(&self.last).get(&room.key()).copied()
    }

    fn append(&self, _room: &RoomName, _entry: HistoryEntry) {}

    fn page(&self, room: &RoomName, query: PageQuery) -> Result<Page, HistoryError> {
        // Called on a blocking thread, never on the runtime's own.
        self.runtime
            .block_on(timeout(self.request_timeout, self.read(room, query)))
            .unwrap_or_else(|_| Err(HistoryError::Unavailable("NATS did not answer".to_owned())))
    }

    fn sweep(&self, _retention: Retention, _now: Timestamp) -> Result<u64, HistoryError> {
        Ok(0)
    }

    fn flush(&self) -> Result<(), HistoryError> {
        Ok(())
    }
}

/// A `say` queued for its room's stream, not yet acknowledged.
struct Submitted {
    room: RoomName,
    token: u64,
    ts: Timestamp,
    /// The room's feed here: how far it has delivered.
    delivered: watch::Receiver<MessageId>,
    sent: oneshot::Receiver<Result<async_nats::jetstream::context::PublishAckFuture, String>>,
}

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

struct Inner {
    config: NatsConfig,
    /// This process's identity in the stream (unique even if two nodes
    /// share a name).
    instance: String,
    client: async_nats::Client,
    js: jetstream::Context,
    nicks: kv::Store,
    store: Arc<StreamStore>,
    registry: Arc<OnceLock<RoomRegistry>>,
    presence: Arc<Presence>,
    feeds: Mutex<HashMap<String, Feed>>,
    /// Nick key → revision of this node's claim.
    claims: Mutex<HashMap<String, u64>>,
    /// Publishes in flight: token → sending session.
    outgoing: Mutex<HashMap<u64, SessionId>>,
    next_token: AtomicU64,
    /// Nick releases under way.
    releasing: AtomicUsize,
    /// The queue of `say`s to JetStream (see `outgoing`).
    publisher: mpsc::Sender<outgoing::Outgoing>,
    /// Changed at every (re)connection to NATS.
    connections: watch::Receiver<Connections>,
}

/// The node's connections to NATS so far.
#[derive(Debug, Clone, Copy)]
struct Connections {
    /// How many times it connected (the first time included).
    count: u64,
    /// When it last connected.
    since: std::time::Instant,
}

/// The NATS JetStream broker. See the module docs.
pub struct NatsBroker {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("node", &self.inner.config.node)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        lock(&self.inner.feeds).clear();
    }
}

impl NatsBroker {
    /// Connects to NATS, makes sure the nick bucket exists, and returns the
    /// broker with the history store that reads the rooms' streams. Must be
    /// called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when NATS cannot be reached or has no
    /// JetStream.
    pub async fn connect(config: NatsConfig) -> Result<(Arc<Self>, Arc<StreamStore>), BrokerError> {
        let node = config.node.clone();
        // Counts connections, so that room feeds start their consumers
        // again after a reconnection (perhaps to another server of a NATS
        // cluster, where the old ephemeral consumer does not exist).
        let (connections_tx, connections) = watch::channel(Connections {
            count: 0,
            since: std::time::Instant::now(),
        });
        let (options, servers) = connect::secure(async_nats::ConnectOptions::new(), &config)?;
        // Set by `attach`; the connection's events are told to its clients.
        let registry = Arc::new(OnceLock::<RoomRegistry>::new());
        let told = registry.clone();
        let options = options
            .name(format!("chatroom {node}"))
            .connection_timeout(config.request_timeout)
            .max_reconnects(None)
            .event_callback(move |event| {
                let node = node.clone();
                let connections_tx = connections_tx.clone();
                let told = told.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(%node, "connected to NATS");
                            connections_tx.send_modify(|c| {
                                c.count += 1;
                                c.since = std::time::Instant::now();
                            });
                            if connections_tx.borrow().count > 1 {
                                notify(&told, "this server is connected to the cluster again");
                            }
                        }
                        async_nats::Event::Disconnected => {
                            tracing::error!(%node, "lost the NATS connection; reconnecting");
                            notify(
                                &told,
                                "this server lost its connection to the cluster; \
                                 messages cannot be sent until it is back",
                            );
                        }
                        // Each failed reconnection attempt; the
                        // disconnection itself was logged above.
                        async_nats::Event::ClientError(e) => {
                            tracing::debug!(%node, error = %e, "NATS client error");
                        }
                        other => tracing::warn!(%node, event = %other, "NATS event"),
                    }
                }
            });
        let client = options
            .connect(servers.as_slice())
            .await
            .map_err(|e| unavailable("cannot connect to NATS", e))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.request_timeout);
        // The bucket's stream is made by hand, as a key-value bucket's
        // stream looks: `create_key_value` first asks for the account's
        // info, whose reply from a 2.9 server this client cannot read.
        let bucket = stream::Config {
            name: format!("KV_{NICK_BUCKET}"),
            description: Some("chatroom nickname claims".to_owned()),
            subjects: vec![format!("$KV.{NICK_BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: config.nick_lease,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: config.replicas,
            ..Default::default()
        };
        js.get_or_create_stream(bucket)
            .await
            .map_err(|e| unavailable("cannot open the nick bucket", e))?;
        let nicks = js
            .get_key_value(NICK_BUCKET)
            .await
            .map_err(|e| unavailable("cannot open the nick bucket", e))?;
        let store = Arc::new(StreamStore {
            js: js.clone(),
            runtime: tokio::runtime::Handle::current(),
            request_timeout: config.request_timeout,
            last: Mutex::new(HashMap::new()),
        });
        // The inbox's unique token: a name safe in a subject.
        let inbox = client.new_inbox();
        let instance = inbox.rsplit('.').next().unwrap_or(&inbox).to_owned();
        let (presence, presence_tasks) = Presence::start(
            client.clone(),
            instance.clone(),
            config.presence_interval,
            config.request_timeout,
            registry.clone(),
        )
        .await
        .map_err(|e| unavailable("cannot subscribe to presence", e))?;
        let (publisher, publishing) = mpsc::channel(outgoing::QUEUE);
        let inner = Arc::new(Inner {
            instance,
            config,
            client,
            js,
            nicks,
            store: store.clone(),
            registry,
            presence,
            feeds: Mutex::new(HashMap::new()),
            claims: Mutex::new(HashMap::new()),
            outgoing: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(0),
            releasing: AtomicUsize::new(0),
            publisher,
            connections,
        });
        let mut tasks = vec![
            tokio::spawn(outgoing::send_in_order(inner.js.clone(), publishing)),
            tokio::spawn(inner.clone().renew_claims()),
            tokio::spawn(inner.clone().drop_idle_feeds()),
            tokio::spawn(inner.clone().watch_feeds()),
        ];
        tasks.extend(presence_tasks);
        let whispers = inner
            .client
            .subscribe(whisper::subject(&inner.instance))
            .await
            .map_err(|e| unavailable("cannot subscribe to whispers", e))?;
        tasks.push(tokio::spawn(whisper::serve(
            inner.client.clone(),
            whispers,
            inner.registry.clone(),
        )));
        Ok((Arc::new(Self { inner, tasks }), store))
    }
}

impl NatsBroker {
    /// Starts receiving `room` here unless it is received already; its
    /// stream is made when `create` is set, else a room without one is
    /// left alone.
    fn open_feed(&self, room: &RoomName, create: bool) -> Pending<Result<(), BrokerError>> {
        if let Some(feed) = lock(&self.inner.feeds).get_mut(&room.key()) {
            feed.touched = Instant::now();
            return Pending::ready(Ok(()));
        }
        let inner = self.inner.clone();
        let room = room.clone();
        Pending::waiting(async move { inner.open(room, create).await })
    }
}

impl Broker for NatsBroker {
    fn attach(&self, registry: &RoomRegistry) {
        let _ = self.inner.registry.set(registry.clone());
    }

    fn open(&self, room: &RoomName) -> Pending<Result<(), BrokerError>> {
        self.open_feed(room, true)
    }

    fn open_existing(&self, room: &RoomName) -> Pending<Result<(), BrokerError>> {
        self.open_feed(room, false)
    }

    fn publish(
        &self,
        room: &Arc<Room>,
        sender: SessionId,
        from: &Nickname,
        text: String,
        action: bool,
    ) -> Pending<Result<Published, BrokerError>> {
        let room = room.name().clone();
        match self.inner.submit(room, sender, from.clone(), text, action) {
            Ok(submitted) => {
                let inner = self.inner.clone();
                Pending::waiting(async move { inner.settle(submitted).await })
            }
            Err(e) => Pending::ready(Err(e)),
        }
    }

    fn catch_up(&self, room: &RoomName, id: MessageId) -> Pending<()> {
        let Some(mut delivered) = lock(&self.inner.feeds)
            .get(&room.key())
            .map(|f| f.last.clone())
        else {
            return Pending::ready(());
        };
        Pending::waiting(async move {
            let _ = timeout(CATCH_UP, delivered.wait_for(|last| *last >= id)).await;
        })
    }

    fn claim(&self, nick: &Nickname) -> Pending<Result<(), BrokerError>> {
        let inner = self.inner.clone();
        let nick = nick.clone();
        Pending::waiting(async move { inner.claim(nick).await })
    }

    fn joined(&self, room: &RoomName, nick: &Nickname) {
        self.inner.presence.record(Change::Joined {
            room: room.clone(),
            nick: nick.clone(),
        });
    }

    fn left(&self, room: &RoomName, nick: &Nickname, reason: Option<&str>) {
        self.inner.presence.record(Change::Left {
            room: room.clone(),
            nick: nick.clone(),
            reason: reason.map(str::to_owned),
        });
    }

    fn renamed(&self, old: &Nickname, new: &Nickname) {
        self.inner.presence.record(Change::Renamed {
            old: old.clone(),
            new: new.clone(),
        });
    }

    fn whisper(
        &self,
        from: &Nickname,
        to: &Nickname,
        text: String,
        ts: Timestamp,
    ) -> Pending<Result<Nickname, BrokerError>> {
        let inner = self.inner.clone();
        let (from, to) = (from.clone(), to.clone());
        Pending::waiting(async move { inner.whisper(from, to, text, ts).await })
    }

    fn shutdown(&self) -> Pending<()> {
        let inner = self.inner.clone();
        Pending::waiting(async move {
            if timeout(SHUTDOWN_FLUSH, inner.send_last_words())
                .await
                .is_err()
            {
                tracing::warn!("could not tell the cluster everything before stopping");
            }
        })
    }

    fn remote_members(&self, room: &RoomName) -> Vec<Nickname> {
        self.inner.presence.members(room)
    }

    fn remote_rooms(&self) -> Vec<RoomInfo> {
        self.inner.presence.rooms()
    }

    fn release(&self, nick: &Nickname) {
        let key = nick.key();
        let Some(revision) = lock(&self.inner.claims).remove(&key) else {
            return;
        };
        let inner = self.inner.clone();
        inner.releasing.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            // Only this node's own claim: one taken over by another node
            // since (this node was stalled) is theirs to keep.
            let delete = inner.nicks.delete_expect_revision(&key, Some(revision));
            let deleted = timeout(inner.config.request_timeout, delete).await;
            if !matches!(deleted, Ok(Ok(()))) {
                tracing::warn!(nick = %key, "could not release a nick claim; it expires with its lease");
            }
            inner.releasing.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

impl Inner {
    async fn open(self: Arc<Self>, room: RoomName, create: bool) -> Result<(), BrokerError> {
        self.connected()?;
        let key = room.key();
        let retention = self.config.retention;
        let config = stream::Config {
            name: stream_name(&key),
            subjects: vec![subject(&key)],
            max_messages: i64::try_from(retention.max_messages).unwrap_or(i64::MAX),
            max_age: retention
                .max_age_ms
                .map_or(Duration::ZERO, Duration::from_millis),
            storage: stream::StorageType::File,
            allow_direct: true,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        let wait = self.config.request_timeout;
        let fail = |e: &dyn fmt::Display| unavailable("cannot open the room's stream", e);
        let stream = if create {
            timeout(wait, self.js.get_or_create_stream(config))
                .await
                .map_err(|e| fail(&e))?
                .map_err(|e| fail(&e))?
        } else {
            match timeout(wait, self.js.get_stream(config.name)).await {
                Err(e) => return Err(fail(&e)),
                Ok(Ok(stream)) => stream,
                // Never made on any node: nothing to receive, and the
                // registry finds no such room.
                Ok(Err(e)) if stream_not_found(&e) => return Ok(()),
                Ok(Err(e)) => return Err(fail(&e)),
            }
        };
        let last = stream.cached_info().state.last_sequence;
        let mut feeds = lock(&self.feeds);
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
        let mut connections = self.connections.clone();
        connections.mark_unchanged();
        let consumer = stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
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
        let except = if wire.node == self.instance {
            lock(&self.outgoing).remove(&wire.token)
        } else {
            None
        };
        let live = self.registry.get().and_then(|r| r.room(room));
        if let Some(live) = live {
            let entry = HistoryEntry {
                id: seq,
                from: wire.from,
                text: wire.text,
                ts: wire.ts,
                action: wire.action,
            };
            live.deliver_message(seq, entry, except);
        }
    }

    /// Checks and queues a `say` for its room's stream, at once, so that
    /// the `say`s of a session leave in the order it asked for them.
    fn submit(
        &self,
        room: RoomName,
        sender: SessionId,
        from: Nickname,
        text: String,
        action: bool,
    ) -> Result<Submitted, BrokerError> {
        let key = room.key();
        let feed = lock(&self.feeds)
            .get(&key)
            .map(|f| (f.last.clone(), f.subject.clone()));
        let Some((delivered, subject)) = feed else {
            return Err(BrokerError::Unavailable(format!(
                "room {room} is not open on this node; join it again"
            )));
        };
        // While disconnected the client would buffer the publish and send
        // it on reconnection, after the sender was told it failed.
        self.connected()?;
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let ts = now_ms();
        let wire = Wire {
            from,
            text,
            ts,
            action,
            node: self.instance.clone(),
            token,
        };
        let payload = serde_json::to_vec(&wire).expect("a message serializes");
        let (sent_tx, sent) = oneshot::channel();
        lock(&self.outgoing).insert(token, sender);
        let queued = self.publisher.try_send(outgoing::Outgoing {
            subject,
            payload: payload.into(),
            sent: sent_tx,
        });
        if queued.is_err() {
            lock(&self.outgoing).remove(&token);
            return Err(BrokerError::Unavailable(
                "too many messages waiting for NATS; nothing was sent".to_owned(),
            ));
        }
        Ok(Submitted {
            room,
            token,
            ts,
            delivered,
            sent,
        })
    }

    /// Waits for a submitted `say`'s acknowledgement (its id), then until
    /// this node has delivered the room up to it.
    async fn settle(self: Arc<Self>, submitted: Submitted) -> Result<Published, BrokerError> {
        let Submitted {
            room,
            token,
            ts,
            mut delivered,
            sent,
        } = submitted;
        let acked = timeout(self.config.request_timeout, async {
            let ack = sent
                .await
                .map_err(|_| "the node is stopping".to_owned())??;
            ack.await.map_err(|e| e.to_string())
        })
        .await;
        let ack = match acked {
            Ok(Ok(ack)) => ack,
            Ok(Err(e)) => {
                lock(&self.outgoing).remove(&token);
                return Err(BrokerError::Unavailable(format!(
                    "the message was not sent: {e}"
                )));
            }
            Err(_) => {
                lock(&self.outgoing).remove(&token);
                return Err(BrokerError::Unavailable(
                    "NATS did not acknowledge the message in time; it may not have been sent"
                        .to_owned(),
                ));
            }
        };
        // The `ok` must not overtake a message with a lower id: wait until
        // this node has delivered up to this one.
        let caught_up = timeout(
            self.config.request_timeout,
            delivered.wait_for(|last| *last >= ack.sequence),
        )
        .await;
        if matches!(caught_up, Ok(Ok(_))) {
            lock(&self.outgoing).remove(&token);
        } else {
            // The feed delivers it later (after a NATS failover, say): the
            // token stays so that the sender is still left out then.
            tracing::warn!(%room, id = ack.sequence, "message committed but not yet delivered here");
        }
        Ok(Published {
            id: ack.sequence,
            ts,
            delivered: 0,
            slow: 0,
        })
    }

    /// Waits until the last bulletins and nick releases are handed to the
    /// client, then until the client has written them.
    async fn send_last_words(&self) {
        while self.presence.unsent() > 0 || self.releasing.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Err(e) = self.client.flush().await {
            tracing::debug!(error = %e, "could not flush the NATS connection");
        }
    }

    /// Refuses at once while NATS is unreachable.
    fn connected(&self) -> Result<(), BrokerError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(BrokerError::Unavailable(
                "no connection to NATS; nothing was sent".to_owned(),
            )),
        }
    }

    async fn claim(self: Arc<Self>, nick: Nickname) -> Result<(), BrokerError> {
        self.connected()?;
        let key = nick.key();
        let created = timeout(
            self.config.request_timeout,
            self.nicks.create(&key, self.claim_value()),
        )
        .await
        .map_err(|e| unavailable("cannot claim the nick", e))?;
        let revision = match created {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => self
                .take_over(&key)
                .await
                .ok_or(BrokerError::NickTaken(nick))?,
            Err(e) => return Err(unavailable("cannot claim the nick", e)),
        };
        lock(&self.claims).insert(key, revision);
        Ok(())
    }

    /// Takes a nick over from the node that claimed it when that node has
    /// stopped answering (no heartbeat for three intervals), without
    /// waiting for the claim's lease to run out: a compare-and-set on the
    /// claim's revision, so of several nodes trying at once one wins.
    /// Only a node that has heard the cluster long enough to know who is
    /// alive does this.
    async fn take_over(&self, key: &str) -> Option<u64> {
        if !self
            .presence
            .knows_the_cluster(self.connections.borrow().since)
        {
            return None;
        }
        let wait = self.config.request_timeout;
        let entry = timeout(wait, self.nicks.entry(key)).await.ok()?.ok()??;
        if entry.operation != kv::Operation::Put {
            return None;
        }
        let claim = serde_json::from_slice::<Claim>(&entry.value).ok()?;
        if claim.instance == self.instance || self.presence.is_alive(&claim.instance) {
            return None;
        }
        let updated = timeout(
            wait,
            self.nicks.update(key, self.claim_value(), entry.revision),
        );
        let revision = updated.await.ok()?.ok()?;
        tracing::info!(nick = %key, from = %claim.node, "took over the nick of a node that stopped answering");
        Some(revision)
    }

    fn claim_value(&self) -> bytes::Bytes {
        let claim = Claim {
            node: self.config.node.clone(),
            instance: self.instance.clone(),
        };
        serde_json::to_vec(&claim)
            .expect("a claim serializes")
            .into()
    }

    async fn whisper(
        self: Arc<Self>,
        from: Nickname,
        to: Nickname,
        text: String,
        ts: Timestamp,
    ) -> Result<Nickname, BrokerError> {
        self.connected()?;
        let no_such_nick = || BrokerError::from(RegistryError::NoSuchNick(to.clone()));
        let entry = timeout(self.config.request_timeout, self.nicks.get(to.key()))
            .await
            .map_err(|e| unavailable("cannot look the nick up", e))?
            .map_err(|e| unavailable("cannot look the nick up", e))?;
        let Some(claim) = entry.and_then(|v| serde_json::from_slice::<Claim>(&v).ok()) else {
            return Err(no_such_nick());
        };
        if claim.instance == self.instance {
            // Claimed here, but the session has gone since.
            return Err(no_such_nick());
        }
        let request = whisper::Whisper {
            from,
            to: to.clone(),
            text,
            ts,
        };
        let payload = serde_json::to_vec(&request).expect("a whisper serializes");
        let reply = timeout(
            self.config.request_timeout,
            self.client
                .request(whisper::subject(&claim.instance), payload.into()),
        )
        .await
        .map_err(|e| unavailable("the nick's server did not answer", e))?
        // No responder: the claim outlived its node (until the lease ends).
        .map_err(|_| no_such_nick())?;
        match serde_json::from_slice::<whisper::Answer>(&reply.payload) {
            Ok(whisper::Answer::Delivered(nick)) => Ok(nick),
            Ok(whisper::Answer::NoSuchNick) => Err(no_such_nick()),
            Err(e) => Err(unavailable("malformed answer to a whisper", e)),
        }
    }

    /// Renews every claim of this node each third of the lease.
    async fn renew_claims(self: Arc<Self>) {
        let every = self.config.nick_lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let claims: Vec<(String, u64)> = lock(&self.claims)
                .iter()
                .map(|(k, r)| (k.clone(), *r))
                .collect();
            for (key, revision) in claims {
                let value = self.claim_value();
                let renewed = timeout(
                    self.config.request_timeout,
                    self.nicks.update(&key, value, revision),
                )
                .await;
                match renewed {
                    Ok(Ok(new)) => self.renewed(&key, revision, new),
                    Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        self.claim_again(&key, revision).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(nick = %key, error = %e, "could not renew a nick claim")
                    }
                    Err(_) => {
                        tracing::warn!(nick = %key, "could not renew a nick claim: NATS did not answer")
                    }
                }
            }
        }
    }

    /// Records the new revision of a claim, unless it was released or
    /// renewed otherwise meanwhile.
    fn renewed(&self, key: &str, old: u64, new: u64) {
        if let Some(r) = lock(&self.claims).get_mut(key)
            && *r == old
        {
            *r = new;
        }
    }

    /// A claim's entry is not at its revision any more: it lapsed (NATS was
    /// away longer than the lease, or its stream lost it in a failover), or
    /// another node took it after it lapsed. A lapsed claim is made again;
    /// one taken elsewhere is given up, loudly.
    async fn claim_again(&self, key: &str, revision: u64) {
        let created = timeout(
            self.config.request_timeout,
            self.nicks.create(key, self.claim_value()),
        )
        .await;
        match created {
            Ok(Ok(new)) => {
                tracing::warn!(nick = %key, "a nick claim lapsed; claimed it again");
                self.renewed(key, revision, new);
            }
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                tracing::warn!(
                    nick = %key,
                    "a nick claim lapsed and another node claimed the nick; disconnecting its session here"
                );
                let lost = {
                    let mut claims = lock(&self.claims);
                    let lost = claims.get(key) == Some(&revision);
                    if lost {
                        claims.remove(key);
                    }
                    lost
                };
                if lost
                    && let (Some(registry), Ok(nick)) = (self.registry.get(), Nickname::new(key))
                {
                    registry.cut_off_holder(&nick, CutReason::NickLost);
                }
            }
            _ => tracing::warn!(nick = %key, "could not claim a lapsed nick again; retrying"),
        }
    }

    /// Kicks the feeds that stalled: delivered nothing since the last check
    /// while their stream went further, twice in a row. Only feeds that
    /// delivered nothing are asked about, at most
    /// [`FEED_CHECKS_PER_ROUND`] a round, taking turns.
    async fn watch_feeds(self: Arc<Self>) {
        let mut turn = 0usize;
        loop {
            tokio::time::sleep(FEED_CHECK).await;
            if self.connected().is_err() {
                continue;
            }
            let mut quiet: Vec<(String, stream::Stream, (MessageId, u64))> = {
                let mut feeds = lock(&self.feeds);
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
                let info = timeout(self.config.request_timeout, stream.info()).await;
                let Ok(Ok(info)) = info else {
                    continue;
                };
                let behind = info.state.last_sequence > state.0;
                if let Some(feed) = lock(&self.feeds).get_mut(&key) {
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
    async fn drop_idle_feeds(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let Some(registry) = self.registry.get() else {
                continue;
            };
            let mut feeds = lock(&self.feeds);
            feeds.retain(|_, feed| {
                feed.touched.elapsed() < FEED_LINGER || registry.room(&feed.room).is_some()
            });
        }
    }
}
