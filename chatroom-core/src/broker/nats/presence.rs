//! Presence across nodes, carried over NATS core subjects (the bookkeeping
//! itself is `broker::presence`).
//!
//! - Every node publishes its numbered changes and a heartbeat on
//!   [`BULLETINS`], through one bounded queue and one task, so they leave
//!   in number order; a change that does not fit in the queue is dropped
//!   and the receivers' gap check recovers it from a snapshot.
//! - Every node listens on [`BULLETINS`] and answers snapshot requests on
//!   `chatroom.presence.snapshot.<instance>`.
//! - What the views learn is told to this node's members under the views'
//!   lock, so two changes are never told out of order.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::Client;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::broker::presence::{Bulletin, Change, Effect, LocalPresence, Snapshot, Views};
use crate::protocol::{Nickname, RoomInfo, RoomName, ServerMessage};
use crate::registry::{Outbound, RoomRegistry};

use super::lock::lock;

/// The subject every node's bulletins go to.
const BULLETINS: &str = "chatroom.presence";
/// Changes waiting to be published, at most.
const QUEUE: usize = 4096;
/// Heartbeats a node may miss before its members are taken as gone.
const MISSED_HEARTBEATS: u32 = 3;

fn snapshot_subject(instance: &str) -> String {
    format!("chatroom.presence.snapshot.{instance}")
}

/// This node's side of presence: its own members, and its view of the
/// others'.
pub(super) struct Presence {
    instance: String,
    client: Client,
    interval: Duration,
    request_timeout: Duration,
    local: Mutex<LocalPresence>,
    views: Mutex<Views>,
    queue: mpsc::Sender<Bytes>,
    /// Bulletins queued and not yet handed to the client.
    unsent: AtomicUsize,
}

impl Presence {
    /// Subscribes to the bulletins and to this node's snapshot requests, and
    /// starts the tasks that serve them; the tasks stop when `registry` is
    /// never attached and the broker is dropped (they are returned to be
    /// aborted).
    pub(super) async fn start(
        client: Client,
        instance: String,
        interval: Duration,
        request_timeout: Duration,
        registry: Arc<OnceLock<RoomRegistry>>,
    ) -> Result<(Arc<Self>, Vec<JoinHandle<()>>), async_nats::Error> {
        let bulletins = client.subscribe(BULLETINS).await?;
        let requests = client.subscribe(snapshot_subject(&instance)).await?;
        let (queue, outgoing) = mpsc::channel(QUEUE);
        let presence = Arc::new(Self {
            views: Mutex::new(Views::new(instance.clone(), request_timeout)),
            instance,
            client,
            interval,
            request_timeout,
            local: Mutex::new(LocalPresence::default()),
            queue,
            unsent: AtomicUsize::new(0),
        });
        let tasks = vec![
            tokio::spawn(presence.clone().publish(outgoing)),
            tokio::spawn(presence.clone().listen(bulletins, registry.clone())),
            tokio::spawn(presence.clone().answer(requests)),
            tokio::spawn(presence.clone().beat(registry)),
        ];
        Ok((presence, tasks))
    }

    /// Records a change of this node's members and queues its bulletin.
    pub(super) fn record(&self, change: Change) {
        let mut local = lock(&self.local);
        if let Some(seq) = local.record(&change) {
            // Queued under the lock, so bulletins leave in number order.
            self.send(seq, Some(change));
        }
    }

    fn send(&self, seq: u64, change: Option<Change>) {
        let bulletin = Bulletin {
            instance: self.instance.clone(),
            seq,
            change,
        };
        let bytes = serde_json::to_vec(&bulletin).expect("a bulletin serializes");
        self.unsent.fetch_add(1, Ordering::AcqRel);
        if self.queue.try_send(bytes.into()).is_err() {
            self.unsent.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!("presence queue full; the others will ask for a snapshot");
        }
    }

    /// How many bulletins are queued and not yet handed to the client.
    pub(super) fn unsent(&self) -> usize {
        self.unsent.load(Ordering::Acquire)
    }

    /// Whether this node has listened long enough since `since` (its last
    /// connection to NATS) to have heard every live node's heartbeat.
    pub(super) fn knows_the_cluster(&self, since: Instant) -> bool {
        since.elapsed() > self.interval * (MISSED_HEARTBEATS + 1)
    }

    /// Whether the node process `instance` is heard from.
    pub(super) fn is_alive(&self, instance: &str) -> bool {
        lock(&self.views).knows(instance)
    }

    pub(super) fn members(&self, room: &RoomName) -> Vec<Nickname> {
        lock(&self.views).members(room)
    }

