//! Accounts, room rules and the moderation log of a cluster, shared by
//! every node through JetStream.
//!
//! - Accounts and rules live in the key-value bucket `chatroom_accounts`,
//!   one entry each: `account.<hex of the folded nick>` holds the account
//!   (its argon2id hash, never the password) as JSON, `rules.<hex of the
//!   folded room name>` a room's rules as the engine encoded them (`*`,
//!   the server's own bans, too). The names are hex because a bucket key
//!   allows fewer characters than a room name.
//! - Each node keeps a mirror of the bucket, fed by a watch, and hands
//!   what changes to the engine (`AccountStore::follow`), whose own maps
//!   are what a `hello`, a join or a `say` consults: no read goes to NATS
//!   on the hot path. Writes go to the bucket; a new account is a
//!   create-only put, so two nodes cannot both register one nick.
//! - The moderation log is the stream `CHATROOM-MODLOG` (its last 10,000
//!   lines), readable from any node.
//!
//! The [`AccountStore`] methods that write or read the log block on the
//! runtime: the engine calls them from blocking threads only.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::accounts::{Account, AccountError, AccountStore, ChangeSink, LogEntry, StoreChange};
use crate::broker::{BrokerError, Outage};

use super::claims::bucket_stream;
use super::link::{Connections, Link};
use super::lock::lock;

/// The key-value bucket of accounts and room rules.
pub const ACCOUNT_BUCKET: &str = "chatroom_accounts";
/// The stream of the moderation log. The hyphen keeps it apart from the
/// rooms' `CHATROOM_` streams.
pub const MODLOG_STREAM: &str = "CHATROOM-MODLOG";
const MODLOG_SUBJECT: &str = "chatroom.modlog";
/// Lines of the moderation log kept, as on one node.
const MODLOG_CAPACITY: i64 = 10_000;
/// The wait before the watch is made again after it broke.
const REWATCH: Duration = Duration::from_secs(1);

/// The account store of a cluster. See the module docs.
pub struct NatsAccounts {
    bucket: kv::Store,
    js: jetstream::Context,
    request_timeout: Duration,
    runtime: Handle,
    mirror: Arc<Mutex<Mirror>>,
    watcher: JoinHandle<()>,
}

impl fmt::Debug for NatsAccounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsAccounts")
            .field("bucket", &ACCOUNT_BUCKET)
            .finish_non_exhaustive()
    }
}

