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
//! - **Accounts, room rules and the moderation log** are shared through
//!   the bucket `chatroom_accounts` and the stream `CHATROOM-MODLOG`
//!   (module `accounts`); **bulletins** carry a moderator's kick or ban
//!   to the other nodes (module `bulletin`).
//! - **Presence** (who is in which room on the other nodes) travels on core
//!   subjects as numbered changes with heartbeats (module `presence`);
//!   `who`, `rooms` and the `members` reply of a join span every node.
//! - **Losing NATS** is told to this node's clients as a `notice`, and so
//!   is its return; meanwhile what needs NATS is refused with an error.
//!
//! One file per concern: `config` (the settings), `connect` (credentials
//! and TLS), `link` (the live connection), `store` (history from the
//! streams), `feed` (receiving rooms), `publish` and `outgoing` (sending
//! `say`s), `claims` (nicks), `whisper`, `mask` (a ban's question to the
//! node holding a nick) and `presence`; `wire` and `lock`
//! are the small pieces they share. This file wires them into the
//! [`Broker`].

mod accounts;
mod bulletin;
mod claims;
mod config;
mod connect;
mod feed;
mod link;
mod lock;
mod mask;
mod outgoing;
mod presence;
mod publish;
mod store;
mod whisper;
mod wire;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::history::CommitSnapshot;
use crate::protocol::{MessageId, Nickname, RoomInfo, RoomName, Timestamp};
use crate::registry::{Published, Room, RoomRegistry, SessionId};

use super::presence::Change;
use super::{Broker, BrokerError, BulletinSink, MaskSource, Outage, Pending};
use bulletin::Bulletins;
use claims::Claims;
use feed::Feeds;
use link::Link;
use outgoing::InFlight;
use presence::Presence;
use publish::Publisher;

pub use accounts::{ACCOUNT_BUCKET, MODLOG_STREAM, NatsAccounts};
pub use claims::NICK_BUCKET;
pub use config::NatsConfig;
pub use connect::{ClientCert, NatsAuth, NatsTls, redact_url};
pub use store::StreamStore;

/// The longest a cursor from another node waits for this node's feed.
const CATCH_UP: Duration = Duration::from_secs(2);
/// The longest a stopping node waits to tell the cluster its last changes.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// The NATS JetStream broker. See the module docs.
pub struct NatsBroker {
    link: Arc<Link>,
    presence: Arc<Presence>,
    feeds: Arc<Feeds>,
    claims: Arc<Claims>,
    publisher: Arc<Publisher>,
    bulletins: Bulletins,
    /// The engine's answer to other nodes' ban questions, set once by
    /// `answer_ban_masks`; the answering task holds the other reference.
    masks: Arc<OnceLock<MaskSource>>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("node", &self.link.config.node)
            .field("config", &self.link.config)
            .finish_non_exhaustive()
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.feeds.clear();
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
        let link = Arc::new(Link::open(config).await?);
        let config = &link.config;
        let nicks = claims::open_bucket(&link).await?;
        let (presence, presence_tasks) = Presence::start(
            link.client.clone(),
            link.instance.clone(),
            config.presence_interval,
            config.request_timeout,
            link.registry.clone(),
        )
        .await
        .map_err(|source| Outage::Subscribe {
            what: "presence",
            source,
        })?;
        let claims = Arc::new(Claims::new(link.clone(), presence.clone(), nicks));
        let store = Arc::new(StreamStore::new(link.js.clone(), config.request_timeout));
        let in_flight = Arc::new(InFlight::default());
        let feeds = Arc::new(Feeds::new(link.clone(), store.clone(), in_flight.clone()));
        let (publisher, queued) = Publisher::new(link.clone(), feeds.clone(), in_flight);
        let mut tasks = vec![
            tokio::spawn(outgoing::send_in_order(link.js.clone(), queued)),
            tokio::spawn(claims.clone().renew()),
            tokio::spawn(feeds.clone().drop_idle()),
            tokio::spawn(feeds.clone().watch()),
        ];
        tasks.extend(presence_tasks);
        tasks.push(whisper::start(&link).await?);
        let masks = Arc::new(OnceLock::new());
        tasks.push(mask::start(&link, masks.clone()).await?);
        let (bulletins, bulletin_tasks) = Bulletins::start(&link).await?;
        tasks.extend(bulletin_tasks);
        let broker = Self {
            link,
            presence,
            feeds,
            claims,
            publisher: Arc::new(publisher),
            bulletins,
            masks,
            tasks,
        };
        Ok((Arc::new(broker), store))
    }

    /// Opens the cluster's account store: accounts, room rules and the
    /// moderation log, shared by every node (see [`NatsAccounts`]).
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when its bucket or stream cannot be
    /// made or read.
    pub async fn accounts(&self) -> Result<NatsAccounts, BrokerError> {
        NatsAccounts::open(&self.link).await
    }

    /// Starts receiving `room` here unless it is received already; its
    /// stream is made when `create` is set, else a room without one is
    /// left alone.
    fn open_feed(&self, room: &RoomName, create: bool) -> Pending<Result<(), BrokerError>> {
        if self.feeds.touch(room) {
            return Pending::ready(Ok(()));
        }
        let feeds = self.feeds.clone();
        let room = room.clone();
        Pending::waiting(async move { feeds.open(room, create).await })
    }

    /// Waits until the last bulletins and nick releases are handed to the
    /// client, then until the client has written them.
    async fn send_last_words(presence: &Presence, claims: &Claims, link: &Link) {
        while presence.unsent() > 0 || claims.releasing() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Err(e) = link.client.flush().await {
            tracing::debug!(error = %e, "could not flush the NATS connection");
        }
    }
}

