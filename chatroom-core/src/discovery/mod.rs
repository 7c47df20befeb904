//! LAN discovery by multicast DNS and DNS-SD (RFC 6762, RFC 6763): a
//! server announces itself as an instance of `_chatroom._tcp`
//! ([`Announcement`]), and a client lists the instances that answer
//! ([`browse`]).
//!
//! mdns-sd runs its own thread and needs no async runtime; [`browse`]
//! blocks for its wait, so async callers run it on a blocking thread.
//! Imports nothing from the rest of the crate.

mod error;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

pub use error::DiscoveryError;

/// The DNS-SD service type chatroom servers announce.
pub const SERVICE_TYPE: &str = "_chatroom._tcp.local.";

/// The port multicast DNS uses; another one only keeps a test (or a
/// private deployment) apart from everyone else's announcements.
pub const MDNS_PORT: u16 = 5353;

/// TXT key: `1` when the port speaks TLS.
const TXT_TLS: &str = "tls";
/// TXT key: the server's `server_name`.
const TXT_NAME: &str = "name";

/// Longest DNS label, which an instance name must fit.
const MAX_LABEL: usize = 63;

/// What a server announces: one instance per chat port.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Service {
    /// The server's name (`server_name`), shown to people choosing.
    pub name: String,
    /// Where it listens. An unspecified address (`0.0.0.0`, `::`) is
    /// announced as every address of the host's interfaces.
    pub addr: SocketAddr,
    /// Whether the port speaks TLS.
    pub tls: bool,
}

impl Service {
    /// A service named `name` on `addr`, plain TCP.
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            tls: false,
        }
    }

    /// The same service, with TLS on or off.
    #[must_use]
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }
}

/// A server announced on the network until this is dropped (or
/// [`stop`](Self::stop)ped): then it says goodbye, so browsers forget it
/// at once rather than when the record expires.
pub struct Announcement {
    daemon: ServiceDaemon,
    /// Full DNS-SD names of the registered instances.
    registered: Vec<String>,
}

impl Announcement {
    /// Announces every service in `services` on the host named `host`
    /// (its name on the LAN, `host.local.`), multicast DNS on `mdns_port`
    /// (normally [`MDNS_PORT`]).
    ///
    /// # Errors
    /// [`DiscoveryError::Mdns`] when the multicast socket cannot be opened
    /// or a record cannot be made.
    pub fn start(host: &str, services: &[Service], mdns_port: u16) -> Result<Self, DiscoveryError> {
        let daemon = ServiceDaemon::new_with_port(mdns_port).map_err(DiscoveryError::Mdns)?;
        if !services.is_empty() && services.iter().all(|s| s.addr.ip().is_loopback()) {
            // Nobody beyond this machine could connect: say nothing on the LAN.
            loopback_only(&daemon)?;
        }
        let host = format!("{}.local.", label(host));
        let mut announcement = Self {
            daemon,
            registered: Vec::new(),
        };
        for service in services {
            let instance = instance_name(&service.name, &host, service.addr.port());
            let tls = if service.tls { "1" } else { "0" };
            let properties = [(TXT_NAME, service.name.as_str()), (TXT_TLS, tls)];
            let ip = service.addr.ip();
            let info = if ip.is_unspecified() {
                ServiceInfo::new(
                    SERVICE_TYPE,
                    &instance,
                    &host,
                    "",
                    service.addr.port(),
                    &properties[..],
                )
                .map(ServiceInfo::enable_addr_auto)
            } else {
                ServiceInfo::new(
                    SERVICE_TYPE,
                    &instance,
                    &host,
                    ip,
                    service.addr.port(),
                    &properties[..],
                )
            }
            .map_err(DiscoveryError::Mdns)?;
            let fullname = info.get_fullname().to_owned();
            announcement
                .daemon
                .register(info)
                .map_err(DiscoveryError::Mdns)?;
            announcement.registered.push(fullname);
        }
        Ok(announcement)
    }

    /// The full DNS-SD names announced (`classroom (host:7878)._chatroom._tcp.local.`).
    pub fn names(&self) -> &[String] {
        &self.registered
    }

    /// Says goodbye for every instance and stops the responder, waiting
    /// briefly for the goodbyes to go out.
    pub fn stop(mut self) {
        self.goodbye();
    }

    fn goodbye(&mut self) {
        for name in self.registered.drain(..) {
            if let Ok(done) = self.daemon.unregister(&name) {
                let _ = done.recv_timeout(Duration::from_secs(1));
            }
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

impl std::fmt::Debug for Announcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcement")
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        if !self.registered.is_empty() {
            self.goodbye();
        }
    }
}

/// A server found on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Found {
    /// The server's name, as it announced it.
    pub name: String,
    /// The DNS-SD instance, unique on the network.
    pub instance: String,
    /// The address to connect to (IPv4 preferred when it has several).
    pub addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
}

