//! `chatroom-bench`: load generator, reference ceiling and report writer.
//!
//! ```text
//! cargo run --release -p chatroom-examples --bin chatroom-bench -- --help
//! bash examples/bench/run.sh            # the whole comparison, see docs/benchmarks.md
//! ```
//!
//! Server modes (`server`, `ceiling`) listen on loopback; load modes
//! (`fanout`, `latency`, `idle`, `churn`) refuse any target that is not a
//! loopback address. Every load run is bounded in connections, messages and
//! seconds, prints a table, and ends with one `RESULT {json}` line that
//! `report` turns into the tables of docs/benchmarks.md.

mod ceiling;
mod check;
mod engine;
mod load;
mod net;
mod report;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use load::{Common, Pace, Report};
use net::Target;

#[derive(Debug, Parser)]
#[command(
    name = "chatroom-bench",
    about = "Loopback load generator for chatroom, with a reference ceiling and Redis/NATS adapters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the chatroom engine (config: defaults plus `CHATROOM_<FIELD>` variables).
    Server(Serve),
    /// Run the reference ceiling: a broadcaster with no protocol.
    Ceiling(Serve),
    /// N publishers flat out into one room of C members.
    Fanout(Fanout),
    /// A fixed publish rate into one room; publish-to-receive latency.
    Latency(Latency),
    /// K connections that joined rooms and stay silent; server RSS per connection.
    Idle(Idle),
    /// Connections opened, used for one line and closed, at a fixed rate.
    Churn(Churn),
    /// Turn RESULT lines into the Markdown tables of docs/benchmarks.md.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    /// tokio's multi-thread scheduler.
    Multi,
    /// One thread for everything.
    Current,
}

#[derive(Debug, Args)]
struct Serve {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    #[arg(long, value_enum, default_value = "multi")]
    runtime: Runtime,
    /// Worker threads of the multi-thread runtime (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Stop after this many seconds even without a signal.
    #[arg(long, default_value_t = 3600)]
    max_secs: u64,
}

#[derive(Debug, Args)]
struct CommonArgs {
    #[arg(long, value_enum, default_value = "chatroom")]
    target: Target,
    /// The server, as IP:PORT on loopback. Fanout and latency take several,
    /// comma-separated (the nodes of a cluster), and spread receivers and
    /// publishers over them round robin.
    #[arg(long, default_value = "127.0.0.1:7878", value_delimiter = ',')]
    addr: Vec<String>,
    /// The server's PID, to read its RSS (and CPU time) from /proc; for a
    /// cluster, every node's, comma-separated (RSS is the first one's, CPU
    /// time the sum).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// The PID of the broker behind a cluster (nats-server), for its CPU time.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Appended to every nickname (`r7-TAG`): a cluster keeps nick claims
    /// of a node that was stopped until their lease runs out, so each run
    /// against the same NATS needs names of its own.
    #[arg(long)]
    nick_tag: Option<String>,
    /// Group of the run in the report: `cluster` rows go to their own table.
    #[arg(long)]
    suite: Option<String>,
    /// Spread connections over 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Connections set up at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Bytes of message text.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Name of the system in the report (default: the target's name).
    #[arg(long)]
    label: Option<String>,
}

#[derive(Debug, Args)]
struct Fanout {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long, default_value_t = 100)]
    members: usize,
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Unacknowledged messages a publisher may have out.
    #[arg(long, default_value_t = 64)]
    window: u32,
    /// How far (in messages) publishers may run ahead of the slowest receiver.
    /// At 512 (and a publisher that slept a millisecond when it was that far
    /// ahead) the pacing held the raw broadcaster to about half its rate at
    /// 100 members (docs/benchmarks.md, "The generator held the ceiling back").
    #[arg(long, default_value_t = 4096)]
    max_lag: u64,
    /// Stop each publisher after this many messages.
    #[arg(long, default_value_t = 10_000_000)]
    max_messages: u64,
}

#[derive(Debug, Args)]
struct Latency {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Messages per second, all publishers together.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
}

#[derive(Debug, Args)]
struct Idle {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Connections per room.
    #[arg(long, default_value_t = 100)]
    room_size: usize,
    /// Seconds to wait before reading RSS.
    #[arg(long, default_value_t = 2.0)]
    settle_secs: f64,
}

#[derive(Debug, Args)]
struct Churn {
    #[command(flatten)]
    common: CommonArgs,
    /// New connections per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Connections in progress at most; past it a tick is skipped.
    #[arg(long, default_value_t = 1000)]
    max_in_flight: usize,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Files holding RESULT lines.
    #[arg(required = true)]
    results: Vec<std::path::PathBuf>,
    /// Write the tables between the bench markers of this Markdown file.
    #[arg(long)]
    into: Option<std::path::PathBuf>,
    /// Markdown to put before the tables (the run's machine and date).
    #[arg(long)]
    header: Option<std::path::PathBuf>,
    /// Markdown to put before the cluster table.
    #[arg(long)]
    cluster_header: Option<std::path::PathBuf>,
}

/// Bounds a duration argument: positive and at most an hour.
fn seconds(s: f64) -> Result<Duration, String> {
    if !(s > 0.0 && s <= 3600.0) {
        return Err(format!("{s}: seconds must be in (0, 3600]"));
    }
    Ok(Duration::from_secs_f64(s))
}

