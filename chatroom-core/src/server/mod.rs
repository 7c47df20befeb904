//! The engine: accepts connections and runs one session for each.
//!
//! A [`Server`] is built from a validated [`ServerConfig`] and runs on one or
//! more [`Listener`]s until its shutdown future completes. Then it stops
//! accepting, tells every client `bye`, lets their queues drain, and drops
//! whatever is left when the shutdown deadline passes.
//!
//! # Examples
//!
//! ```no_run
//! use chatroom_core::server::{Server, ServerConfig};
//! use chatroom_core::transport::TcpListener;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! println!("listening on {}", listener.local_socket_addr());
//! let server = Server::new(ServerConfig::default())?;
//! // Any future can be the shutdown signal; a binary would wait for SIGTERM.
//! let shutdown = tokio::time::sleep(std::time::Duration::from_secs(3600));
//! server.run(listener, shutdown).await?;
//! # Ok(()) }
//! ```

mod accounts;
mod admin;
mod browsers;
mod builder;
mod bulletin;
mod config;
mod end;
mod error;
mod irc;
mod metrics;
mod moderation;
mod peers;
mod rate;
mod rooms;
mod session;
mod shared;
mod tuning;
#[cfg(feature = "web")]
mod web;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use futures::future::Either;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::accounts::{AccountStore, MemoryAccounts};
use crate::broker::{Broker, LocalBroker};
use crate::history::HistoryStore;
use crate::protocol::{ErrorCode, ServerFrame, ServerMessage};
use crate::registry::{QueueBudget, RoomRegistry, now_ms};
use crate::transport::{Connection, Listener, TransportError};

pub use admin::{Admin, Readiness};
pub use builder::ServerBuilder;
pub use config::{
    AccountsConfig, ClusterConfig, HistoryConfig, HistoryKind, LimitsConfig, LogFormat, OpsConfig,
    ServerConfig, TlsConfig, WebConfig,
};
pub use error::{ConfigError, ServerError};
pub use tuning::Reloaded;

use config::Limits;
use metrics::{Counters, Refused};
use peers::{PeerTable, Refusal};
use rooms::{RoomLimits, Rooms};
use shared::Shared;
use tuning::Tuning;

