//! An engine on a loopback port, stopped gracefully on request and
//! aborted when dropped.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::{Server, ServerConfig, ServerError};
use crate::transport::{Listener, TcpListener};

/// The longest a graceful shutdown may take before [`TestServer::stop`]
/// fails: well past any shutdown timeout a test configures, so that only a
/// server that ignores its own deadline hits it.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Where a test server listens unless told otherwise: a free port.
const ANY_PORT: &str = "127.0.0.1:0";

/// An engine serving until [`TestServer::stop`], or until dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Cancelled to start the graceful shutdown.
    stop: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    /// The default engine on `127.0.0.1` and a free port.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> Self {
        Self::start_at(ANY_PORT).await
    }

    /// The default engine on `addr` (a port a previous server used, to
    /// test reconnects).
    ///
    /// # Panics
    /// When `addr` cannot be bound.
    pub async fn start_at(addr: &str) -> Self {
        Self::serve_at(addr, default_server()).await
    }

    /// An engine with `config` on a free port.
    ///
    /// # Panics
    /// When `config` is invalid or no port can be bound.
    pub async fn with_config(config: ServerConfig) -> Self {
        let server = Server::new(config).expect("the test's config is valid");
        Self::serve(server).await
    }

    /// `server`, built by the caller (with a durable store, say), on a free
    /// port.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn serve(server: Server) -> Self {
        Self::serve_at(ANY_PORT, server).await
    }

    /// `server` on `addr` (`127.0.0.1:0` for a free port, or a port a
    /// previous server used, to test reconnects).
    ///
    /// # Panics
    /// When `addr` cannot be bound.
    pub async fn serve_at(addr: &str, server: Server) -> Self {
        let listener = TcpListener::bind(addr.to_owned()).await.expect("bind");
        let addr = listener.local_socket_addr();
        Self::serve_on(server, listener, addr)
    }

    /// `server` on a listener the caller made (a TLS one, say) that listens
    /// on `addr`.
    pub fn serve_on<L: Listener>(server: Server, listener: L, addr: SocketAddr) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(listener, stop.clone().cancelled_owned()));
        Self { addr, stop, task }
    }

    /// Shuts the server down gracefully, waits until it has stopped, and
    /// returns how long that took (for tests of the shutdown deadline).
    ///
    /// # Panics
    /// When the server has not stopped within 15 s, when its task panicked,
    /// or when it returned an error.
    pub async fn stop(mut self) -> Duration {
        let started = Instant::now();
        self.stop.cancel();
        let result = tokio::time::timeout(STOP_LIMIT, &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("the server did not stop within {STOP_LIMIT:?}"))
            .expect("the server task");
        if let Err(e) = result {
            panic!("the server failed: {e}");
        }
        started.elapsed()
    }
}

/// The engine with every setting at its default.
fn default_server() -> Server {
    Server::new(ServerConfig::default()).expect("the default config is valid")
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that fails before `stop` must not leave the engine
        // serving for the rest of the runtime's life.
        self.stop.cancel();
        self.task.abort();
    }
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
