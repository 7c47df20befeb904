//! Turns a WebSocket into the line stream the engine reads: each text
//! message becomes one line, each line the engine writes becomes one text
//! message. Two tasks, one per direction, joined by an in-memory pipe.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::codec::FramedRead;

use crate::protocol::{self, ErrorCode, ServerFrame, ServerMessage};
use crate::transport::{Connection, Frame, LineFramer, PeerAddr};

/// Bytes the pipe between the WebSocket and the engine buffers each way.
const PIPE: usize = 64 * 1024;

/// Starts the bridge and returns the engine's side of it.
pub(super) fn spawn<S>(ws: WebSocketStream<S>, peer: PeerAddr, max_message: usize) -> Connection
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (engine_side, bridge_side) = tokio::io::duplex(PIPE);
    tokio::spawn(run(ws, bridge_side, max_message));
    Connection::from_stream(engine_side, peer)
}

/// Why the bridge closes the WebSocket on its own: the error frame to send
/// first, and the close code.
type Refusal = (ServerFrame, CloseCode);

fn refusal(code: ErrorCode, message: &str, close: CloseCode) -> Refusal {
    let error = ServerFrame::new(ServerMessage::Error {
        code,
        message: message.to_owned(),
    });
    (error, close)
}

async fn run<S>(ws: WebSocketStream<S>, pipe: tokio::io::DuplexStream, max_message: usize)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut ws_out, ws_in) = ws.split();
    let (pipe_in, pipe_out) = tokio::io::split(pipe);
    // Lines from the engine are its own frames, bounded by its queue; the
    // framer's limit only guards the pipe.
    let mut from_engine = FramedRead::new(pipe_in, LineFramer::new(max_message.max(1 << 20)));
    let (refused_tx, mut refused) = tokio::sync::oneshot::channel();
    let inbound = tokio::spawn(async move {
        if let Some(why) = inbound(ws_in, pipe_out, max_message).await {
            let _ = refused_tx.send(why);
        }
        // Dropping the pipe's writing half tells the engine the peer left.
    });

    let why = loop {
        tokio::select! {
            why = &mut refused => break why.ok(),
            line = from_engine.next() => {
                let Some(Ok(Frame::Line(line))) = line else { break None };
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                // The engine writes JSON it encoded itself: always UTF-8.
                let Ok(text) = std::str::from_utf8(line) else { break None };
                if ws_out.send(Message::text(text)).await.is_err() {
                    inbound.abort();
                    return;
                }
            }
        }
    };
    let close = match why {
        Some((error, code)) => {
            let json = protocol::encode(&error);
            let text = std::str::from_utf8(&json).unwrap_or_default().trim_end();
            let _ = ws_out.send(Message::text(text)).await;
            CloseFrame {
                code,
                reason: "".into(),
            }
        }
        None => CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        },
    };
    let _ = ws_out.send(Message::Close(Some(close))).await;
    let _ = ws_out.close().await;
    inbound.abort();
}

/// Copies text messages into the pipe as lines until the peer closes, or
/// returns why the peer must be refused.
async fn inbound<S>(
    mut ws_in: futures::stream::SplitStream<WebSocketStream<S>>,
    mut pipe_out: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    max_message: usize,
) -> Option<Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws_in.next().await {
            Some(Ok(Message::Text(text))) => {
                if text.contains('\n') {
                    return Some(refusal(
                        ErrorCode::BadFrame,
                        "a message must hold one frame on one line",
                        CloseCode::Invalid,
                    ));
                }
                let mut line = Vec::with_capacity(text.len() + 1);
                line.extend_from_slice(text.as_bytes());
                line.push(b'\n');
                if pipe_out.write_all(&line).await.is_err() {
                    return None;
                }
            }
            Some(Ok(Message::Binary(_))) => {
                return Some(refusal(
                    ErrorCode::BadFrame,
                    "binary messages are not supported; send JSON as text",
                    CloseCode::Unsupported,
                ));
            }
            Some(Ok(Message::Close(_))) | None => return None,
            // Pings are answered by the WebSocket layer itself.
            Some(Ok(_)) => {}
            Some(Err(WsError::Capacity(_))) => {
                return Some(refusal(
                    ErrorCode::FrameTooLong,
                    &format!("a message may hold at most {max_message} bytes"),
                    CloseCode::Size,
                ));
            }
            Some(Err(_)) => return None,
        }
    }
}
