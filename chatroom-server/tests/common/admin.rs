//! The admin endpoint of a running server: where it listens, plain HTTP
//! `GET`s over a blocking socket, and samples read out of `/metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::server::Server;

/// What the server logs when its admin endpoint is bound.
const ADMIN_UP: &str = "admin_addr=";

/// Where `server`'s admin endpoint listens, from its log (the line comes
/// before the `listening` lines).
///
/// # Panics
/// When the log has no such line.
pub(crate) fn admin_addr(server: &Server) -> SocketAddr {
    let lines = server.log_lines();
    let line = lines
        .iter()
        .find(|l| l.contains(ADMIN_UP))
        .unwrap_or_else(|| panic!("no admin endpoint in the log:\n{}", lines.join("\n")));
    let rest = line.split(ADMIN_UP).nth(1).expect("an address");
    rest.split_whitespace()
        .next()
        .unwrap_or("")
        .parse()
        .expect("a socket address after admin_addr=")
}

/// Sends `request` as it is and returns the status code and body.
///
/// # Panics
/// When the endpoint does not answer with HTTP within a few seconds.
pub(crate) fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// `GET path`: the status code and body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
}

/// The value of the sample `series` (a name with its labels, as written:
/// `chatroom_connections{dialect="text"}`) in an exposition.
///
/// # Panics
/// When there is no such sample.
pub(crate) fn sample(exposition: &str, series: &str) -> u64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{exposition}"))
        .parse()
        .expect("a whole number")
}

/// Scrapes `/metrics` until `series` reaches `at_least`, and returns the
/// last scrape. Sessions count some things as they end, a moment after
/// the client sees the close.
///
/// # Panics
/// When it has not after `limit`.
pub(crate) fn scrape_until(
    addr: SocketAddr,
    series: &str,
    at_least: u64,
    limit: Duration,
) -> String {
    let end = Instant::now() + limit;
    loop {
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        if sample(&body, series) >= at_least {
            return body;
        }
        assert!(
            Instant::now() < end,
            "{series} stayed below {at_least}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
