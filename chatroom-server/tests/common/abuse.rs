//! What the abuse suite's cases share: they run one at a time, on a server
//! that logs quietly and lets one address open as many connections as a
//! case needs, and they hold its memory to a bound.

use std::future::Future;
use std::sync::Mutex;

use serde_json::Value;
use tokio::net::TcpSocket;

use super::server::Server;

/// Log filter for servers under load: the `listening` line and warnings,
/// not one line per connection.
const QUIET_LOG: &str = "warn,chatroom_core::server=info,chatroom_core::server::session=warn";

/// Cases run one at a time: each measures latency and memory, which a case
/// running beside it would distort.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one case on a runtime of its own, after every case before it.
pub(crate) fn run_case(case: impl Future<Output = ()>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime");
    runtime.block_on(case);
}

/// Starts the binary on `127.0.0.1:0`, logging quietly, with `--set
/// KEY=VALUE` for each of `settings`.
pub(crate) fn start_server(settings: &[(&str, &str)]) -> Server {
    Server::builder()
        .listen("127.0.0.1:0")
        .log_filter(QUIET_LOG)
        .settings(settings)
        .start()
}

/// Settings that let one loopback address open as many connections as a
/// case needs: the per-address limits have a case of their own
/// (`one_address_is_held_to_its_share_and_others_are_not_affected`).
const MANY_FROM_ONE_ADDRESS: [(&str, &str); 3] = [
    ("max_connections_per_ip", "100000"),
    ("connect_rate_per_ip", "100000"),
    ("connect_burst_per_ip", "100000"),
];

/// [`MANY_FROM_ONE_ADDRESS`] and then `extra`.
pub(crate) fn settings<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = MANY_FROM_ONE_ADDRESS.to_vec();
    all.extend_from_slice(extra);
    all
}

/// A socket for a client that will stop reading: it announces a small
/// receive buffer and a small segment size, as a phone on a poor link
/// does. The segment size keeps the server's kernel send buffer for it
/// near 300 KB (with loopback's 64 KiB segments Linux grows it to 4 MB),
/// so what stops the backlog is the server's queue limit, and a case
/// needs megabytes, not tens of megabytes, to reach it.
pub(crate) fn slow_link_socket() -> TcpSocket {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket.set_recv_buffer_size(8 * 1024).expect("SO_RCVBUF");
    socket.set_tcp_mss(536).expect("TCP_MAXSEG");
    socket.set_nonblocking(true).expect("non-blocking");
    TcpSocket::from_std_stream(socket.into())
}

/// Peak resident memory since `baseline_kib` must stay within `bound_mib`.
pub(crate) fn assert_memory(server: &Server, baseline_kib: u64, bound_mib: u64, case: &str) {
    let peak = server.peak_rss_kib();
    let now = server.rss_kib();
    println!(
        "{case}: server RSS {baseline_kib} KiB before, {peak} KiB peak, {now} KiB now (bound: +{bound_mib} MiB)"
    );
    assert!(
        peak <= baseline_kib + bound_mib * 1024,
        "{case}: server RSS peaked at {peak} KiB, more than {bound_mib} MiB over {baseline_kib} KiB"
    );
}

/// The `code` of an error frame, or "" for any other line.
pub(crate) fn error_code(line: &str) -> String {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|f| f["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// How a slowloris connection misbehaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Loris {
    /// Connects and sends nothing: greeted as a text client, then closed by
    /// the text idle timeout.
    Silent,
    /// Starts a native `hello` and trickles it a byte at a time: closed by
    /// the handshake timeout.
    NativeTrickle,
    /// Trickles a text line a byte at a time, never ending it: closed by
    /// the text idle timeout (only complete lines count as activity).
    TextTrickle,
}
