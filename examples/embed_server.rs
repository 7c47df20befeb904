//! Runs the chat engine inside another program, on a port the OS picks,
//! and stops it with the program's own shutdown signal.
//!
//! ```text
//! cargo run -p chatroom-examples --example embed_server
//! ```
//!
//! It prints the address; in a second terminal, `nc 127.0.0.1 PORT` and type.
//! Ctrl-C stops it gracefully: every client is told `bye` first.

use chatroom_core::server::{Server, ServerConfig};
use chatroom_core::transport::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("chat server on {}", listener.local_socket_addr());
    let config = ServerConfig::default().with_server_name("embedded".to_owned());
    let server = Server::new(config)?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server.run(listener, shutdown).await?;
    println!("stopped");
    Ok(())
}
