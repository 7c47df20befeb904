//! The connection's state that handles read and the task keeps current.

use std::sync::{Mutex, PoisonError};

use crate::protocol::Nickname;

/// State the handles read and the connection task updates.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) nick: Mutex<Nickname>,
    pub(super) server_name: Mutex<String>,
    /// The address connected to, as its connector describes it.
    pub(super) server_addr: Mutex<String>,
}

impl Shared {
    pub(super) fn nick(&self) -> Nickname {
        self.nick
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_nick(&self, nick: Nickname) {
        *self.nick.lock().unwrap_or_else(PoisonError::into_inner) = nick;
    }

    pub(super) fn set_server_name(&self, name: String) {
        *self
            .server_name
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = name;
    }

    pub(super) fn set_server_addr(&self, addr: String) {
        *self
            .server_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = addr;
    }
}
