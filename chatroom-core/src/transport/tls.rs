//! TLS over TCP, with rustls: a listener whose connections are TLS
//! sessions, a connector that opens them, and loading of PEM files into a
//! certificate that can be replaced while it is served ([`ServerCert`]).
//!
//! Handshakes run beside the accept loop, never in it: a peer that opens a
//! connection and stalls (or speaks plain text to a TLS port) costs one
//! pending handshake until its timeout, and cannot hold up anyone else.

use std::fmt;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{Connection, Connector, Listener, PeerAddr, TcpListener, TransportError};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; the listener stops accepting TCP
/// connections while this many are pending.
const MAX_PENDING: usize = 1024;

type Handshake = Pin<Box<dyn Future<Output = Option<Connection>> + Send>>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a certificate chain and its private key (PEM files) into a server
/// configuration.
///
/// # Errors
/// [`TransportError::TlsFile`] when a file cannot be read or holds no
/// certificate or key; [`TransportError::Tls`] when rustls refuses them,
/// for example a key that does not match the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    ServerCert::load(cert, key)?.server_config()
}

/// Reads a certificate chain and its key and checks that they belong
/// together.
fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TransportError> {
    let file_error = |path: &Path, reason: String| TransportError::TlsFile {
        path: path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(cert, "holds no certificate".to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e.to_string()))?;
    let certified =
        CertifiedKey::from_der(chain, key_der, &provider()).map_err(TransportError::Tls)?;
    Ok(Arc::new(certified))
}

/// A server's certificate and key, which can be replaced while listeners
/// serve it: every handshake after [`ServerCert::reload`] shows the new
/// certificate, and sessions already established keep theirs (TLS never
/// shows a certificate again after the handshake).
///
/// Cheap to clone; clones share the certificate.
#[derive(Debug, Clone)]
pub struct ServerCert {
    current: Arc<CurrentCert>,
}

/// The certificate in use, behind a lock taken once per handshake and
/// held only to clone an `Arc`.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

impl ServerCert {
    /// Reads the certificate chain (leaf first) and its private key from
    /// PEM files.
    ///
    /// # Errors
    /// As [`server_config`].
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TransportError> {
        let current = CurrentCert(RwLock::new(certified_key(cert, key)?));
        Ok(Self {
            current: Arc::new(current),
        })
    }

    /// Reads the files again and, if they hold a certificate and its key,
    /// serves them to every new handshake. On an error nothing changes:
    /// the certificate in use stays.
    ///
    /// # Errors
    /// As [`server_config`].
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TransportError> {
        let fresh = certified_key(cert, key)?;
        *self
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// A server configuration that serves this certificate, and whatever
    /// replaces it, for a [`TlsListener`].
    ///
    /// # Errors
    /// [`TransportError::Tls`] when the provider offers no safe protocol
    /// version (never with the built-in one).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TransportError> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TransportError::Tls)?
            .with_no_client_auth()
            .with_cert_resolver(self.current.clone());
        Ok(Arc::new(config))
    }
}

/// A client configuration trusting the system's roots and, when given, the
/// certificates in `extra_ca` (a PEM file: a private CA).
///
/// # Errors
/// [`TransportError::TlsFile`] when `extra_ca` cannot be read or holds no
/// certificate.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    // A system without a certificate store still works with a private CA.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let file_error = |reason: String| TransportError::TlsFile {
            path: path.display().to_string(),
            reason,
        };
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_error(e.to_string()))? {
            let cert = cert.map_err(|e| file_error(e.to_string()))?;
            roots.add(cert).map_err(TransportError::Tls)?;
            added += 1;
        }
        if added == 0 {
            return Err(file_error("holds no certificate".to_owned()));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TransportError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TCP listener whose connections are TLS sessions.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    /// Handshakes in progress; polled while `accept` waits.
    pending: FuturesUnordered<Handshake>,
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            pending: FuturesUnordered::new(),
        }
    }

    /// The bound address.
    pub fn local_socket_addr(&self) -> std::net::SocketAddr {
        self.tcp.local_socket_addr()
    }
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("tcp", &self.tcp)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Listener for TlsListener {
    async fn accept(&mut self) -> Result<Connection, TransportError> {
        loop {
            let room_for_more = self.pending.len() < MAX_PENDING;
            tokio::select! {
                accepted = self.tcp.accept_stream(), if room_for_more => {
                    let (stream, peer) = accepted?;
                    let acceptor = self.acceptor.clone();
                    self.pending.push(Box::pin(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => Some(Connection::from_stream(tls, PeerAddr::Net(peer))),
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "tls handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "tls handshake timed out");
                                None
                            }
                        }
                    }));
                }
                Some(done) = self.pending.next(), if !self.pending.is_empty() => {
                    if let Some(conn) = done {
                        return Ok(conn);
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> String {
        self.tcp.local_addr()
    }
}

/// Opens TLS connections to one address.
#[derive(Clone)]
pub struct TlsConnector {
    addr: String,
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
}

impl TlsConnector {
    /// A connector for `addr` (`host:port`) that checks the server's
    /// certificate against `config`'s roots and the host name in `addr`.
    ///
    /// # Errors
    /// [`TransportError::TlsName`] when the host is neither a DNS name nor
    /// an IP address.
    pub fn new(
        addr: impl Into<String>,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self, TransportError> {
        let addr = addr.into();
        let host = match addr.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => addr.as_str(),
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|_| TransportError::TlsName {
            host: host.to_owned(),
        })?;
        Ok(Self {
            addr,
            name,
            connector: tokio_rustls::TlsConnector::from(config),
        })
    }
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Connector for TlsConnector {
    async fn connect(&self) -> Result<Connection, TransportError> {
        let (stream, peer) = super::tcp::connect_stream(&self.addr).await?;
        let tls = self
            .connector
            .connect(self.name.clone(), stream)
            .await
            .map_err(|source| TransportError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        Ok(Connection::from_stream(tls, PeerAddr::Net(peer)))
    }

    fn describe(&self) -> String {
        format!("{} (tls)", self.addr)
    }
}