/// The chat engine. Build it with [`Server::new`] (history in memory) or
/// [`Server::builder`] (the store or cluster the settings name), then
/// [`Server::run`] it.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// Validates `config` and builds an engine that keeps history in
    /// memory (a [`MemoryStore`](crate::history::MemoryStore) of
    /// `history.max_messages` per room), whatever `history.store` says.
    ///
    /// # Errors
    /// [`ServerError::Config`] naming the first setting that is out of range.
    pub fn new(config: ServerConfig) -> Result<Self, ServerError> {
        let store = builder::memory_store(&config.history);
        Self::with_history(config, store)
    }

    /// Validates `config` for a server built from the settings alone, as
    /// the server binary runs it: [`ServerBuilder::build`] then opens the
    /// history store they name, or joins the cluster they name.
    ///
    /// # Errors
    /// The first setting that is out of range; nothing is opened or
    /// connected for settings that are refused.
    pub fn builder(config: ServerConfig) -> Result<ServerBuilder, ConfigError> {
        ServerBuilder::new(config)
    }

    /// Validates `config` and builds an engine whose rooms keep their
    /// messages in `store`.
    ///
    /// # Errors
    /// [`ServerError::Config`] naming the first setting that is out of range.
    pub fn with_history(
        config: ServerConfig,
        store: Arc<dyn HistoryStore>,
    ) -> Result<Self, ServerError> {
        Self::with_broker(config, store, Arc::new(LocalBroker))
    }

    /// Validates `config` and builds an engine whose rooms keep their
    /// messages in `store` and reach other nodes through `broker` (see
    /// [`crate::broker`]; a cluster broker comes with the store that reads
    /// its log).
    ///
    /// # Errors
    /// [`ServerError::Config`] naming the first setting that is out of range.
    pub fn with_broker(
        config: ServerConfig,
        store: Arc<dyn HistoryStore>,
        broker: Arc<dyn Broker>,
    ) -> Result<Self, ServerError> {
        let limits = config.validate()?;
        Self::assemble(
            config,
            limits,
            store,
            broker,
            Arc::new(MemoryAccounts::new()),
        )
    }

    /// The engine for settings that passed validation.
    fn assemble(
        config: ServerConfig,
        limits: Limits,
        store: Arc<dyn HistoryStore>,
        broker: Arc<dyn Broker>,
        account_store: Arc<dyn AccountStore>,
    ) -> Result<Self, ServerError> {
        let moderation = moderation::Moderation::load(
            account_store.as_ref(),
            limits.operators.clone(),
            &limits.room_owners,
        )
        .map_err(ServerError::Accounts)?;
        let accounts = accounts::Accounts::load(account_store.clone(), &limits)
            .map_err(ServerError::Accounts)?;
        let registry = RoomRegistry::with_history(Some(store), limits.recent_per_room);
        let room_limits = RoomLimits {
            max_rooms: limits.max_rooms,
            history_on_join: limits.history_on_join,
            history_page_max: limits.history_page_max,
        };
        let rooms = Rooms::new(registry, broker.clone(), room_limits);
        let tuning = Tuning::new(config, &limits);
        let shared = Arc::new(Shared {
            queue_budget: QueueBudget::new(limits.queue_budget),
            limits,
            rooms,
            broker,
            tuning,
            metrics: Counters::default(),
            listening: AtomicBool::new(false),
            accounts,
            moderation,
            irc_away: irc::away::AwayBoard::default(),
            browsers: browsers::RecentBrowsers::default(),
        });
        // What other nodes of a cluster change or ask (nothing on one
        // node). The sinks hold the engine weakly: the store and the
        // broker it owns must not keep it alive.
        let weak = Arc::downgrade(&shared);
        account_store.follow(Box::new(move |change| {
            if let Some(shared) = weak.upgrade() {
                bulletin::take_change(&shared, change);
            }
        }));
        let weak = Arc::downgrade(&shared);
        shared.broker.follow_bulletins(Box::new(move |payload| {
            if let Some(shared) = weak.upgrade() {
                bulletin::apply(&shared, payload);
            }
        }));
        let weak = Arc::downgrade(&shared);
        shared.accounts.tell_failures(Box::new(move |keys| {
            if let Some(shared) = weak.upgrade() {
                bulletin::send(&shared, &bulletin::Bulletin::LoginFailed { keys });
            }
        }));
        let weak = Arc::downgrade(&shared);
        shared.broker.answer_ban_masks(Box::new(move |nick| {
            weak.upgrade()
                .and_then(|shared| bulletin::mask_here(&shared, nick))
        }));
        Ok(Self { shared })
    }

    /// A handle for the operator: metrics, health and reloads (see
    /// [`Admin`]). Take it before [`Server::run`], which consumes the
    /// server; it stays valid while the server runs and after.
    pub fn admin(&self) -> Admin {
        Admin::new(self.shared.clone())
    }

    /// Serves `listener` until `shutdown` completes, then shuts down
    /// gracefully (see the module docs).
    ///
    /// # Errors
    /// [`ServerError::Transport`] when the listener fails in a way retrying
    /// cannot fix; the sessions are shut down first.
    pub async fn run<L: Listener>(
        self,
        listener: L,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        self.run_all(vec![listener], shutdown).await
    }

    /// Serves several listeners of one kind (say, an IPv4 and an IPv6
    /// address) as one server: the same rooms and the same limits.
    ///
    /// # Errors
    /// As [`Server::run`], and [`ServerError::NoListener`] for an empty list.
    pub async fn run_all<L: Listener>(
        self,
        listeners: Vec<L>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        self.run_with_irc(listeners, Vec::new(), shutdown).await
    }

    /// Serves `listeners` in the server's own dialects and `irc` in the
    /// IRC dialect (see docs/irc.md) as one server: the same rooms, nicks,
    /// history and limits.
    ///
    /// # Errors
    /// As [`Server::run`], and [`ServerError::NoListener`] when both lists
    /// are empty.
    pub async fn run_with_irc<L: Listener>(
        self,
        listeners: Vec<L>,
        irc: Vec<L>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        if listeners.is_empty() && irc.is_empty() {
            return Err(ServerError::NoListener);
        }
        // The listeners are bound, and accept from here on: set before the
        // `listening` lines, so whoever reads them finds the engine ready.
        self.shared.listening.store(true, Relaxed);
        let stop = CancellationToken::new();
        // Accept loops run as tasks and hand connections over this channel,
        // so one engine loop serves any number of listeners.
        let (conn_tx, mut conn_rx) =
            mpsc::channel::<(Kind, Result<Connection, TransportError>)>(64);
        let mut acceptors = JoinSet::new();
        let kinds = listeners
            .into_iter()
            .map(|l| (Kind::Chat, l))
            .chain(irc.into_iter().map(|l| (Kind::Irc, l)));
        for (kind, mut listener) in kinds {
            tracing::info!(addr = %listener.local_addr(), dialect = %kind.name(), "listening");
            let tx = conn_tx.clone();
            let stop = stop.clone();
            acceptors.spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        _ = stop.cancelled() => return,
                        a = listener.accept() => a,
                    };
                    let fatal = accepted.is_err();
                    if tx.send((kind, accepted)).await.is_err() || fatal {
                        return;
                    }
                }
            });
        }
        drop(conn_tx);

        if let Some(store) = self.shared.rooms.history().cloned() {
            let limits = &self.shared.limits;
            acceptors.spawn(sweep_history(
                store,
                limits.retention,
                limits.sweep_every,
                stop.clone(),
            ));
        }

        let permits = Arc::new(Semaphore::new(self.shared.limits.max_connections));
        let peers = Arc::new(PeerTable::new(&self.shared.limits));
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                accepted = conn_rx.recv() => match accepted {
                    Some((kind, Ok(conn))) => self.admit(conn, kind, &permits, &peers, &mut sessions, &stop),
                    Some((_, Err(e))) => break Err(ServerError::Transport(e)),
                    None => break Ok(()),
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        };

        tracing::info!(sessions = sessions.len(), "shutting down");
        self.shared.listening.store(false, Relaxed);
        stop.cancel();
        acceptors.abort_all();
        let deadline = self.shared.limits.shutdown_timeout;
        let drained = tokio::time::timeout(deadline, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = sessions.len(),
                "shutdown deadline passed; dropping connections"
            );
            sessions.shutdown().await;
        }
        self.shared.rooms.shutdown().await;
        if let Some(store) = self.shared.rooms.history().cloned() {
            // What the sessions said last is committed before run returns.
            match tokio::task::spawn_blocking(move || store.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "history flush failed"),
                Err(e) => tracing::error!(error = %e, "history flush panicked"),
            }
        }
        tracing::info!("stopped");
        result
    }

    /// Starts a session for `conn`, or turns it away when the server is
    /// full or the peer's address has used up its share.
    fn admit(
        &self,
        conn: Connection,
        kind: Kind,
        permits: &Arc<Semaphore>,
        peers: &Arc<PeerTable>,
        sessions: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(peer = %conn.peer, "refused: server full");
            self.shared.metrics.refused(Refused::ServerFull);
            sessions.spawn(refuse(conn, ErrorCode::ServerFull));
            return;
        };
        // Taken after the permit, so addresses that hold connections are
        // never more than max_connections: that bounds the table.
        let slot = match conn.peer.ip().map(|ip| peers.admit(ip)).transpose() {
            Ok(slot) => slot,
            Err(refused) => {
                let (code, counted) = match refused.reason {
                    Refusal::TooMany => (ErrorCode::TooManyConnections, Refused::TooMany),
                    Refusal::TooFast => (ErrorCode::ConnectingTooFast, Refused::TooFast),
                };
                self.shared.metrics.refused(counted);
                if refused.first {
                    tracing::warn!(peer = %conn.peer, %code, "refused: per-address limit");
                } else {
                    tracing::debug!(peer = %conn.peer, %code, "refused: per-address limit");
                }
                sessions.spawn(refuse(conn, code));
                return;
            }
        };
        let shared = self.shared.clone();
        let stop = stop.child_token();
        sessions.spawn(async move {
            serve(shared, conn, kind, stop).await;
            drop(slot);
            drop(permit);
        });
    }
}

