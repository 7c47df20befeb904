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

mod claims;
mod config;
mod connect;
mod feed;
mod outgoing;
mod presence;
mod publish;
mod store;
mod whisper;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::protocol::{MessageId, Nickname, RoomInfo, RoomName, ServerMessage, Timestamp};
use crate::registry::{Outbound, Published, Room, RoomRegistry, SessionId};

use super::presence::Change;
use feed::Feed;
use presence::Presence;

use super::{Broker, BrokerError, Pending};

pub use claims::NICK_BUCKET;
pub use config::NatsConfig;
pub use connect::{ClientCert, NatsAuth, NatsTls, redact_url};
pub use store::StreamStore;

/// The longest a cursor from another node waits for this node's feed.
const CATCH_UP: Duration = Duration::from_secs(2);
/// The longest a stopping node waits to tell the cluster its last changes.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

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
    pub(super) fn connected(&self) -> Result<(), BrokerError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(BrokerError::Unavailable(
                "no connection to NATS; nothing was sent".to_owned(),
            )),
        }
    }
}