impl Drop for NatsAccounts {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// What the bucket holds, as this node last heard, and who is told of
/// changes.
#[derive(Default)]
struct Mirror {
    accounts: BTreeMap<String, Account>,
    rules: BTreeMap<String, String>,
    sink: Option<ChangeSink>,
}

impl Mirror {
    /// Takes up one entry of the bucket and tells the engine.
    fn apply(&mut self, entry: &kv::Entry) {
        let removed = matches!(
            entry.operation,
            kv::Operation::Delete | kv::Operation::Purge
        );
        let Some((kind, key)) = decode_key(&entry.key) else {
            tracing::warn!(key = %entry.key, "unknown entry in the account bucket");
            return;
        };
        let change = match (kind, removed) {
            (Kind::Account, true) => {
                self.accounts.remove(&key);
                StoreChange::AccountRemoved(key)
            }
            (Kind::Account, false) => match serde_json::from_slice::<Account>(&entry.value) {
                Ok(account) => {
                    self.accounts.insert(key, account.clone());
                    StoreChange::Account(account)
                }
                Err(e) => {
                    tracing::error!(account = %key, error = %e, "a stored account is damaged");
                    return;
                }
            },
            (Kind::Rules, true) => {
                self.rules.remove(&key);
                StoreChange::Rules {
                    key,
                    encoded: String::new(),
                }
            }
            (Kind::Rules, false) => {
                let encoded = String::from_utf8_lossy(&entry.value).into_owned();
                self.rules.insert(key.clone(), encoded.clone());
                StoreChange::Rules { key, encoded }
            }
        };
        if let Some(sink) = &self.sink {
            sink(change);
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Account,
    Rules,
}

/// The bucket key of a folded name: `<kind>.<hex>`.
fn bucket_key(kind: Kind, key: &str) -> String {
    let prefix = match kind {
        Kind::Account => "account",
        Kind::Rules => "rules",
    };
    let mut out = String::with_capacity(prefix.len() + 1 + key.len() * 2);
    out.push_str(prefix);
    out.push('.');
    for byte in key.as_bytes() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The kind and folded name a bucket key stands for.
fn decode_key(stored: &str) -> Option<(Kind, String)> {
    let (prefix, hex) = stored.split_once('.')?;
    let kind = match prefix {
        "account" => Kind::Account,
        "rules" => Kind::Rules,
        _ => return None,
    };
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((kind, String::from_utf8(bytes).ok()?))
}

fn unavailable(e: impl fmt::Display) -> AccountError {
    AccountError::Unavailable(e.to_string())
}

fn outage(e: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
    Outage::AccountBucket(Box::new(e)).into()
}

impl NatsAccounts {
    /// Opens (making them if need be) the bucket and the log's stream,
    /// reads the bucket whole, and starts watching it.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when either cannot be made or read.
    pub(super) async fn open(link: &Link) -> Result<Self, BrokerError> {
        let config = &link.config;
        // Made by hand, as the nick bucket is (see `claims::open_bucket`).
        let bucket = bucket_stream(
            ACCOUNT_BUCKET,
            "chatroom accounts and room rules",
            config.replicas,
        );
        link.js.get_or_create_stream(bucket).await.map_err(outage)?;
        let log = stream::Config {
            name: MODLOG_STREAM.to_owned(),
            description: Some("chatroom moderation log".to_owned()),
            subjects: vec![MODLOG_SUBJECT.to_owned()],
            max_messages: MODLOG_CAPACITY,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            allow_direct: true,
            num_replicas: config.replicas,
            ..Default::default()
        };
        link.js.get_or_create_stream(log).await.map_err(outage)?;
        let bucket = link
            .js
            .get_key_value(ACCOUNT_BUCKET)
            .await
            .map_err(outage)?;
        // The watch starts before the bucket is read: a change made
        // meanwhile is heard (again) rather than missed.
        let watch = bucket.watch_all().await.map_err(outage)?;
        let mirror = Arc::new(Mutex::new(Mirror::default()));
        let read = async {
            let mut keys = bucket.keys().await.map_err(outage)?;
            while let Some(key) = keys.next().await {
                let key = key.map_err(outage)?;
                if let Some(entry) = bucket.entry(key).await.map_err(outage)? {
                    lock(&mirror).apply(&entry);
                }
            }
            Ok::<_, BrokerError>(())
        };
        timeout(config.request_timeout * 10, read)
            .await
            .map_err(outage)??;
        let watcher = tokio::spawn(follow(
            bucket.clone(),
            watch,
            mirror.clone(),
            link.connections.clone(),
        ));
        Ok(Self {
            bucket,
            js: link.js.clone(),
            request_timeout: config.request_timeout,
            runtime: Handle::current(),
            mirror,
            watcher,
        })
    }

    /// Runs `work` on the runtime, bounded by the request timeout, from a
    /// blocking thread.
    fn wait<T, E: fmt::Display>(
        &self,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, AccountError> {
        self.runtime
            .block_on(timeout(self.request_timeout, work))
            .map_err(unavailable)?
            .map_err(unavailable)
    }

    fn put(&self, kind: Kind, key: &str, value: Vec<u8>) -> Result<(), AccountError> {
        let key = bucket_key(kind, key);
        self.wait(self.bucket.put(key, value.into())).map(|_| ())
    }

    fn delete(&self, kind: Kind, key: &str) -> Result<(), AccountError> {
        let key = bucket_key(kind, key);
        self.wait(self.bucket.delete(key))
    }

    fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, AccountError> {
        serde_json::to_vec(value).map_err(|e| AccountError::Damaged(e.to_string()))
    }
}

/// Feeds the mirror from the bucket's watch. The watch is made again,
/// with every key's last value (deletions included), when it ends and
/// after every reconnection to NATS: a watch's consumer does not outlive
/// a NATS server that lost it, and what changed meanwhile must be heard.
async fn follow(
    bucket: kv::Store,
    mut watch: kv::Watch,
    mirror: Arc<Mutex<Mirror>>,
    mut connections: watch::Receiver<Connections>,
) {
    connections.mark_unchanged();
    loop {
        tokio::select! {
            entry = watch.next() => match entry {
                Some(Ok(entry)) => {
                    lock(&mirror).apply(&entry);
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the account bucket's watch failed");
                    continue;
                }
                None => tracing::warn!("the account bucket's watch ended; watching it again"),
            },
            changed = connections.changed() => {
                if changed.is_err() {
                    return;
                }
                tracing::debug!("connected to NATS again; watching the account bucket again");
            }
        }
        loop {
            match bucket.watch_with_history(">").await {
                Ok(again) => {
                    watch = again;
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch the account bucket"),
            }
            tokio::time::sleep(REWATCH).await;
        }
    }
}

impl AccountStore for NatsAccounts {
    fn accounts(&self) -> Result<Vec<Account>, AccountError> {
        Ok(lock(&self.mirror).accounts.values().cloned().collect())
    }

    fn put_account(&self, account: &Account) -> Result<(), AccountError> {
        self.put(Kind::Account, &account.name.key(), Self::encode(account)?)
    }

    fn create_account(&self, account: &Account) -> Result<(), AccountError> {
        let key = bucket_key(Kind::Account, &account.name.key());
        let value = Self::encode(account)?;
        let created = self
            .runtime
            .block_on(timeout(
                self.request_timeout,
                self.bucket.create(key, value.into()),
            ))
            .map_err(unavailable)?;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(AccountError::Exists),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn follow(&self, sink: ChangeSink) {
        let mut mirror = lock(&self.mirror);
        for account in mirror.accounts.values() {
            sink(StoreChange::Account(account.clone()));
        }
        for (key, encoded) in &mirror.rules {
            sink(StoreChange::Rules {
                key: key.clone(),
                encoded: encoded.clone(),
            });
        }
        mirror.sink = Some(sink);
    }

    fn remove_account(&self, key: &str) -> Result<(), AccountError> {
        self.delete(Kind::Account, key)
    }

    fn rules(&self) -> Result<Vec<(String, String)>, AccountError> {
        let mirror = lock(&self.mirror);
        Ok(mirror
            .rules
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn put_rules(&self, key: &str, encoded: &str) -> Result<(), AccountError> {
        if encoded.is_empty() {
            self.delete(Kind::Rules, key)
        } else {
            self.put(Kind::Rules, key, encoded.as_bytes().to_vec())
        }
    }

    fn log(&self, entry: &LogEntry) -> Result<(), AccountError> {
        let payload = Self::encode(entry)?;
        self.wait(async {
            let ack = self
                .js
                .publish(MODLOG_SUBJECT, payload.into())
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        })
        .map(|_| ())
    }

    fn read_log(&self, limit: usize) -> Result<Vec<LogEntry>, AccountError> {
        self.wait(async {
            let mut log = self
                .js
                .get_stream(MODLOG_STREAM)
                .await
                .map_err(|e| e.to_string())?;
            let state = log.info().await.map_err(|e| e.to_string())?.state.clone();
            if state.messages == 0 {
                return Ok(Vec::new());
            }
            let from = state
                .first_sequence
                .max((state.last_sequence + 1).saturating_sub(limit as u64));
            let mut lines = Vec::new();
            for sequence in from..=state.last_sequence {
                // A line removed meanwhile (the stream keeps the newest
                // lines only) is skipped.
                let Ok(message) = log.get_raw_message(sequence).await else {
                    continue;
                };
                match serde_json::from_slice::<LogEntry>(&message.payload) {
                    Ok(line) => lines.push(line),
                    Err(e) => tracing::warn!(sequence, error = %e, "a damaged moderation log line"),
                }
            }
            Ok::<_, String>(lines)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_round_trip_any_folded_name() {
        for name in ["bob", "*", "général", "a.b-c_d"] {
            let stored = bucket_key(Kind::Rules, name);
            assert!(
                stored
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.'),
                "{stored}"
            );
            let (kind, back) = decode_key(&stored).unwrap();
            assert!(matches!(kind, Kind::Rules));
            assert_eq!(back, name);
        }
        assert!(decode_key("account.6").is_none());
        assert!(decode_key("other.00").is_none());
    }
}
