//! The chatroom server binary: reads its settings, sets up logging and
//! signal handling, binds the listen addresses and runs the engine from
//! `chatroom-core` until SIGINT or SIGTERM.
//!
//! It is the error boundary: every failure is printed once, with its cause
//! chain, on one stderr line, and mapped to an exit code (see `--help`):
//! 0 clean shutdown, 1 runtime failure, 2 usage or configuration error,
//! 3 cannot listen.

mod cli;
mod ops;
mod settings;

use std::error::Error;
use std::future::Future;
use std::process::ExitCode;

use chatroom_core::server::{ConfigError, Server, ServerError, TlsConfig};
use chatroom_core::transport::{ServerCert, TcpListener, TlsListener, TransportError};

use crate::cli::Cli;
use crate::settings::{CommandLine, Settings, SettingsError};

/// Why the server did not run to a clean shutdown.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// A setting could not be read (exit 2).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The engine refused a setting's value (exit 2).
    #[error(transparent)]
    Config(ConfigError),
    /// An address could not be bound (exit 3).
    #[error(transparent)]
    Listen(TransportError),
    /// The TLS certificate or key cannot be used (exit 2).
    #[error(transparent)]
    Tls(TransportError),
    /// The engine could not be built: the history store could not be
    /// opened or the cluster joined (exit 1), or a secret file could not be
    /// read (exit 2).
    #[error(transparent)]
    Start(ServerError),
    /// The async runtime could not be built (exit 1).
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// SIGINT, SIGTERM or SIGHUP could not be hooked (exit 1).
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The engine stopped with an error (exit 1).
    #[error("server failed")]
    Serve(#[source] ServerError),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Settings(_)
            | Self::Config(_)
            | Self::Tls(_)
            | Self::Start(ServerError::Config(_) | ServerError::SecretFile { .. }) => {
                ExitCode::from(2)
            }
            Self::Listen(_) => ExitCode::from(3),
            Self::Start(_) | Self::Runtime(_) | Self::Signals(_) | Self::Serve(_) => {
                ExitCode::FAILURE
            }
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
    let command_line = cli.command_line();
    let settings = settings::load(&command_line, std::env::vars_os())?;
    // Values are checked before anything is bound, so a bad value is a
    // configuration error and never a half-started server.
    let builder = Server::builder(settings.server.clone()).map_err(Failure::Config)?;
    if cli.print_config {
        print!("{}", settings.to_toml());
        return Ok(());
    }
    // Certificates are checked before anything is bound or opened: a
    // missing or mismatched key is a configuration error (exit 2).
    let tls = listener_tls(&settings.server.tls)?;
    ops::init_logging(settings.server.ops.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    runtime.block_on(async {
        // The history store, or the cluster, the settings name.
        let server = builder.build().await.map_err(Failure::Start)?;
        serve(server, command_line, &settings, tls).await
    })
}

/// The certificate the listeners serve, if the settings name one.
fn listener_tls(config: &TlsConfig) -> Result<Option<ServerCert>, Failure> {
    if config.cert.is_empty() {
        return Ok(None);
    }
    let cert = std::path::Path::new(&config.cert);
    let key = std::path::Path::new(&config.key);
    ServerCert::load(cert, key).map(Some).map_err(Failure::Tls)
}

async fn serve(
    server: Server,
    command_line: CommandLine,
    settings: &Settings,
    tls: Option<ServerCert>,
) -> Result<(), Failure> {
    // A SIGHUP replaces the certificate inside this configuration.
    let tls_config = match &tls {
        Some(cert) => Some(cert.server_config().map_err(Failure::Tls)?),
        None => None,
    };
    // Hooked before binding, so a signal that arrives as soon as the
    // `listening` line is out already shuts down gracefully.
    let shutdown = shutdown_signal().map_err(Failure::Signals)?;
    let admin = server.admin();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let hangup = signal(SignalKind::hangup()).map_err(Failure::Signals)?;
        tokio::spawn(ops::reload_on_hangup(
            hangup,
            command_line,
            admin.clone(),
            settings.clone(),
            tls,
        ));
    }
    #[cfg(not(unix))]
    drop((command_line, tls));
    // Validated with the rest of the settings, so this is an address.
    if let Ok(Some(addr)) = settings.server.ops.admin_addr() {
        // Bound before the chat listeners: when they are up, so is this.
        let listener = TcpListener::bind(addr).await.map_err(Failure::Listen)?;
        tracing::info!(admin_addr = %listener.local_socket_addr(), "admin endpoint up");
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the admin endpoint is not on loopback; it needs no login");
        }
        tokio::spawn(async move {
            if let Err(e) = admin.serve(listener, std::future::pending()).await {
                tracing::error!(error = %ops::chain(&e), "admin endpoint failed");
            }
        });
    }
    let listeners = bind(&settings.listen).await?;
    let irc = bind(&settings.irc_listen).await?;
    let bound: Vec<_> = listeners
        .iter()
        .map(TcpListener::local_socket_addr)
        .collect();
    let announcement = ops::announce(settings, &bound, tls_config.is_some());
    let served = match tls_config {
        None => server.run_with_irc(listeners, irc, shutdown).await,
        Some(config) => {
            // With a certificate every listener speaks TLS, IRC's too.
            let tls = |tcp| TlsListener::new(tcp, config.clone());
            let listeners = listeners.into_iter().map(tls).collect();
            let irc = irc.into_iter().map(tls).collect();
            server.run_with_irc(listeners, irc, shutdown).await
        }
    };
    if let Some(announcement) = announcement {
        // Goodbyes go out on the responder's thread; waiting for them may
        // block for a moment.
        let _ = tokio::task::spawn_blocking(move || announcement.stop()).await;
    }
    served.map_err(Failure::Serve)
}

/// Binds every address, in order.
async fn bind(addrs: &[String]) -> Result<Vec<TcpListener>, Failure> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(
            TcpListener::bind(addr.as_str())
                .await
                .map_err(Failure::Listen)?,
        );
    }
    Ok(listeners)
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

/// Prints `error: ` and the error with each of its causes once, on one line.
fn report(e: &dyn Error) {
    eprintln!("error: {}", ops::chain(e));
}
