use std::time::Duration;

use chatroom_core::testing::{Peer, TestServer, WAIT};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    response
}

async fn ws_connect(addr: std::net::SocketAddr, origin: Option<&str>) -> Result<Ws, WsError> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

async fn ws_send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

async fn ws_frame(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("no error");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

async fn ws_until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = ws_frame(ws).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// The close frame that ends `ws`, after any text messages.
async fn ws_close(ws: &mut Ws) -> (Vec<Value>, Option<CloseCode>) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Text(text))) => {
                frames.push(serde_json::from_str(text.as_str()).unwrap())
            }
            Some(Ok(Message::Close(frame))) => return (frames, frame.map(|f| f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (frames, None),
        }
    }
}

#[tokio::test]
async fn a_browser_gets_the_page_with_a_content_security_policy() {
    let server = TestServer::start().await;
    let page = http_get(server.addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html"));
    assert!(page.contains("Content-Security-Policy: default-src 'self'"));
    assert!(page.contains("<script src=\"/app.js\">"));
    let script = http_get(server.addr, "/app.js").await;
    assert!(script.contains("Content-Type: text/javascript"));
    let missing = http_get(server.addr, "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    server.stop().await;
}

#[tokio::test]
async fn websocket_native_and_text_clients_share_a_room() {
    let server = TestServer::start().await;
    let origin = format!("http://{}", server.addr);
    let mut ws = ws_connect(server.addr, Some(&origin)).await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "hello", "version": 1, "nick": "web"}),
    )
    .await;
    assert_eq!(ws_frame(&mut ws).await["type"], "welcome");
    ws_send(
        &mut ws,
        json!({"ref": "j", "type": "join", "room": "lobby"}),
    )
    .await;
    assert_eq!(ws_until(&mut ws, "members").await["ref"], "j");

    let mut native = Peer::native_in(server.addr, "nat", "lobby").await;
    let mut text = Peer::text(server.addr).await;
    ws_send(
        &mut ws,
        json!({"type": "say", "room": "lobby", "text": "from the browser"}),
    )
    .await;
    assert_eq!(native.until_type("message").await["from"], "web");
    text.until_line("<web> from the browser").await;

    native
        .send_json(json!({"type": "say", "room": "lobby", "text": "to the browser"}))
        .await;
    let got = ws_until(&mut ws, "message").await;
    assert_eq!(
        (got["from"].as_str(), got["text"].as_str()),
        (Some("nat"), Some("to the browser"))
    );
    text.send("typed in nc").await;
    let got = ws_until(&mut ws, "message").await;
    assert_eq!(
        (got["from"].as_str(), got["text"].as_str()),
        (Some(text.nick()), Some("typed in nc"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_binary_message_is_refused_with_an_error_and_close_code_1003() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(server.addr, None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "hello", "version": 1, "nick": "bin"}),
    )
    .await;
    ws_frame(&mut ws).await;
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let (frames, code) = ws_close(&mut ws).await;
    assert_eq!(frames.last().unwrap()["code"], "bad_frame", "{frames:?}");
    assert_eq!(code, Some(CloseCode::Unsupported));
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_with_an_error_and_close_code_1009() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(server.addr, None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "hello", "version": 1, "nick": "big"}),
    )
    .await;
    ws_frame(&mut ws).await;
    let huge = json!({"type": "say", "room": "lobby", "text": "x".repeat(100_000)});
    // The server may close while the frame is still being written.
    let _ = ws.send(Message::text(huge.to_string())).await;
    let (frames, code) = ws_close(&mut ws).await;
    assert_eq!(
        frames.last().unwrap()["code"],
        "frame_too_long",
        "{frames:?}"
    );
    assert_eq!(code, Some(CloseCode::Size));
    server.stop().await;
}

#[tokio::test]
async fn a_page_from_another_origin_cannot_open_the_websocket() {
    let server = TestServer::start().await;
    let refused = ws_connect(server.addr, Some("http://evil.example")).await;
    match refused {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    // The chat port still serves everyone else.
    let mut fine = Peer::native(server.addr, "fine").await;
    fine.send_json(json!({"ref": "p", "type": "ping"})).await;
    assert_eq!(fine.frame().await["type"], "pong");
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_message_holding_a_newline_is_refused_with_close_code_1007() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(server.addr, None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "hello", "version": 1, "nick": "nl"}),
    )
    .await;
    ws_frame(&mut ws).await;
    ws.send(Message::text("{\"type\":\"ping\"}\n{\"type\":\"ping\"}"))
        .await
        .unwrap();
    let (frames, code) = ws_close(&mut ws).await;
    assert_eq!(frames.last().unwrap()["code"], "bad_frame", "{frames:?}");
    assert_eq!(code, Some(CloseCode::Invalid));
    server.stop().await;
}