impl Broker for NatsBroker {
    fn attach(&self, registry: &RoomRegistry) {
        let _ = self.link.registry.set(registry.clone());
    }

    fn is_connected(&self) -> Option<bool> {
        Some(self.link.connected().is_ok())
    }

    fn publish_times(&self) -> Option<CommitSnapshot> {
        Some(self.publisher.times())
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
        match self
            .publisher
            .submit(room, sender, from.clone(), text, action)
        {
            Ok(submitted) => {
                let publisher = self.publisher.clone();
                Pending::waiting(async move { publisher.settle(submitted).await })
            }
            Err(e) => Pending::ready(Err(e)),
        }
    }

    fn catch_up(&self, room: &RoomName, id: MessageId) -> Pending<()> {
        let Some(mut delivered) = self.feeds.delivered(room) else {
            return Pending::ready(());
        };
        Pending::waiting(async move {
            let _ = timeout(CATCH_UP, delivered.wait_for(|last| *last >= id)).await;
        })
    }

    fn claim(&self, nick: &Nickname) -> Pending<Result<(), BrokerError>> {
        let claims = self.claims.clone();
        let nick = nick.clone();
        Pending::waiting(async move { claims.claim(nick).await })
    }

    fn release(&self, nick: &Nickname) {
        self.claims.release(nick);
    }

    fn joined(&self, room: &RoomName, nick: &Nickname) {
        self.presence.record(Change::Joined {
            room: room.clone(),
            nick: nick.clone(),
        });
    }

    fn left(&self, room: &RoomName, nick: &Nickname, reason: Option<&str>) {
        self.presence.record(Change::Left {
            room: room.clone(),
            nick: nick.clone(),
            reason: reason.map(str::to_owned),
        });
    }

    fn renamed(&self, old: &Nickname, new: &Nickname) {
        self.presence.record(Change::Renamed {
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
        let (link, claims) = (self.link.clone(), self.claims.clone());
        let (from, to) = (from.clone(), to.clone());
        Pending::waiting(async move { whisper::send(&link, &claims, from, to, text, ts).await })
    }

    fn ban_mask(&self, nick: &Nickname) -> Pending<Result<Option<String>, BrokerError>> {
        let (link, claims, nick) = (self.link.clone(), self.claims.clone(), nick.clone());
        Pending::waiting(async move { mask::ask(&link, &claims, nick).await })
    }

    fn answer_ban_masks(&self, source: MaskSource) {
        let _ = self.masks.set(source);
    }

    fn shutdown(&self) -> Pending<()> {
        let (presence, claims, link) = (
            self.presence.clone(),
            self.claims.clone(),
            self.link.clone(),
        );
        Pending::waiting(async move {
            let last_words = Self::send_last_words(&presence, &claims, &link);
            if timeout(SHUTDOWN_FLUSH, last_words).await.is_err() {
                tracing::warn!("could not tell the cluster everything before stopping");
            }
        })
    }

    fn bulletin(&self, payload: Vec<u8>) {
        self.bulletins.send(payload);
    }

    fn follow_bulletins(&self, sink: BulletinSink) {
        self.bulletins.follow(sink);
    }

    fn remote_members(&self, room: &RoomName) -> Vec<Nickname> {
        self.presence.members(room)
    }

    fn remote_rooms(&self) -> Vec<RoomInfo> {
        self.presence.rooms()
    }
}