/// Serves one admitted connection in the dialects of its listener.
///
/// IRC's session is boxed: a task is as large as the largest future it may
/// run, and IRC's (its registration, SASL login and moderation) is about
/// twice the native one's, so inline it sized every native connection's
/// task too (3,328 bytes a task in a release build instead of 1,920; an IRC
/// connection pays one allocation more instead). Not an `async fn`, which
/// would keep its arguments beside the future it awaits.
fn serve(
    shared: Arc<Shared>,
    conn: Connection,
    kind: Kind,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send {
    match kind {
        Kind::Chat => Either::Left(session::serve(shared, conn, stop)),
        Kind::Irc => Either::Right(Box::pin(irc::serve(shared, conn, stop))),
    }
}

/// Which dialects a listener's connections speak.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Native, text, or the web side: told apart by their first bytes.
    Chat,
    /// IRC, which a listener of its own serves: an IRC client's first
    /// line (`CAP`, `NICK`) would read as text.
    Irc,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Irc => "irc",
        }
    }
}

/// Applies the retention policy every `every` until `stop`.
async fn sweep_history(
    store: Arc<dyn HistoryStore>,
    retention: crate::history::Retention,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.sweep(retention, now_ms())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "history retention applied"),
            Ok(Err(e)) => tracing::warn!(error = %e, "history retention failed"),
            Err(e) => tracing::warn!(error = %e, "history retention panicked"),
        }
    }
}

