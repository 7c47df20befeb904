//! Helpers for the tests of programs built on this crate (and of this
//! workspace's binaries): an engine on a free loopback port, and a private
//! CA with a certificate it signed. Behind the `test-util` feature; not part
//! of the stable API.

use std::fmt;
use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::{Server, ServerConfig};
use crate::transport::{Listener, TcpListener};

/// An engine serving until [`TestServer::stop`], or until dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Cancelled to start the graceful shutdown.
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl TestServer {
    /// The default engine on `127.0.0.1` and a free port.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> Self {
        let server = Server::new(ServerConfig::default()).expect("the default config is valid");
        Self::serve_on("127.0.0.1:0", server).await
    }

    /// `server` on `addr` (`127.0.0.1:0` for a free port, or a port a
    /// previous server used, to test reconnects).
    ///
    /// # Panics
    /// When `addr` cannot be bound.
    pub async fn serve_on(addr: &str, server: Server) -> Self {
        let listener = TcpListener::bind(addr.to_owned()).await.expect("bind");
        let addr = listener.local_socket_addr();
        Self::serve(server, listener, addr)
    }

    /// `server` on a listener the caller made (a TLS one, say) that listens
    /// on `addr`.
    pub fn serve<L: Listener>(server: Server, listener: L, addr: SocketAddr) -> Self {
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            server
                .run(listener, shutdown)
                .await
                .expect("the server runs");
        });
        Self { addr, stop, task }
    }

    /// Shuts the server down gracefully and waits until it has stopped.
    ///
    /// # Panics
    /// When the server task panicked.
    pub async fn stop(mut self) {
        self.stop.cancel();
        (&mut self.task).await.expect("the server task");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
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

/// A private CA and a certificate it signed for `localhost` and
/// `127.0.0.1`, written as PEM files (`ca.pem`, `cert.pem`, `key.pem`, and
/// an unrelated `other-key.pem`) in a fresh directory removed on drop.
#[cfg(feature = "tls")]
#[derive(Debug)]
pub struct TestPki {
    dir: std::path::PathBuf,
}

#[cfg(feature = "tls")]
impl TestPki {
    /// Makes the files; `name` keeps directories of concurrent tests apart.
    ///
    /// # Panics
    /// When the files cannot be made.
    pub fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

        let dir = std::env::temp_dir().join(format!("chatroom-pki-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(names)
            .expect("certificate parameters")
            .signed_by(&key, &issuer)
            .expect("a certificate");
        let other = KeyPair::generate().expect("another key");
        for (file, pem) in [
            ("ca.pem", ca.pem()),
            ("cert.pem", cert.pem()),
            ("key.pem", key.serialize_pem()),
            ("other-key.pem", other.serialize_pem()),
        ] {
            std::fs::write(dir.join(file), pem).expect("a PEM file");
        }
        Self { dir }
    }

    /// The path of one of the files.
    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.join(file)
    }
}

#[cfg(feature = "tls")]
impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub use crate::registry::rig::FanoutRig;
