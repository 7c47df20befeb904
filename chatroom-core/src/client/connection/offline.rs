//! Requests that arrive while there is no connection: refused at once,
//! including while the task waits out a reconnect delay.

use std::time::Duration;

use crate::client::command::Command;
use crate::client::error::ClientError;
use crate::protocol::ClientMessage;
use crate::transport::Connector;

use super::Task;

impl<C: Connector> Task<C> {
    /// Answers a request that arrives while there is no connection.
    pub(super) fn refuse(&mut self, command: Option<Command>) {
        match command {
            Some(Command { message, reply }) => {
                if matches!(message, ClientMessage::Quit { .. }) {
                    self.quitting = true;
                }
                let _ = reply.send(Err(ClientError::Closed {
                    request: Box::new(message),
                }));
            }
            None => {
                self.handles_gone = true;
                self.quitting = true;
            }
        }
    }

    /// Waits for `delay` while refusing requests; false when the client
    /// quit or every handle is gone meanwhile.
    pub(super) async fn pause(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return !self.quitting,
                command = self.commands.recv(), if !self.handles_gone => {
                    self.refuse(command);
                    if self.quitting {
                        return false;
                    }
                }
            }
        }
    }
}
