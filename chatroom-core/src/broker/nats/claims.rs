//! Nick claims in the key-value bucket: made create-only, renewed every
//! third of the lease, made again when they lapse, and taken over from a
//! node that stopped answering.

use std::sync::Arc;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

use crate::protocol::Nickname;
use crate::registry::CutReason;

use super::{BrokerError, Inner, lock, unavailable};

/// The key-value bucket that holds nickname claims.
pub const NICK_BUCKET: &str = "chatroom_nicks";

/// What a nick's entry in the bucket holds: who claimed it, and where a
/// whisper to it goes.
#[derive(Serialize, Deserialize)]
pub(super) struct Claim {
    pub(super) node: String,
    pub(super) instance: String,
}

impl Inner {
    pub(super) async fn claim(self: Arc<Self>, nick: Nickname) -> Result<(), BrokerError> {
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

    /// Renews every claim of this node each third of the lease.
    pub(super) async fn renew_claims(self: Arc<Self>) {
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
}
