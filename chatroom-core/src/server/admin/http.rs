//! A minimal HTTP/1.1 responder for the admin endpoints: one `GET` per
//! connection, answered and closed. Written here rather than taken from an
//! HTTP crate because it answers three fixed paths for a scraper, and the
//! bounds (request size, time, connections) are easier to see in fifty
//! lines than in a framework's settings.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::transport::{Connection, Listener};

use super::super::error::ServerError;
use super::Admin;

/// Longest request head read; a longer one is answered 431.
const MAX_REQUEST: usize = 8 * 1024;

/// How long one connection may take, from accept to the last byte sent.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Most admin connections served at once; more are closed unanswered, so
/// that a flood on the admin port cannot take memory from chat.
const MAX_CONNECTIONS: usize = 16;

pub(super) async fn serve<L: Listener>(
    admin: Admin,
    mut listener: L,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut answering = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let conn = accepted?;
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let admin = admin.clone();
                answering.spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(&admin, conn)).await;
                    drop(slot);
                });
            }
            Some(_) = answering.join_next(), if !answering.is_empty() => {}
        }
    }
}

/// A response: status line, media type and body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn json(status: &'static str, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            body,
        }
    }

    fn text(status: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        }
    }
}

async fn answer(admin: &Admin, conn: Connection) -> std::io::Result<()> {
    let Connection {
        mut reader,
        mut writer,
        ..
    } = conn;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_REQUEST {
            break false;
        }
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let (response, head_only) = if complete {
        respond(admin, &head)
    } else {
        (
            Response::text("431 Request Header Fields Too Large", "request too large"),
            false,
        )
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(response.body.as_bytes());
    }
    writer.write_all(&out).await?;
    writer.shutdown().await
}

/// The response to a complete request head, and whether it was `HEAD`.
fn respond(admin: &Admin, head: &[u8]) -> (Response, bool) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return (Response::text("400 Bad Request", "bad request line"), false);
    };
    if !version.starts_with("HTTP/1.") {
        return (
            Response::text("505 HTTP Version Not Supported", "HTTP/1.x only"),
            false,
        );
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (
            Response::text("405 Method Not Allowed", "GET or HEAD only"),
            false,
        );
    }
    let path = target.split('?').next().unwrap_or(target);
    let response = match path {
        "/metrics" => Response {
            status: "200 OK",
            content_type: admin.metrics_content_type(),
            body: admin.metrics(),
        },
        "/healthz" => Response::json("200 OK", "{\"status\":\"ok\"}".to_owned()),
        "/readyz" => {
            let ready = admin.readiness();
            let status = if ready.is_ready() {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            Response::json(status, ready.to_json())
        }
        _ => Response::text(
            "404 Not Found",
            "not found; try /metrics, /healthz or /readyz",
        ),
    };
    (response, head_only)
}
