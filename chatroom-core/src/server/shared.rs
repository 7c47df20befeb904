//! What every session of one server shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::broker::Broker;
use crate::registry::QueueBudget;

use super::accounts::Accounts;
use super::browsers::RecentBrowsers;
use super::config::Limits;
use super::irc::away::AwayBoard;
use super::metrics::Counters;
use super::moderation::Moderation;
use super::rooms::Rooms;
use super::tuning::Tuning;

/// The validated limits and the rooms, shared by every session.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) limits: Limits,
    pub(crate) rooms: Rooms,
    /// The broker the rooms use, kept here too so that readiness can ask
    /// it whether it is connected.
    pub(crate) broker: Arc<dyn Broker>,
    /// The settings a reload can change; sessions read them from here
    /// rather than from `limits`.
    pub(crate) tuning: Tuning,
    /// What the sessions did, for `/metrics`.
    pub(crate) metrics: Counters,
    /// Set while the engine accepts connections.
    pub(crate) listening: AtomicBool,
    /// Registered nicknames.
    pub(crate) accounts: Accounts,
    /// Room rules, bans and who may moderate.
    pub(crate) moderation: Moderation,
    /// Which IRC users of this node are away (an IRC-only notion).
    pub(crate) irc_away: AwayBoard,
    /// The bytes all sessions' queues may hold together.
    pub(crate) queue_budget: Arc<QueueBudget>,
    /// Addresses that asked for the web page lately: their silent
    /// connections get the long dialect window.
    pub(crate) browsers: RecentBrowsers,
}
