//! What every session of one server shares.

use super::config::Limits;
use super::rooms::Rooms;

/// The validated limits and the rooms, shared by every session.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) limits: Limits,
    pub(crate) rooms: Rooms,
}
