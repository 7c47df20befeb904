//! Handing events to the [`Events`](crate::client::Events) stream without
//! ever stalling the socket (see the module docs of `client`).

use tokio::sync::mpsc;

use crate::client::event::Event;
use crate::transport::Connector;

use super::Task;

impl<C: Connector> Task<C> {
    /// Delivers an event without waiting; a full channel drops it and
    /// counts it (see the module docs).
    pub(super) fn emit(&mut self, event: Event) {
        if self.missed > 0 {
            match self.events.try_send(Event::Lagged {
                missed: self.missed,
            }) {
                Ok(()) => self.missed = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.missed += 1;
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            self.missed += 1;
        }
    }

    /// Delivers an event that must not be lost, waiting for room; requests
    /// that arrive meanwhile are refused, since there is no connection.
    pub(super) async fn emit_surely(&mut self, event: Event) {
        if self.missed > 0 {
            let lagged = Event::Lagged {
                missed: self.missed,
            };
            self.missed = 0;
            self.emit_surely_one(lagged).await;
        }
        self.emit_surely_one(event).await;
    }

    async fn emit_surely_one(&mut self, event: Event) {
        // A clone, so waiting for room does not borrow the task.
        let events = self.events.clone();
        loop {
            tokio::select! {
                permit = events.reserve() => {
                    if let Ok(permit) = permit {
                        permit.send(event);
                    }
                    return;
                }
                command = self.commands.recv(), if !self.handles_gone => self.refuse(command),
            }
        }
    }
}