    pub(super) fn rooms(&self) -> Vec<RoomInfo> {
        lock(&self.views).rooms()
    }

    async fn publish(self: Arc<Self>, mut outgoing: mpsc::Receiver<Bytes>) {
        while let Some(bytes) = outgoing.recv().await {
            if let Err(e) = self.client.publish(BULLETINS, bytes).await {
                tracing::debug!(error = %e, "could not publish a presence bulletin");
            }
            self.unsent.fetch_sub(1, Ordering::AcqRel);
        }
    }

    async fn listen(
        self: Arc<Self>,
        mut bulletins: async_nats::Subscriber,
        registry: Arc<OnceLock<RoomRegistry>>,
    ) {
        while let Some(message) = bulletins.next().await {
            let Ok(bulletin) = serde_json::from_slice::<Bulletin>(&message.payload) else {
                tracing::warn!("skipped a malformed presence bulletin");
                continue;
            };
            let ask = {
                let mut views = lock(&self.views);
                let outcome = views.on_bulletin(bulletin, Instant::now());
                tell(registry.get(), outcome.effects);
                outcome.ask
            };
            if let Some(instance) = ask {
                tokio::spawn(self.clone().ask(instance, registry.clone()));
            }
        }
    }

    /// Asks `instance` for its snapshot and applies it; asks again while
    /// the snapshot leaves a gap.
    async fn ask(self: Arc<Self>, instance: String, registry: Arc<OnceLock<RoomRegistry>>) {
        let subject = snapshot_subject(&instance);
        loop {
            let answer = timeout(
                self.request_timeout,
                self.client.request(subject.clone(), Bytes::new()),
            )
            .await;
            let snapshot = match answer {
                Ok(Ok(reply)) => match serde_json::from_slice::<Snapshot>(&reply.payload) {
                    Ok(snapshot) => snapshot,
                    Err(e) => {
                        tracing::warn!(%instance, error = %e, "malformed presence snapshot");
                        return;
                    }
                },
                // The next heartbeat or change asks again.
                Ok(Err(e)) => {
                    tracing::debug!(%instance, error = %e, "presence snapshot not answered");
                    return;
                }
                Err(_) => return,
            };
            let again = {
                let mut views = lock(&self.views);
                let outcome = views.on_snapshot(&instance, snapshot, Instant::now());
                tell(registry.get(), outcome.effects);
                outcome.ask.is_some()
            };
            if !again {
                return;
            }
        }
    }

    async fn answer(self: Arc<Self>, mut requests: async_nats::Subscriber) {
        while let Some(request) = requests.next().await {
            let Some(reply) = request.reply else {
                continue;
            };
            let snapshot = lock(&self.local).snapshot();
            let bytes = serde_json::to_vec(&snapshot).expect("a snapshot serializes");
            if let Err(e) = self.client.publish(reply, bytes.into()).await {
                tracing::debug!(error = %e, "could not answer a presence snapshot request");
            }
        }
    }

    /// Sends a heartbeat every interval and drops the nodes that missed
    /// too many.
    async fn beat(self: Arc<Self>, registry: Arc<OnceLock<RoomRegistry>>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            {
                let local = lock(&self.local);
                self.send(local.seq(), None);
            }
            let Some(deadline) = Instant::now().checked_sub(self.interval * MISSED_HEARTBEATS)
            else {
                continue;
            };
            let reason = match self.client.connection_state() {
                async_nats::connection::State::Connected => "their server stopped answering",
                _ => "this server lost the cluster",
            };
            let mut views = lock(&self.views);
            let effects = views.expire(deadline, reason);
            tell(registry.get(), effects);
            drop(views);
        }
    }
}

/// Tells this node's members what changed on another node.
fn tell(registry: Option<&RoomRegistry>, effects: Vec<Effect>) {
    let Some(registry) = registry else {
        return;
    };
    for effect in effects {
        match effect {
            Effect::Joined { room, nick } => {
                if let Some(live) = registry.room(&room) {
                    live.deliver(
                        &Outbound::message(ServerMessage::Joined { room, nick }),
                        None,
                    );
                }
            }
            Effect::Left { room, nick, reason } => {
                if let Some(live) = registry.room(&room) {
                    live.deliver(
                        &Outbound::message(ServerMessage::Left { room, nick, reason }),
                        None,
                    );
                }
            }
            Effect::Renamed { rooms, old, new } => {
                let frame = Outbound::message(ServerMessage::NickChanged { old, new });
                registry.tell_members(&rooms, &frame);
            }
        }
    }
}
