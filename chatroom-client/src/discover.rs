//! `--discover`: find chatroom servers on the LAN by multicast DNS, list
//! them, and pick the one to connect to (a number typed at a prompt on a
//! terminal, `--pick N`, or else the first).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use chatroom_core::discovery::{self, Found, Scope};

use crate::render;

/// What `--discover` and its companions ask for.
#[derive(Debug, Clone)]
pub(crate) struct Discover {
    /// How long to listen for answers.
    pub(crate) wait: Duration,
    /// The multicast DNS port (5353 but in tests).
    pub(crate) mdns_port: u16,
    /// Look on this machine only.
    pub(crate) loopback: bool,
    /// Which server of the list (from 1), without asking.
    pub(crate) pick: Option<usize>,
}

/// The server chosen: where, and whether it speaks TLS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chosen {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: bool,
}

/// Lists the servers that answer and returns the one chosen, or the line
/// to print and the exit code when there is none to choose.
pub(crate) async fn choose(how: Discover) -> Result<Chosen, (String, u8)> {
    let scope = if how.loopback {
        Scope::Loopback
    } else {
        Scope::Lan
    };
    let (wait, port) = (how.wait, how.mdns_port);
    let found = tokio::task::spawn_blocking(move || discovery::browse(wait, port, scope))
        .await
        .map_err(|e| (format!("discovery stopped: {e}"), 1))?
        .map_err(|e| {
            (
                format!("cannot look for servers: {}", crate::describe(&e)),
                1,
            )
        })?;
    if found.is_empty() {
        let secs = wait.as_secs_f32();
        return Err((format!("no chatroom server answered within {secs} s"), 1));
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "* servers found:");
    for (i, server) in found.iter().enumerate() {
        let _ = writeln!(out, "*   {}) {}", i + 1, line(server));
    }
    let _ = out.flush();
    drop(out);
    let n = match how.pick {
        Some(n) => n,
        None if std::io::stdin().is_terminal() => ask(found.len()).await?,
        None => 1,
    };
    let server = n
        .checked_sub(1)
        .and_then(|i| found.get(i))
        .ok_or_else(|| (format!("no server {n}: {} found", found.len()), 2))?;
    println!("* connecting to {}", line(server));
    Ok(Chosen {
        addr: server.addr,
        tls: server.tls,
    })
}

/// `name  addr:port`, and `(tls)` when it is.
fn line(server: &Found) -> String {
    let tls = if server.tls { " (tls)" } else { "" };
    format!("{}  {}{tls}", render::clean(&server.name), server.addr)
}

/// Asks on the terminal which one, until the answer is a number in range
/// (Enter takes the first).
async fn ask(count: usize) -> Result<usize, (String, u8)> {
    tokio::task::spawn_blocking(move || {
        loop {
            print!("connect to which server? [1-{count}, Enter for 1] ");
            let _ = std::io::stdout().flush();
            let mut answer = String::new();
            match std::io::stdin().read_line(&mut answer) {
                Ok(0) | Err(_) => return Err(("no server chosen".to_owned(), 2)),
                Ok(_) => {}
            }
            let answer = answer.trim();
            if answer.is_empty() {
                return Ok(1);
            }
            match answer.parse::<usize>() {
                Ok(n) if (1..=count).contains(&n) => return Ok(n),
                _ => println!("* type a number from 1 to {count}"),
            }
        }
    })
    .await
    .map_err(|e| (format!("no server chosen: {e}"), 2))?
}
