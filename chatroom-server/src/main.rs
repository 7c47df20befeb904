//! The chatroom server binary: reads its settings, sets up logging and
//! signal handling, binds the listen addresses and runs the engine from
//! `chatroom-core` until SIGINT or SIGTERM.
//!
//! It is the error boundary: every failure is printed once, with its cause
//! chain, on one stderr line, and mapped to an exit code (see `--help`):
//! 0 clean shutdown, 1 runtime failure, 2 usage or configuration error,
//! 3 cannot listen.

mod cli;
mod settings;

use std::error::Error;
use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

use std::sync::Arc;

use chatroom_core::broker::nats::{
    ClientCert, NatsAuth, NatsBroker, NatsConfig, NatsTls, redact_url,
};
use chatroom_core::broker::{BrokerError, Secret};
use chatroom_core::history::{HistoryError, SqliteStore};
use chatroom_core::server::{HistoryKind, Server, ServerConfig, ServerError};
use chatroom_core::transport::{TcpListener, TlsListener, TransportError, tls};

use crate::cli::Cli;
use crate::settings::SettingsError;

/// Why the server did not run to a clean shutdown.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// A setting could not be read (exit 2).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The engine refused a setting's value (exit 2).
    #[error(transparent)]
    Config(ServerError),
    /// An address could not be bound (exit 3).
    #[error(transparent)]
    Listen(TransportError),
    /// The TLS certificate or key cannot be used (exit 2).
    #[error(transparent)]
    Tls(TransportError),
    /// The history store could not be opened (exit 1).
    #[error("cannot open the history store")]
    History(#[source] HistoryError),
    /// A password or token file could not be read (exit 2).
    #[error("cannot read the file of setting {key}: {}", path.display())]
    SecretFile {
        /// The setting that names the file.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The cluster's NATS could not be reached (exit 1).
    #[error("cannot join the cluster")]
    Cluster(#[source] BrokerError),
    /// The async runtime could not be built (exit 1).
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// SIGINT or SIGTERM could not be hooked (exit 1).
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The engine stopped with an error (exit 1).
    #[error("server failed")]
    Serve(#[source] ServerError),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Settings(_) | Self::Config(_) | Self::Tls(_) | Self::SecretFile { .. } => {
                ExitCode::from(2)
            }
            Self::Listen(_) => ExitCode::from(3),
            Self::History(_)
            | Self::Cluster(_)
            | Self::Runtime(_)
            | Self::Signals(_)
            | Self::Serve(_) => ExitCode::FAILURE,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            e.exit_code()
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let settings = settings::load(cli, std::env::vars_os())?;
    // Values are checked before anything is bound, so a bad value is a
    // configuration error and never a half-started server.
    let server = Server::new(settings.server.clone()).map_err(|e| match e {
        ServerError::Config(_) => Failure::Config(e),
        other => Failure::Serve(other),
    })?;
    if cli.print_config {
        print!("{}", settings.to_toml());
        return Ok(());
    }
    // Certificates are checked before anything is bound or opened: a
    // missing or mismatched key is a configuration error (exit 2).
    let config = &settings.server;
    let tls = if config.tls_cert.is_empty() {
        None
    } else {
        let cert = std::path::Path::new(&config.tls_cert);
        let key = std::path::Path::new(&config.tls_key);
        Some(tls::server_config(cert, key).map_err(Failure::Tls)?)
    };
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    let server = match config.history {
        // In a cluster, history is the rooms' JetStream streams.
        _ if !config.cluster.is_empty() => runtime.block_on(join_cluster(config))?,
        HistoryKind::Memory => server,
        HistoryKind::Sqlite => {
            let dir = std::path::Path::new(&config.data_dir);
            let store = SqliteStore::open(dir, config.history_sync).map_err(Failure::History)?;
            tracing::info!(path = %store.path().display(), "history store opened");
            Server::with_history(config.clone(), Arc::new(store)).map_err(Failure::Config)?
        }
    };
    runtime.block_on(serve(server, &settings.listen, tls))
}

/// Connects to the cluster's NATS and builds an engine that shares its
/// rooms, history and nicks with the other nodes.
async fn join_cluster(config: &ServerConfig) -> Result<Server, Failure> {
    let node = if config.node_name.is_empty() {
        format!("node-{}", std::process::id())
    } else {
        config.node_name.clone()
    };
    let mut nats = NatsConfig::new(config.cluster.clone(), node.clone());
    nats.nick_lease = std::time::Duration::from_secs(config.nick_lease_secs);
    nats.retention = config.retention();
    nats.replicas = config.cluster_replicas;
    (nats.auth, nats.tls) = nats_security(config)?;
    let (broker, store) = NatsBroker::connect(nats).await.map_err(Failure::Cluster)?;
    let servers: Vec<String> = config.cluster.iter().map(|url| redact_url(url)).collect();
    tracing::info!(%node, ?servers, "joined the cluster");
    Server::with_broker(config.clone(), store, broker).map_err(Failure::Config)
}

/// The NATS credentials and TLS the settings name. A password or token
/// file is read here, so the secret need be on no command line.
fn nats_security(config: &ServerConfig) -> Result<(NatsAuth, NatsTls), Failure> {
    // `ServerConfig` validation already made sure at most one way is set.
    let auth = if !config.cluster_user.is_empty() {
        NatsAuth::UserPassword {
            user: config.cluster_user.clone(),
            password: secret(
                &config.cluster_password,
                &config.cluster_password_file,
                "cluster_password_file",
            )?,
        }
    } else if !config.cluster_token.is_empty() || !config.cluster_token_file.is_empty() {
        NatsAuth::Token(secret(
            &config.cluster_token,
            &config.cluster_token_file,
            "cluster_token_file",
        )?)
    } else if !config.cluster_creds.is_empty() {
        NatsAuth::CredsFile(config.cluster_creds.clone().into())
    } else {
        NatsAuth::None
    };
    let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
    let tls = NatsTls {
        ca: path(&config.cluster_tls_ca),
        client_cert: path(&config.cluster_tls_cert)
            .zip(path(&config.cluster_tls_key))
            .map(|(cert, key)| ClientCert { cert, key }),
        required: config.cluster_tls_required,
    };
    Ok((auth, tls))
}

/// `value`, or the text of `file` (when set) less one final line break.
fn secret(value: &Secret, file: &str, key: &'static str) -> Result<Secret, Failure> {
    if file.is_empty() {
        return Ok(value.clone());
    }
    let text = std::fs::read_to_string(file).map_err(|source| Failure::SecretFile {
        key,
        path: file.into(),
        source,
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(Secret::new(text.strip_suffix('\r').unwrap_or(text)))
}

async fn serve(
    server: Server,
    addrs: &[String],
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), Failure> {
    // Hooked before binding, so a signal that arrives as soon as the
    // `listening` line is out already shuts down gracefully.
    let shutdown = shutdown_signal().map_err(Failure::Signals)?;
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(
            TcpListener::bind(addr.as_str())
                .await
                .map_err(Failure::Listen)?,
        );
    }
    let served = match tls {
        None => server.run_all(listeners, shutdown).await,
        Some(config) => {
            let listeners = listeners
                .into_iter()
                .map(|tcp| TlsListener::new(tcp, config.clone()))
                .collect();
            server.run_all(listeners, shutdown).await
        }
    };
    served.map_err(Failure::Serve)
}

/// Completes on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = %name, "shutdown requested");
    })
}

/// Completes on the first Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!(signal = "Ctrl-C", "shutdown requested");
        } else {
            std::future::pending::<()>().await;
        }
    })
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), in colour only
/// on a terminal.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Prints `error: ` and the error with each of its causes once, on one line.
fn report(e: &dyn Error) {
    let mut line = format!("error: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(&format!(": {c}"));
        cause = c.source();
    }
    eprintln!("{}", line.replace('\n', " "));
}
