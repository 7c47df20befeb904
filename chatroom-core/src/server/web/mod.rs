//! The web side of the chat port: a browser's `GET /` gets the page, and
//! `GET /ws` becomes a WebSocket that carries the native dialect, one JSON
//! frame per text message.
//!
//! The session tells an HTTP request from chat by its first line (see
//! `session::opening`) and hands the connection here with the bytes it has
//! read; a WebSocket is handed back to it as a connection of its own. This is a deliberately small HTTP/1.1 server: three static files
//! and one upgrade, `Connection: close` on everything else.

mod bridge;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::transport::{BoxReader, BoxWriter, Connection, PeerAddr};

use super::config::Limits;

/// Longest request head (request line and headers) read, in bytes.
const MAX_HEAD: usize = 8 * 1024;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// Serves one HTTP request that began with `read`. A WebSocket upgrade
/// comes back as a [`Connection`] whose lines are the WebSocket's text
/// messages, for the caller to serve as a native chat client; every other
/// request is answered here and gives `None`. `origins` are the WebSocket
/// origins allowed now (a reload may change them).
pub(crate) async fn serve(
    limits: &Limits,
    origins: &[String],
    read: Bytes,
    mut reader: BoxReader,
    mut writer: BoxWriter,
    peer: PeerAddr,
) -> Option<Connection> {
    let timeout = limits.handshake_timeout;
    let head = match tokio::time::timeout(timeout, read_head(read, &mut reader)).await {
        Ok(Ok(head)) => head,
        Ok(Err(status)) => {
            respond(&mut writer, status, "text/plain", status.1).await;
            return None;
        }
        Err(_) => return None,
    };
    let Some(request) = Request::parse(&head) else {
        respond(&mut writer, BAD_REQUEST, "text/plain", BAD_REQUEST.1).await;
        return None;
    };
    let page = match request.path.split('?').next().unwrap_or("") {
        "/" | "/index.html" => Some((INDEX_HTML, "text/html; charset=utf-8")),
        "/app.js" => Some((APP_JS, "text/javascript; charset=utf-8")),
        "/style.css" => Some((STYLE_CSS, "text/css; charset=utf-8")),
        _ => None,
    };
    if let Some((body, kind)) = page {
        respond(&mut writer, OK, kind, body).await;
        return None;
    }
    if request.path != "/ws" || !request.is_websocket_upgrade() {
        respond(&mut writer, NOT_FOUND, "text/plain", NOT_FOUND.1).await;
        return None;
    }
    if !origin_allowed(&request, origins) {
        tracing::info!(%peer, origin = request.origin.as_deref().unwrap_or(""), "websocket refused: origin not allowed");
        respond(&mut writer, FORBIDDEN, "text/plain", "origin not allowed\n").await;
        return None;
    }
    let stream = Rejoined {
        unread: head,
        reader,
        writer,
    };
    let max = limits.max_line_len;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let accepted = tokio::time::timeout(
        timeout,
        tokio_tungstenite::accept_async_with_config(stream, Some(config)),
    )
    .await;
    let ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "websocket handshake failed");
            return None;
        }
        Err(_) => return None,
    };
    Some(bridge::spawn(ws, peer, max))
}

type Status = (u16, &'static str);
const OK: Status = (200, "OK");
const BAD_REQUEST: Status = (400, "Bad Request\n");
const FORBIDDEN: Status = (403, "Forbidden");
const NOT_FOUND: Status = (404, "Not Found\n");
const TOO_LARGE: Status = (431, "Request Header Fields Too Large\n");

/// Reads until the end of the request head; `read` is what came already.
async fn read_head(read: Bytes, reader: &mut BoxReader) -> Result<Bytes, Status> {
    let mut head = BytesMut::from(&read[..]);
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(head.freeze());
        }
        if head.len() > MAX_HEAD {
            return Err(TOO_LARGE);
        }
        let mut chunk = [0u8; 1024];
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(BAD_REQUEST),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The parts of a request head this server looks at.
struct Request {
    path: String,
    host: Option<String>,
    origin: Option<String>,
    upgrade: bool,
}

impl Request {
    fn parse(head: &[u8]) -> Option<Self> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        parsed.parse(head).ok()?;
        if parsed.method? != "GET" {
            return None;
        }
        let header = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(|v| v.trim().to_owned())
        };
        let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        Some(Self {
            path: parsed.path?.to_owned(),
            host: header("host"),
            origin: header("origin"),
            upgrade,
        })
    }

    fn is_websocket_upgrade(&self) -> bool {
        self.upgrade
    }
}

/// A browser always sends `Origin` on a WebSocket; a page from another site
/// must not drive a visitor's browser into the chat. Requests without it
/// come from programs, which any TCP client could be anyway.
fn origin_allowed(request: &Request, allowed: &[String]) -> bool {
    let Some(origin) = request.origin.as_deref() else {
        return true;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed.contains(&origin) {
        return true;
    }
    // Same origin: the origin's host:port is the Host the request was sent to.
    let Some(host) = request.host.as_deref() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority == host)
}

async fn respond(writer: &mut BoxWriter, status: Status, kind: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'\r\n\
         Connection: close\r\n\r\n",
        status.0,
        status.1.trim_end(),
        body.len()
    );
    let _ = async {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(body.as_bytes()).await?;
        writer.shutdown().await
    }
    .await;
}

/// A connection whose first bytes were already read: they are read again
/// first, so the WebSocket handshake sees the whole request.
struct Rejoined {
    unread: Bytes,
    reader: BoxReader,
    writer: BoxWriter,
}

impl AsyncRead for Rejoined {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.advance(n);
            return Poll::Ready(Ok(()));
        }
        self.reader.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for Rejoined {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.writer.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.writer.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.writer.as_mut().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&str>, host: &str) -> Request {
        Request {
            path: "/ws".into(),
            host: Some(host.into()),
            origin: origin.map(Into::into),
            upgrade: true,
        }
    }

    #[test]
    fn same_origin_and_listed_origins_may_open_the_websocket() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(
            &request(Some("http://127.0.0.1:7878"), "127.0.0.1:7878"),
            &none
        ));
        assert!(origin_allowed(
            &request(Some("https://Chat.Example:443/"), "chat.example:443"),
            &none
        ));
        assert!(origin_allowed(&request(None, "127.0.0.1:7878"), &none));
        assert!(!origin_allowed(
            &request(Some("http://evil.example"), "127.0.0.1:7878"),
            &none
        ));
        assert!(!origin_allowed(
            &request(Some("null"), "127.0.0.1:7878"),
            &none
        ));
        let listed = vec!["https://app.example".to_owned()];
        assert!(origin_allowed(
            &request(Some("https://app.example"), "127.0.0.1:7878"),
            &listed
        ));
    }

    #[test]
    fn only_get_requests_are_parsed() {
        let ok =
            Request::parse(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\n\r\n").unwrap();
        assert_eq!((ok.path.as_str(), ok.upgrade), ("/ws", true));
        assert!(Request::parse(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n").is_none());
    }
}