/// Tells a client why it is turned away and closes. The dialect is not
/// known yet, so the line is JSON, which a person can still read.
async fn refuse(conn: Connection, code: ErrorCode) {
    use futures::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let message = match code {
        ErrorCode::TooManyConnections => "too many connections from your address",
        ErrorCode::ConnectingTooFast => "your address connects too fast; slow down",
        _ => "the server is full; try again later",
    };
    let frame = crate::protocol::encode(&ServerFrame::new(ServerMessage::Error {
        code,
        message: message.to_owned(),
    }));
    let Connection {
        mut reader,
        mut writer,
        ..
    } = conn;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        writer.write_all(&frame).await?;
        writer.shutdown().await
    })
    .await;
    // Closing a socket with unread input sends a reset, which some client
    // stacks answer by dropping the error line unread (a client typically
    // sends `hello` at once). Discard what has already arrived, without
    // waiting: a refused peer must not hold a descriptor for long, or a
    // connect flood would turn refusals into descriptor exhaustion.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match reader.read(&mut sink).now_or_never() {
            Some(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of_val;

    use tokio_util::sync::CancellationToken;

    use super::{Kind, Server, ServerConfig, irc, session};
    use crate::transport::{Connection, PeerAddr};

    fn conn() -> Connection {
        let (_client, server) = tokio::io::duplex(64);
        Connection::from_stream(server, PeerAddr::Memory(1))
    }

    /// Every connection's task holds this future for as long as the
    /// connection lasts, mostly idle: IRC's larger session must not size a
    /// native connection's task. (Inline, it did: the task was IRC's size,
    /// and idle native connections cost 1 KiB more each.)
    #[tokio::test]
    async fn a_native_connections_task_is_the_native_sessions_size() {
        let shared = Server::new(ServerConfig::default()).unwrap().shared;
        let stop = CancellationToken::new;
        let native = size_of_val(&session::serve(shared.clone(), conn(), stop()));
        let irc = size_of_val(&irc::serve(shared.clone(), conn(), stop()));
        let task = size_of_val(&super::serve(shared.clone(), conn(), Kind::Chat, stop()));
        println!("native session {native} bytes, IRC session {irc}, a connection's task {task}");
        assert!(
            task <= native + 16,
            "a connection's task is {task} bytes, the native session {native} (IRC's {irc})"
        );
        // And the native session itself stays small: 1,656 bytes in a
        // debug build today.
        assert!(task <= 2048, "a connection's task is {task} bytes");
    }
}
