//! Opening a connection: `hello`, then waiting for `welcome`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::codec::FramedRead;

use crate::protocol::{
    self, ClientFrame, ClientMessage, DEFAULT_MAX_LINE_LEN, Nickname, PROTOCOL_VERSION,
    ServerFrame, ServerMessage,
};
use crate::transport::{Connector, Frame, LineFramer};

use super::error::ClientError;
use super::link::{Link, write_frame};

/// The `ref` of the `hello`, echoed on `welcome` or the error.
const HELLO_REF: &str = "hello";

/// What the server said in `welcome`.
#[derive(Debug)]
pub(super) struct Welcome {
    pub(super) nick: Nickname,
    pub(super) server: String,
}

/// Connects, says `hello` and waits for `welcome`, all within `timeout`.
pub(super) async fn handshake<C: Connector>(
    connector: &C,
    nick: Option<&Nickname>,
    timeout: Duration,
) -> Result<(Link, Welcome), ClientError> {
    tokio::time::timeout(timeout, handshake_inner(connector, nick))
        .await
        .unwrap_or(Err(ClientError::HandshakeTimeout { timeout }))
}

async fn handshake_inner<C: Connector>(
    connector: &C,
    nick: Option<&Nickname>,
) -> Result<(Link, Welcome), ClientError> {
    let conn = connector.connect().await?;
    let mut reader = FramedRead::new(conn.reader, LineFramer::new(DEFAULT_MAX_LINE_LEN));
    let mut writer = conn.writer;
    let hello = ClientFrame::with_ref(
        ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            nick: nick.cloned(),
            resume: BTreeMap::new(),
            password: None,
        },
        HELLO_REF,
    );
    write_frame(&mut writer, &protocol::encode(&hello))
        .await
        .map_err(|e| ClientError::Transport(e.into()))?;
    loop {
        let line = match reader.next().await {
            None => return Err(ClientError::HandshakeClosed),
            Some(Err(e)) => return Err(ClientError::Transport(e.into())),
            Some(Ok(Frame::TooLong { .. })) => continue,
            Some(Ok(Frame::Line(line))) => line,
        };
        let frame: ServerFrame = protocol::decode(&line)?;
        match frame.message {
            ServerMessage::Welcome {
                nick,
                server,
                max_line_len,
                ..
            } => {
                // Lines from the server are framed with at least the default
                // limit: `welcome` states what the server accepts, and its
                // own replies (a long member list) may be longer.
                reader
                    .decoder_mut()
                    .clone_from(&LineFramer::new(max_line_len.max(DEFAULT_MAX_LINE_LEN)));
                let link = Link {
                    reader,
                    writer,
                    max_line_len,
                };
                return Ok((link, Welcome { nick, server }));
            }
            ServerMessage::Error { code, message } => {
                return Err(ClientError::Server { code, message });
            }
            ServerMessage::Bye { reason } => return Err(ClientError::Refused { reason }),
            // Nothing else is expected before `welcome`; a newer server
            // may say more, so it is skipped.
            _ => {}
        }
    }
}
