//! A web user without the browser: the page's WebSocket (`/ws` on the
//! chat port, the native frames as text messages), behind a blocking API
//! like the other test clients, each read with a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One WebSocket connection, as the page opens it.
pub(crate) struct WebClient {
    runtime: Runtime,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    wait: Duration,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebClient").finish_non_exhaustive()
    }
}

impl WebClient {
    /// Opens `ws://addr/ws` with the page's own origin; each read may
    /// wait `wait`.
    pub(crate) fn connect(addr: SocketAddr, wait: Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        let origin = format!("http://{addr}").parse().unwrap();
        request.headers_mut().insert("Origin", origin);
        let ws = runtime.block_on(async {
            tokio::time::timeout(wait, tokio_tungstenite::connect_async(request))
                .await
                .expect("the websocket opens in time")
                .expect("the websocket handshake")
                .0
        });
        Self { runtime, ws, wait }
    }

    /// Sends one frame.
    pub(crate) fn send(&mut self, frame: &Value) {
        let message = Message::text(frame.to_string());
        self.runtime
            .block_on(self.ws.send(message))
            .expect("send on the websocket");
    }

    /// The next frame.
    pub(crate) fn next(&mut self) -> Value {
        let wait = self.wait;
        self.runtime.block_on(async {
            loop {
                let message = tokio::time::timeout(wait, self.ws.next())
                    .await
                    .expect("a frame in time")
                    .expect("the websocket is open")
                    .expect("no websocket error");
                if let Message::Text(text) = message {
                    return serde_json::from_str(text.as_str()).expect("a JSON frame");
                }
            }
        })
    }

    /// The next frame of type `kind`, skipping others.
    pub(crate) fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next();
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}
