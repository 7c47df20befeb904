//! The connection task: owns the socket, matches replies to requests by
//! `ref`, turns everything else into events, and reconnects.
//!
//! [`Task`] and its main loop live here. `pending` (the requests in
//! flight) and `rooms` (the rooms joined and their cursors) are types of
//! their own; the other files add the task's other concerns as further
//! `impl` blocks over the same state.

mod delivery;
mod inbound;
mod offline;
mod pending;
mod reconnect;
mod resume;
mod rooms;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::protocol::{self, ClientFrame, ClientMessage, ErrorCode};
use crate::transport::{Connector, Frame};

use super::command::Command;
use super::error::ClientError;
use super::event::{DisconnectReason, Event};
use super::link::{Link, write_frame};
use super::options::ClientOptions;
use super::shared::Shared;

use pending::InFlight;
use rooms::Rooms;

/// The connection task's state, which outlives each connection.
pub(super) struct Task<C> {
    /// One connector per server address; never empty.
    connectors: Vec<C>,
    /// The connector of the current (or last) connection.
    current: usize,
    options: ClientOptions,
    /// Requests from the [`Client`](super::Client) handles; closed when the last
    /// handle is dropped.
    commands: mpsc::Receiver<Command>,
    /// Events to [`Events`](super::Events); a dropped receiver only discards them.
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    /// Rooms joined and their cursors, which outlive each connection.
    rooms: Rooms,
    /// Requests in flight on the current connection, by `ref`.
    in_flight: InFlight,
    /// Events dropped since the last one delivered.
    missed: u64,
    /// Set once a `quit` was sent or every handle is gone: no reconnecting.
    quitting: bool,
    /// True once every handle has been dropped.
    handles_gone: bool,
}

impl<C: Connector> Task<C> {
    pub(super) fn new(
        connectors: Vec<C>,
        current: usize,
        options: ClientOptions,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            connectors,
            current,
            options,
            commands,
            events,
            shared,
            rooms: Rooms::new(),
            in_flight: InFlight::new(),
            missed: 0,
            quitting: false,
            handles_gone: false,
        }
    }

    pub(super) async fn run(mut self, mut link: Link) {
        loop {
            let reason = self.serve(&mut link).await;
            drop(link);
            self.in_flight.fail_all();
            self.rooms.abandon_rejoin();
            tracing::debug!(%reason, "disconnected");
            self.emit_surely(Event::Disconnected { reason }).await;
            if self.quitting || self.handles_gone {
                return;
            }
            match self.reconnect().await {
                Some(next) => link = next,
                None => return,
            }
        }
    }

    /// Serves one connection until it ends.
    async fn serve(&mut self, link: &mut Link) -> DisconnectReason {
        loop {
            tokio::select! {
                frame = link.reader.next() => match frame {
                    None => return DisconnectReason::Closed,
                    Some(Err(e)) => return DisconnectReason::Failed(Arc::new(e)),
                    Some(Ok(Frame::TooLong { max })) => self.emit(Event::Error {
                        code: ErrorCode::FrameTooLong,
                        message: format!("the server sent a line longer than {max} bytes; it was dropped"),
                    }),
                    Some(Ok(Frame::Line(line))) => {
                        if let Some(end) = self.on_line(link, &line).await {
                            return end;
                        }
                    }
                },
                command = self.commands.recv(), if !self.handles_gone => match command {
                    Some(command) => {
                        if let Err(e) = self.send(link, command).await {
                            return DisconnectReason::Failed(Arc::new(e));
                        }
                    }
                    None => {
                        // Every handle is gone: nobody can make requests, so
                        // leave politely and read until the server closes.
                        self.handles_gone = true;
                        self.quitting = true;
                        let quit = ClientFrame::new(ClientMessage::Quit { reason: None });
                        if let Err(e) = write_frame(&mut link.writer, &protocol::encode(&quit)).await {
                            return DisconnectReason::Failed(Arc::new(e));
                        }
                    }
                },
            }
        }
    }

    /// Tags a request with a fresh `ref` and writes it.
    async fn send(&mut self, link: &mut Link, command: Command) -> std::io::Result<()> {
        let Command { message, reply } = command;
        if reply.is_closed() {
            return Ok(());
        }
        let reference = self.in_flight.fresh_ref();
        let frame = ClientFrame::with_ref(message, reference.clone());
        let bytes = protocol::encode(&frame);
        let len = bytes.len() - 1;
        if len > link.max_line_len {
            let _ = reply.send(Err(ClientError::TooLong {
                len,
                max: link.max_line_len,
            }));
            return Ok(());
        }
        if matches!(frame.message, ClientMessage::Quit { .. }) {
            self.quitting = true;
        }
        self.in_flight.track_user(reference, frame.message, reply);
        write_frame(&mut link.writer, &bytes).await
    }
}
