//! What the binary does for its operator besides chat: the log format,
//! the admin endpoint (`admin_listen`) and reloading the settings on
//! SIGHUP.

use std::error::Error;
use std::io::IsTerminal;
use std::path::Path;

use chatroom_core::discovery::{self, Announcement, Service};
use chatroom_core::server::{Admin, LogFormat};
use chatroom_core::transport::ServerCert;

use crate::settings::{self, CommandLine, Settings};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): readable lines,
/// in colour only on a terminal, or one JSON object per line.
pub(crate) fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // A collector wants the event's fields at the top level, next to
        // `message`, not nested under `fields`.
        LogFormat::Json => builder.json().flatten_event(true).init(),
        _ => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The error and each of its causes, on one line.
pub(crate) fn chain(e: &dyn Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(&format!(": {c}"));
        cause = c.source();
    }
    line.replace('\n', " ")
}

/// Reads the settings again, from the same file, environment and command
/// line as at start, and applies what can change while running, the TLS
/// certificate and key included (`tls`, when the listeners speak TLS). A
/// file that cannot be read or holds a bad value changes nothing; a
/// certificate that cannot be used keeps the one in use.
pub(crate) fn reload(
    command_line: &CommandLine,
    admin: &Admin,
    running: &Settings,
    tls: Option<&ServerCert>,
) {
    let fresh = match settings::load(command_line, std::env::vars_os()) {
        Ok(fresh) => fresh,
        Err(e) => {
            tracing::warn!(error = %chain(&e), "reload failed; keeping the current settings");
            return;
        }
    };
    let reloaded = match admin.reload(&fresh.server) {
        Ok(reloaded) => reloaded,
        Err(e) => {
            tracing::warn!(error = %chain(&e), "reload failed; keeping the current settings");
            return;
        }
    };
    let mut applied = reloaded.applied;
    let mut needs_restart = reloaded.needs_restart;
    if fresh.listen != running.listen {
        needs_restart.insert(0, settings::LISTEN.to_owned());
    }
    if let Some(cert) = tls {
        reload_certificate(cert, &fresh, &mut applied, &mut needs_restart);
    }
    tracing::info!(applied = %applied.join(","), "settings reloaded");
    if !needs_restart.is_empty() {
        tracing::warn!(
            settings = %needs_restart.join(","),
            "changed settings take effect only after a restart; keeping their current values"
        );
    }
}

/// Reads the certificate and key again, from the paths the fresh settings
/// name (the same files, usually, with new contents). Turning TLS off
/// needs a restart; new paths do not, so they are not named as such.
fn reload_certificate(
    cert: &ServerCert,
    fresh: &Settings,
    applied: &mut Vec<String>,
    needs_restart: &mut Vec<String>,
) {
    let paths = &fresh.server.tls;
    if paths.cert.is_empty() {
        // The engine already named tls_cert and tls_key as needing a restart.
        return;
    }
    needs_restart.retain(|key| key != "tls_cert" && key != "tls_key");
    match cert.reload(Path::new(&paths.cert), Path::new(&paths.key)) {
        Ok(()) => {
            tracing::info!(cert = %paths.cert, "tls certificate reloaded");
            applied.extend(["tls_cert".to_owned(), "tls_key".to_owned()]);
        }
        Err(e) => tracing::warn!(
            error = %chain(&e),
            "tls certificate reload failed; keeping the current certificate"
        ),
    }
}

/// Reloads the settings at every SIGHUP, for as long as the server runs.
#[cfg(unix)]
pub(crate) async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    command_line: CommandLine,
    admin: Admin,
    running: Settings,
    tls: Option<ServerCert>,
) {
    while hangup.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", "reloading settings");
        // Reading a few small files: too short to matter to the runtime.
        reload(&command_line, &admin, &running, tls.as_ref());
    }
}

/// Announces the chat listeners on the LAN by multicast DNS, when
/// `discovery` is on. A failure is logged and the server runs without it:
/// discovery only saves typing an address.
pub(crate) fn announce(
    settings: &Settings,
    addrs: &[std::net::SocketAddr],
    tls: bool,
) -> Option<Announcement> {
    let ops = &settings.server.ops;
    if !ops.discovery {
        return None;
    }
    let name = &settings.server.server_name;
    let services: Vec<Service> = addrs
        .iter()
        .map(|addr| Service::new(name.clone(), *addr).with_tls(tls))
        .collect();
    match Announcement::start(&discovery::host_name(), &services, ops.discovery_port) {
        Ok(announcement) => {
            let names = announcement.names().join(", ");
            tracing::info!(service = discovery::SERVICE_TYPE, instances = %names, "announced on the LAN");
            Some(announcement)
        }
        Err(e) => {
            tracing::warn!(error = %chain(&e), "discovery failed; serving without it");
            None
        }
    }
}
