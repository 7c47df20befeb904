//! What can go wrong announcing or browsing.

/// Why an announcement or a browse failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The multicast DNS responder could not start or refused a record
    /// (no usable interface, the socket cannot be bound).
    #[error("multicast DNS failed")]
    Mdns(#[source] mdns_sd::Error),
}