/// Where [`browse`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Scope {
    /// Every interface of this machine: the LAN.
    #[default]
    Lan,
    /// The loopback interfaces only: servers on this machine.
    Loopback,
}

/// Asks for chatroom servers, on the interfaces `scope` names, with
/// multicast DNS on `mdns_port` (normally [`MDNS_PORT`]), and lists those
/// that answer within `wait`, sorted by name then address. Blocks for
/// `wait`.
///
/// # Errors
/// [`DiscoveryError::Mdns`] when the multicast socket cannot be opened.
pub fn browse(wait: Duration, mdns_port: u16, scope: Scope) -> Result<Vec<Found>, DiscoveryError> {
    let daemon = ServiceDaemon::new_with_port(mdns_port).map_err(DiscoveryError::Mdns)?;
    if scope == Scope::Loopback {
        loopback_only(&daemon)?;
    }
    let events = daemon.browse(SERVICE_TYPE).map_err(DiscoveryError::Mdns)?;
    let deadline = Instant::now() + wait;
    let mut found = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(service)) => {
                let mut addrs: Vec<IpAddr> =
                    service.addresses.iter().map(|a| a.to_ip_addr()).collect();
                // IPv4 first, then the lowest address: the same pick every time.
                addrs.sort_by_key(|ip| (ip.is_ipv6(), *ip));
                let Some(ip) = addrs.first() else { continue };
                let name = service
                    .txt_properties
                    .get_property_val_str(TXT_NAME)
                    .map_or_else(|| instance_of(&service.fullname), str::to_owned);
                let tls = service.txt_properties.get_property_val_str(TXT_TLS) == Some("1");
                let entry = Found {
                    name,
                    instance: instance_of(&service.fullname),
                    addr: SocketAddr::new(*ip, service.port),
                    tls,
                };
                found.insert(service.fullname.clone(), entry);
            }
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                found.remove(&fullname);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(Duration::from_secs(1));
    }
    let mut found: Vec<Found> = found.into_values().collect();
    found.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
    Ok(found)
}

/// Keeps `daemon` to the loopback interfaces.
fn loopback_only(daemon: &ServiceDaemon) -> Result<(), DiscoveryError> {
    daemon
        .disable_interface(IfKind::All)
        .and_then(|()| daemon.enable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6]))
        .map_err(DiscoveryError::Mdns)
}

/// The instance part of a full DNS-SD name.
fn instance_of(fullname: &str) -> String {
    fullname
        .strip_suffix(SERVICE_TYPE)
        .and_then(|rest| rest.strip_suffix('.'))
        .unwrap_or(fullname)
        .replace("\\.", ".")
}

/// `name (host:port)`, cut to one DNS label: unique on the network as
/// long as host names are.
fn instance_name(name: &str, host: &str, port: u16) -> String {
    let host = host.trim_end_matches(".local.");
    let suffix = format!(" ({host}:{port})");
    let mut name: String = name.chars().filter(|c| !c.is_control()).collect();
    while name.len() + suffix.len() > MAX_LABEL && name.pop().is_some() {}
    let mut instance = format!("{name}{suffix}");
    while instance.len() > MAX_LABEL {
        instance.pop();
    }
    instance
}

/// A host name as one DNS label: letters, digits and hyphens.
fn label(host: &str) -> String {
    let host = host.split('.').next().unwrap_or_default();
    let mut label: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(MAX_LABEL)
        .collect();
    if label.trim_matches('-').is_empty() {
        label = "chatroom".to_owned();
    }
    label
}

/// This machine's host name, or `chatroom` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "chatroom".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_fit_a_label_and_name_the_port() {
        assert_eq!(
            instance_name("classroom", "pc1.local.", 7878),
            "classroom (pc1:7878)"
        );
        let long = instance_name(&"x".repeat(100), "pc1.local.", 7878);
        assert_eq!(long.len(), MAX_LABEL);
        assert!(long.ends_with(" (pc1:7878)"), "{long}");
        assert_eq!(label("my_box.example.org"), "my-box");
        assert_eq!(label(".."), "chatroom");
    }

    #[test]
    fn the_instance_is_read_back_from_the_full_name() {
        assert_eq!(
            instance_of("classroom (pc1:7878)._chatroom._tcp.local."),
            "classroom (pc1:7878)"
        );
    }
}
