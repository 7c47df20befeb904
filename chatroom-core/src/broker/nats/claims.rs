//! Nick claims in the key-value bucket: made create-only, renewed every
//! third of the lease, made again when they lapse, and taken over from a
//! node that stopped answering.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{kv, stream};
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

use crate::protocol::Nickname;
use crate::registry::CutReason;

use super::link::Link;
use super::lock::lock;
use super::presence::Presence;
use crate::broker::{BrokerError, Outage};

/// The key-value bucket that holds nickname claims.
pub const NICK_BUCKET: &str = "chatroom_nicks";

/// What a nick's entry in the bucket holds: who claimed it, and where a
/// whisper to it goes.
#[derive(Serialize, Deserialize)]
struct Claim {
    node: String,
    instance: String,
}

/// Opens the nick bucket, making it if it does not exist.
///
/// # Errors
/// [`BrokerError::Unavailable`] when the bucket cannot be opened.
pub(super) async fn open_bucket(link: &Link) -> Result<kv::Store, BrokerError> {
    let config = &link.config;
    // The bucket's stream is made by hand, as a key-value bucket's
    // stream looks: `create_key_value` first asks for the account's
    // info, whose reply from a 2.9 server this client cannot read.
    let bucket = stream::Config {
        max_age: config.nick_lease,
        ..bucket_stream(NICK_BUCKET, "chatroom nickname claims", config.replicas)
    };
    link.js
        .get_or_create_stream(bucket)
        .await
        .map_err(|e| Outage::NickBucket(e.into()))?;
    let nicks = link
        .js
        .get_key_value(NICK_BUCKET)
        .await
        .map_err(|e| Outage::NickBucket(e.into()))?;
    Ok(nicks)
}

/// The stream of a key-value bucket keeping one value per key, as
/// `create_key_value` would make it.
pub(super) fn bucket_stream(bucket: &str, description: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// This node's nick claims.
pub(super) struct Claims {
    link: Arc<Link>,
    /// Who is alive, for taking a dead node's nicks over.
    presence: Arc<Presence>,
    nicks: kv::Store,
    /// Nick key → revision of this node's claim.
    held: Mutex<HashMap<String, u64>>,
    /// Nick releases under way.
    releasing: AtomicUsize,
}

impl Claims {
    /// No claim made yet, in the bucket `nicks` (see [`open_bucket`]).
    pub(super) fn new(link: Arc<Link>, presence: Arc<Presence>, nicks: kv::Store) -> Self {
        Self {
            link,
            presence,
            nicks,
            held: Mutex::new(HashMap::new()),
            releasing: AtomicUsize::new(0),
        }
    }

    /// How many releases are still under way.
    pub(super) fn releasing(&self) -> usize {
        self.releasing.load(Ordering::Acquire)
    }

    /// Claims `nick` for this node.
    ///
    /// # Errors
    /// [`BrokerError::NickTaken`] when another node holds it,
    /// [`BrokerError::Unavailable`] when NATS cannot be asked.
    pub(super) async fn claim(&self, nick: Nickname) -> Result<(), BrokerError> {
        self.link.connected()?;
        let key = nick.key();
        let created = timeout(
            self.link.config.request_timeout,
            self.nicks.create(&key, self.claim_value()),
        )
        .await
        .map_err(|e| Outage::Claim(e.into()))?;
        let revision = match created {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => self
                .take_over(&key)
                .await
                .ok_or(BrokerError::NickTaken(nick))?,
            Err(e) => return Err(Outage::Claim(e.into()).into()),
        };
        lock(&self.held).insert(key, revision);
        Ok(())
    }

    /// The instance of the node that holds `nick`, unless nobody does or
    /// this node does (whose session has gone since, as the registry holds
    /// none): a whisper's destination.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when the bucket cannot be read.
    pub(super) async fn holder_elsewhere(
        &self,
        nick: &Nickname,
    ) -> Result<Option<String>, BrokerError> {
        let entry = timeout(self.link.config.request_timeout, self.nicks.get(nick.key()))
            .await
            .map_err(|e| Outage::NickLookup(e.into()))?
            .map_err(|e| Outage::NickLookup(e.into()))?;
        let claim = entry.and_then(|v| serde_json::from_slice::<Claim>(&v).ok());
        Ok(claim
            .map(|claim| claim.instance)
            .filter(|instance| *instance != self.link.instance))
    }

    /// Gives up this node's claim of `nick`, in the background; never
    /// waits.
    pub(super) fn release(self: &Arc<Self>, nick: &Nickname) {
        let key = nick.key();
        let Some(revision) = lock(&self.held).remove(&key) else {
            return;
        };
        let claims = self.clone();
        claims.releasing.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            // Only this node's own claim: one taken over by another node
            // since (this node was stalled) is theirs to keep.
            let delete = claims.nicks.delete_expect_revision(&key, Some(revision));
            let deleted = timeout(claims.link.config.request_timeout, delete).await;
            if !matches!(deleted, Ok(Ok(()))) {
                tracing::warn!(nick = %key, "could not release a nick claim; it expires with its lease");
            }
            claims.releasing.fetch_sub(1, Ordering::AcqRel);
        });
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
            .knows_the_cluster(self.link.connections.borrow().since)
        {
            return None;
        }
        let wait = self.link.config.request_timeout;
        let entry = timeout(wait, self.nicks.entry(key)).await.ok()?.ok()??;
        if entry.operation != kv::Operation::Put {
            return None;
        }
        let claim = serde_json::from_slice::<Claim>(&entry.value).ok()?;
        if claim.instance == self.link.instance || self.presence.is_alive(&claim.instance) {
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
            node: self.link.config.node.clone(),
            instance: self.link.instance.clone(),
        };
        serde_json::to_vec(&claim)
            .expect("a claim serializes")
            .into()
    }

    /// Renews every claim of this node each third of the lease.
    pub(super) async fn renew(self: Arc<Self>) {
        let every = self.link.config.nick_lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let claims: Vec<(String, u64)> = lock(&self.held)
                .iter()
                .map(|(k, r)| (k.clone(), *r))
                .collect();
            for (key, revision) in claims {
                let value = self.claim_value();
                let renewed = timeout(
                    self.link.config.request_timeout,
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
        if let Some(r) = lock(&self.held).get_mut(key)
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
            self.link.config.request_timeout,
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
                    let mut claims = lock(&self.held);
                    let lost = claims.get(key) == Some(&revision);
                    if lost {
                        claims.remove(key);
                    }
                    lost
                };
                if lost
                    && let (Some(registry), Ok(nick)) =
                        (self.link.registry.get(), Nickname::new(key))
                {
                    registry.cut_off_holder(&nick, CutReason::NickLost);
                }
            }
            _ => tracing::warn!(nick = %key, "could not claim a lapsed nick again; retrying"),
        }
    }
}
