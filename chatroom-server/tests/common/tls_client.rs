//! A native-dialect client over blocking TLS (rustls's own stream): the
//! certificate the server showed, frames out and frames in with a deadline.
//! For tests about the certificate itself; chat over TLS in general goes
//! through `chatroom_core::client`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use serde_json::Value;

/// One TLS connection, read line by line.
#[derive(Debug)]
pub(crate) struct TlsJsonClient {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
    /// The DER encoding of the leaf certificate the server showed.
    leaf: Vec<u8>,
}

impl TlsJsonClient {
    /// Connects to `addr` as `localhost`, checking the server against
    /// `config`, and completes the handshake; reads wait at most `wait`.
    ///
    /// # Panics
    /// When the connection or the handshake fails.
    pub(crate) fn connect(addr: SocketAddr, config: Arc<ClientConfig>, wait: Duration) -> Self {
        let tcp = TcpStream::connect_timeout(&addr, wait).expect("connect");
        tcp.set_read_timeout(Some(wait)).expect("a read timeout");
        let name = ServerName::try_from("localhost").expect("a server name");
        let mut conn = ClientConnection::new(config, name).expect("a TLS client");
        let mut tcp = tcp;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).expect("the TLS handshake");
        }
        let leaf = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("the server showed a certificate")
            .to_vec();
        Self {
            stream: BufReader::new(StreamOwned::new(conn, tcp)),
            leaf,
        }
    }

    /// The leaf certificate the server showed, DER-encoded.
    pub(crate) fn leaf(&self) -> &[u8] {
        &self.leaf
    }

    /// Sends one frame.
    pub(crate) fn send(&mut self, frame: &Value) {
        let stream = self.stream.get_mut();
        writeln!(stream, "{frame}").expect("write a frame");
        stream.flush().expect("flush");
    }

    /// The first frame from now on that satisfies `wanted`.
    ///
    /// # Panics
    /// When nothing arrives in time or the server closed the connection.
    pub(crate) fn next_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let mut line = String::new();
            let n = self.stream.read_line(&mut line).expect("read a frame");
            assert!(n > 0, "the server closed the connection");
            let frame: Value = serde_json::from_str(&line).expect("a JSON frame");
            if wanted(&frame) {
                return frame;
            }
        }
    }
}
