//! Reconnecting with backoff, trying every server address in turn.

use crate::client::event::Event;
use crate::client::handshake::handshake;
use crate::client::link::Link;
use crate::transport::Connector;

use super::Task;

impl<C: Connector> Task<C> {
    /// Reconnects with backoff, says `hello` with the current nick, and
    /// sends a join for each room. `None` when the policy gives up or the
    /// client quit meanwhile.
    pub(super) async fn reconnect(&mut self) -> Option<Link> {
        let policy = self.options.reconnect.clone()?;
        let mut delay = policy.initial_delay;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            if policy.max_attempts.is_some_and(|max| attempt > max) {
                return None;
            }
            self.emit_surely(Event::Reconnecting { attempt, delay })
                .await;
            if !self.pause(delay).await {
                return None;
            }
            if let Some(link) = self.reconnect_round(attempt).await {
                return Some(link);
            }
            delay = (delay * 2).min(policy.max_delay);
        }
    }

    /// One reconnect attempt: tries every server once, starting with the
    /// one last connected to.
    pub(super) async fn reconnect_round(&mut self, attempt: u32) -> Option<Link> {
        let count = self.connectors.len();
        for step in 0..count {
            let index = (self.current + step) % count;
            let nick = self.shared.nick();
            let connector = &self.connectors[index];
            let server = connector.describe();
            match handshake(connector, Some(&nick), self.options.connect_timeout).await {
                Ok((mut link, welcome)) => {
                    self.current = index;
                    self.shared.set_nick(welcome.nick);
                    self.shared.set_server_name(welcome.server);
                    self.shared.set_server_addr(server.clone());
                    match self.rejoin(&mut link).await {
                        Ok(()) => return Some(link),
                        Err(e) => tracing::debug!(%server, error = %e, "rejoin failed"),
                    }
                }
                Err(e) => {
                    tracing::debug!(attempt, %server, error = %e, "reconnect failed");
                }
            }
        }
        None
    }
}