fn common(args: &CommonArgs) -> Result<Common, String> {
    let addrs = args
        .addr
        .iter()
        .map(|a| net::loopback(a))
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err("--addr needs at least one address".to_owned());
    }
    if let Some(tag) = &args.nick_tag
        && (tag.is_empty()
            || tag.len() > 12
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(format!(
            "--nick-tag {tag}: 1 to 12 ASCII letters, digits, '-' or '_'"
        ));
    }
    Ok(Common {
        target: args.target,
        addrs,
        server_pids: args.server_pid.clone(),
        broker_pid: args.broker_pid,
        nick_tag: args.nick_tag.clone(),
        sources: args.sources.max(1),
        concurrency: args.concurrency.clamp(1, 10_000),
        size: args.size.clamp(32, 4000),
    })
}

/// Idle and churn measure one server: they refuse a list of addresses.
fn one_server(args: &CommonArgs) -> Result<Common, String> {
    if args.addr.len() > 1 {
        return Err("idle and churn take one --addr".to_owned());
    }
    common(args)
}

fn print(mut report: Report, args: &CommonArgs) {
    for (key, value) in [("label", &args.label), ("suite", &args.suite)] {
        if let Some(value) = value {
            report
                .0
                .insert(key.into(), serde_json::Value::from(value.as_str()));
        }
    }
    let width = report.0.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in &report.0 {
        println!("{key:<width$}  {value}");
    }
    println!("RESULT {}", serde_json::Value::Object(report.0.clone()));
}

fn serve(args: &Serve, ceiling: bool) -> Result<(), String> {
    let addr = net::loopback(&args.listen)?;
    let rt = match args.runtime {
        Runtime::Current => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Runtime::Multi => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if args.threads > 0 {
                b.worker_threads(args.threads);
            }
            b.enable_all().build()
        }
    }
    .map_err(|e| e.to_string())?;
    let max = Duration::from_secs(args.max_secs.clamp(1, 24 * 3600));
    rt.block_on(async move {
        let shutdown = async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                _ = tokio::time::sleep(max) => {}
            }
        };
        if ceiling {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "ceiling on {}",
                listener.local_addr().map_err(|e| e.to_string())?
            );
            let stop = CancellationToken::new();
            let trigger = stop.clone();
            tokio::spawn(async move {
                shutdown.await;
                trigger.cancel();
            });
            ceiling::run(listener, stop)
                .await
                .map_err(|e| e.to_string())
        } else {
            engine::run(addr, shutdown).await
        }
    })
}

fn load(command: Command) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let (report, args) = match command {
            Command::Fanout(a) => {
                let c = common(&a.common)?;
                let pace = Pace::Flat {
                    window: a.window.clamp(net::NATS_BATCH * 2, 1 << 16),
                    max_lag: a.max_lag.max(1),
                    max_messages: a.max_messages.max(1),
                };
                let r = load::room(
                    &c,
                    "fanout",
                    a.members.clamp(1, 20_000),
                    a.publishers.clamp(1, 1000),
                    pace,
                    seconds(a.secs)?,
                )
                .await;
                (r, a.common)
            }
            Command::Latency(a) => {
                let c = common(&a.common)?;
                if !(a.rate > 0.0 && a.rate <= 1e6) {
                    return Err("--rate must be in (0, 1000000]".to_owned());
                }
                let pace = Pace::Rate { per_sec: a.rate };
                let r = load::room(
                    &c,
                    "latency",
                    a.members.clamp(1, 20_000),
                    a.publishers.clamp(1, 1000),
                    pace,
                    seconds(a.secs)?,
                )
                .await;
                (r, a.common)
            }
            Command::Idle(a) => {
                let c = one_server(&a.common)?;
                let r = load::idle(
                    &c,
                    a.conns.clamp(1, 200_000),
                    a.room_size.max(1),
                    seconds(a.settle_secs)?,
                )
                .await;
                (r, a.common)
            }
            Command::Churn(a) => {
                let c = one_server(&a.common)?;
                if !(a.rate > 0.0 && a.rate <= 1e5) {
                    return Err("--rate must be in (0, 100000]".to_owned());
                }
                let r = load::churn(
                    &c,
                    a.rate,
                    seconds(a.secs)?,
                    a.max_in_flight.clamp(1, 10_000),
                )
                .await;
                (r, a.common)
            }
            Command::Server(_) | Command::Ceiling(_) | Command::Report(_) => {
                unreachable!("not a load mode")
            }
        };
        print(report.map_err(|e| e.to_string())?, &args);
        Ok(())
    })
}

fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_report(args: &ReportArgs) -> Result<(), String> {
    let mut rows = Vec::new();
    for path in &args.results {
        rows.extend(report::parse(&read(path)?));
    }
    let (main, cluster) = report::split(rows);
    // Each part is written only when it has rows, so rerunning one part
    // leaves the other's tables in place.
    let mut parts = Vec::new();
    for (rows, header, markers, render) in [
        (
            main,
            &args.header,
            report::MAIN,
            report::render as fn(&[report::Row]) -> String,
        ),
        (
            cluster,
            &args.cluster_header,
            report::CLUSTER,
            report::render_cluster,
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        let mut tables = match header {
            Some(h) => read(h)?,
            None => String::new(),
        };
        tables.push_str(&render(&rows));
        parts.push((tables, markers));
    }
    match &args.into {
        Some(doc) => {
            let mut text = read(doc)?;
            for (tables, markers) in &parts {
                text = report::splice(&text, tables, *markers)?;
            }
            std::fs::write(doc, text).map_err(|e| format!("{}: {e}", doc.display()))?;
        }
        None => {
            for (tables, _) in &parts {
                print!("{tables}");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(s) => serve(&s, false),
        Command::Ceiling(s) => serve(&s, true),
        Command::Report(r) => write_report(&r),
        other => load(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatroom-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
