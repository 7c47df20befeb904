//! The scenarios: fanout, latency, idle and churn. Each is bounded in
//! connections, messages and time, and returns one [`Report`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::check::{self, Arrival, Percentiles, Receipts, histogram, secs, write_payload};
use crate::net::{self, Conn, ROOM, Reply, STEP_TIMEOUT, Target};

/// How long receivers may take to catch up after the last publish.
const DRAIN: Duration = Duration::from_secs(15);
/// Most messages a publisher encodes into one write.
const WRITE_BATCH: u64 = 32;

/// What every scenario needs to know about its target.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) target: Target,
    /// The server, or the nodes of a cluster; connection `i` of a group
    /// goes to `addrs[i % len]`.
    pub(crate) addrs: Vec<SocketAddr>,
    /// The server's processes (a cluster's nodes), for RSS and CPU time.
    pub(crate) server_pids: Vec<u32>,
    /// The broker behind a cluster, for its CPU time.
    pub(crate) broker_pid: Option<u32>,
    /// Appended to every nickname (see `--nick-tag`).
    pub(crate) nick_tag: Option<String>,
    /// How many 127.0.0.x source addresses to spread connections over.
    pub(crate) sources: u8,
    /// Connections set up at once.
    pub(crate) concurrency: usize,
    /// Bytes of message text.
    pub(crate) size: usize,
}

/// One scenario's figures: a flat JSON object, printed as a table for
/// people and as one `RESULT` line for the report.
#[derive(Debug)]
pub(crate) struct Report(pub(crate) serde_json::Map<String, Value>);

impl Common {
    /// The process whose RSS is reported: the (first) server.
    fn rss_pid(&self) -> Option<u32> {
        self.server_pids.first().copied()
    }

    /// The nickname of connection `i` of a group (`r` receivers, `p`
    /// publishers).
    fn nick(&self, group: char, i: usize) -> String {
        match &self.nick_tag {
            Some(tag) => format!("{group}{i}-{tag}"),
            None => format!("{group}{i}"),
        }
    }
}

impl Report {
    fn new(scenario: &str, common: &Common) -> Self {
        let mut map = serde_json::Map::new();
        map.insert("scenario".into(), json!(scenario));
        map.insert("target".into(), json!(common.target.name()));
        map.insert("size".into(), json!(common.size));
        map.insert("nodes".into(), json!(common.addrs.len()));
        Self(map)
    }

    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_owned(), value.into());
    }

    fn latency(&mut self, prefix: &str, h: &Histogram<u64>) {
        let p = Percentiles::of(h);
        self.set(&format!("{prefix}_p50_us"), p.p50);
        self.set(&format!("{prefix}_p99_us"), p.p99);
        self.set(&format!("{prefix}_p999_us"), p.p999);
        self.set(&format!("{prefix}_max_us"), p.max);
    }
}

/// The server's resident set, in KiB, from `/proc/PID/status`.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Clock ticks per second of `/proc/PID/stat` times. The kernel reports
/// them in USER_HZ, which is 100 on every Linux architecture this runs on
/// (reading `sysconf` would need libc for one constant).
const TICKS_PER_SEC: u64 = 100;

/// User plus system CPU time of a process so far, in clock ticks, from
/// `/proc/PID/stat` (fields 14 and 15).
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; count from its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of the servers and of the broker over part of a run.
#[derive(Debug)]
struct CpuMeter {
    servers: Vec<u32>,
    broker: Option<u32>,
    servers_at: Option<u64>,
    broker_at: Option<u64>,
}

impl CpuMeter {
    fn start(common: &Common) -> Self {
        let servers = common.server_pids.clone();
        let broker = common.broker_pid;
        Self {
            servers_at: Self::sum(&servers),
            broker_at: broker.and_then(cpu_ticks),
            servers,
            broker,
        }
    }

    /// The sum over `pids`, or `None` when one cannot be read (a node
    /// died): a partial sum would pass for a low cost.
    fn sum(pids: &[u32]) -> Option<u64> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|&p| cpu_ticks(p)).sum()
    }

    /// Adds `node_cpu_ms`, `broker_cpu_ms` and their cost per published
    /// message (µs) to `report`.
    fn finish(self, report: &mut Report, messages: u64) {
        let ms = |ticks: u64| ticks * 1000 / TICKS_PER_SEC;
        let now = [Self::sum(&self.servers), self.broker.and_then(cpu_ticks)];
        let before = [self.servers_at, self.broker_at];
        for ((key, at), now) in ["node", "broker"].iter().zip(before).zip(now) {
            if let (Some(at), Some(now)) = (at, now) {
                let spent = ms(now.saturating_sub(at));
                report.set(&format!("{key}_cpu_ms"), spent);
                report.set(
                    &format!("{key}_cpu_us_per_msg"),
                    (spent as f64 * 1000.0 / messages.max(1) as f64 * 100.0).round() / 100.0,
                );
            }
        }
    }
}

/// Opens `n` connections and readies each with `ready`, at most
/// `common.concurrency` at a time. Returns them in index order with the
/// setup time (connect to ready) of each.
async fn open_many<F, Fut>(
    common: &Common,
    n: usize,
    offset: usize,
    ready: F,
) -> io::Result<(Vec<Conn>, Histogram<u64>)>
where
    F: Fn(usize, Conn) -> Fut,
    Fut: Future<Output = io::Result<Conn>> + Send + 'static,
{
    let mut setup = histogram();
    let mut slots: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
    let mut tasks = JoinSet::new();
    let mut next = 0;
    let mut done = 0;
    while done < n {
        while next < n && tasks.len() < common.concurrency.max(1) {
            let t0 = Instant::now();
            let addr = common.addrs[next % common.addrs.len()];
            let conn = net::connect(addr, offset + next, common.sources).await?;
            let fut = ready(next, conn);
            let i = next;
            tasks.spawn(async move { (i, fut.await, t0.elapsed()) });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (i, conn, took) = joined.map_err(io::Error::other)?;
        slots[i] = Some(conn?);
        setup.saturating_record(took.as_micros().max(1) as u64);
        done += 1;
    }
    Ok((slots.into_iter().flatten().collect(), setup))
}

/// How publishers pace themselves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// As fast as the server acknowledges, with at most `window` messages
    /// unacknowledged per publisher and the room's slowest receiver at
    /// most `max_lag` messages behind (so no server's queue limit is hit
    /// by a receiver that is only slow because it shares the CPU).
    Flat {
        window: u32,
        max_lag: u64,
        max_messages: u64,
    },
    /// A fixed total rate, shared evenly by the publishers.
    Rate { per_sec: f64 },
}

/// The room's progress, shared by publishers and receivers.
///
/// A publisher that is `max_lag` ahead waits for the slowest receiver and
/// is woken as soon as that receiver reads on (not at the next tick of a
/// timer: a millisecond's pause of every publisher, at 15 M deliveries a
/// second, held the raw broadcaster to half its rate).
#[derive(Debug)]
struct Flow {
    published: AtomicU64,
    /// Messages each receiver has read; `u64::MAX` once it is gone.
    progress: Vec<AtomicU64>,
    /// The slowest receiver's count when a publisher last looked.
    slowest: AtomicU64,
    /// Publishers waiting for the slowest receiver.
    waiting: AtomicUsize,
    /// Told when one of the slowest receivers reads on while a publisher
    /// waits.
    advanced: Notify,
}

impl Flow {
    fn new(receivers: usize) -> Self {
        Self {
            published: AtomicU64::new(0),
            progress: (0..receivers).map(|_| AtomicU64::new(0)).collect(),
            slowest: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            advanced: Notify::new(),
        }
    }

    /// Receiver `index` has read `received` messages in all.
    fn read_up_to(&self, index: usize, received: u64) {
        let was = self.progress[index].swap(received, Ordering::SeqCst);
        // Only one of the slowest can move the minimum on.
        if was <= self.slowest.load(Ordering::Relaxed) && self.waiting.load(Ordering::SeqCst) > 0 {
            self.advanced.notify_waiters();
        }
    }

    fn all_read(&self, total: u64) -> bool {
        self.progress
            .iter()
            .all(|p| p.load(Ordering::Relaxed) >= total)
    }

    /// How far publishers are ahead of the slowest receiver, looked up now.
    fn ahead(&self) -> u64 {
        let min = self
            .progress
            .iter()
            .map(|p| p.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX);
        // Never moved back by a publisher that looked earlier.
        self.slowest.fetch_max(min, Ordering::Relaxed);
        self.published.load(Ordering::Relaxed).saturating_sub(min)
    }

    /// Waits until publishers are less than `max_lag` messages ahead of
    /// the slowest receiver and returns how many more may be sent, or
    /// `None` once `until` has passed.
    async fn room_to_publish(&self, max_lag: u64, until: Instant) -> Option<u64> {
        let quick = self
            .published
            .load(Ordering::Relaxed)
            .saturating_sub(self.slowest.load(Ordering::Relaxed));
        if quick < max_lag {
            return Some(max_lag - quick);
        }
        loop {
            let notified = self.advanced.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            self.waiting.fetch_add(1, Ordering::SeqCst);
            // Looked up after saying so: a receiver that read on before
            // `waiting` went up has its count seen here.
            let ahead = self.ahead();
            if ahead < max_lag || Instant::now() >= until {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return (ahead < max_lag).then(|| max_lag - ahead);
            }
            // The timeout only bounds a wait past `until`.
            let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What one publisher did.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    count: u64,
    refused: u64,
}

/// Fanout and latency: `members` receivers and `publishers` publishers in
/// one room, for `duration`.
pub(crate) async fn room(
    common: &Common,
    scenario: &str,
    members: usize,
    publishers: usize,
    pace: Pace,
    duration: Duration,
) -> io::Result<Report> {
    check::start_clock();
    let target = common.target;
    let (receivers, setup) = open_many(common, members, 0, |i, mut conn| {
        let nick = common.nick('r', i);
        async move {
            net::subscribe(target, &mut conn, &nick, ROOM).await?;
            Ok(conn)
        }
    })
    .await?;
    // Publishers always speak the native dialect.
    let pub_target = match target {
        Target::ChatroomText => Target::Chatroom,
        t => t,
    };
    let (pubs, _) = open_many(common, publishers, members, |i, mut conn| {
        let nick = common.nick('p', i);
        async move {
            net::prepare_publisher(pub_target, &mut conn, &nick, ROOM).await?;
            Ok(conn)
        }
    })
    .await?;

    let stop = CancellationToken::new();
    let flow = Arc::new(Flow::new(members));
    let mut receiving = Vec::with_capacity(members);
    for (i, conn) in receivers.into_iter().enumerate() {
        receiving.push(tokio::spawn(receive(
            target,
            conn,
            publishers,
            flow.clone(),
            i,
            stop.clone(),
        )));
    }

    let cpu = CpuMeter::start(common);
    let started = Instant::now();
    let until = started + duration;
    let mut publishing = Vec::with_capacity(publishers);
    for (i, conn) in pubs.into_iter().enumerate() {
        let flow = flow.clone();
        let size = common.size;
        let share = publishers as f64;
        publishing.push(tokio::spawn(async move {
            match pace {
                Pace::Flat {
                    window,
                    max_lag,
                    max_messages,
                } => {
                    publish_flat(
                        pub_target,
                        conn,
                        i as u32,
                        size,
                        until,
                        max_messages,
                        window,
                        max_lag,
                        flow,
                    )
                    .await
                }
                Pace::Rate { per_sec } => {
                    publish_at_rate(
                        pub_target,
                        conn,
                        i as u32,
                        size,
                        until,
                        per_sec / share,
                        flow,
                    )
                    .await
                }
            }
        }));
    }
    let mut sent = Vec::with_capacity(publishers);
    for p in publishing {
        sent.push(p.await.map_err(io::Error::other)??);
    }
    let published_for = started.elapsed();
    let counts: Vec<u64> = sent.iter().map(|s| s.count).collect();
    let total: u64 = counts.iter().sum();

    let drain_until = Instant::now() + DRAIN;
    while Instant::now() < drain_until && !flow.all_read(total) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Measured before the receivers close, so no node's disconnect work
    // is counted.
    let mut report = Report::new(scenario, common);
    cpu.finish(&mut report, total);
    stop.cancel();
    let mut all = Vec::with_capacity(members);
    for r in receiving {
        all.push(r.await.map_err(io::Error::other)?);
    }

    let mut latency = histogram();
    let (mut delivered, mut lost, mut dup, mut reord, mut breaks) = (0, 0, 0, 0, 0);
    let mut bytes = 0;
    let mut last = started;
    let (mut cut, mut lag_notices) = (0, 0);
    for r in &all {
        delivered += r.received;
        bytes += r.bytes;
        lost += r.lost(&counts);
        dup += r.duplicated;
        reord += r.reordered;
        breaks += r.id_breaks;
        lag_notices += r.lag_notices;
        latency.add(&r.latency).expect("same bounds");
        if let Some(at) = r.last_at {
            last = last.max(at);
        }
        if r.closed_early {
            cut += 1;
        }
    }
    let delivering = secs(last - started);
    report.set("members", members);
    report.set("publishers", publishers);
    if let Pace::Rate { per_sec } = pace {
        report.set("rate", per_sec);
    }
    report.set("secs", duration.as_secs_f64());
    report.set("published", total);
    report.set("refused", sent.iter().map(|s| s.refused).sum::<u64>());
    report.set(
        "publishes_per_sec",
        (total as f64 / secs(published_for)).round(),
    );
    report.set("deliveries", delivered);
    report.set(
        "deliveries_per_sec",
        (delivered as f64 / delivering).round(),
    );
    // Mean bytes per delivered line: a ceiling run can be given lines of
    // the same length (compare.sh's `ceiling=`).
    report.set(
        "bytes_per_delivery",
        (bytes as f64 / delivered.max(1) as f64).round(),
    );
    report.set("lost", lost);
    report.set("duplicated", dup);
    report.set("reordered", reord);
    report.set("id_breaks", breaks);
    report.set("receivers_closed", cut);
    report.set("lag_notices", lag_notices);
    report.latency("lat", &latency);
    report.latency("setup", &setup);
    if let Some(kib) = common.rss_pid().and_then(rss_kib) {
        report.set("rss_kib", kib);
    }
    Ok(report)
}

/// One receiver: checks every line until `stop`.
async fn receive(
    target: Target,
    conn: Conn,
    publishers: usize,
    flow: Arc<Flow>,
    index: usize,
    stop: CancellationToken,
) -> Receipts {
    let Conn { mut lines, mut wr } = conn;
    let mut r = Receipts::new(publishers);
    let mut at = Arrival::now();
    loop {
        while let Some(range) = lines.next_range() {
            let line = lines.get(range);
            if !r.on_line(line, at)
                && let Some(answer) = net::keepalive_reply(target, line)
                && wr.write_all(answer).await.is_err()
            {
                r.closed_early = true;
                return r;
            }
        }
        flow.read_up_to(index, r.received);
        tokio::select! {
            _ = stop.cancelled() => return r,
            more = lines.fill() => if matches!(more, Ok(true)) {
                at = Arrival::now();
            } else {
                r.closed_early = true;
                // Let the publishers go on: a receiver that was cut off must
                // not stall the others.
                flow.read_up_to(index, u64::MAX);
                return r;
            },
        }
    }
}

/// What a publisher's server answered so far.
#[derive(Debug, Default)]
struct Replies {
    /// Messages acknowledged or refused: the server is done with them.
    answered: AtomicU64,
    refused: AtomicU64,
}

/// Waits (at most [`STEP_TIMEOUT`]) until the server answered every one of
/// the `count` messages sent that it will answer, then a moment more.
/// Closing the connection earlier would drop the messages still in flight
/// (a cluster node waits for its broker's acknowledgement of each `say`,
/// one at a time), and they would be counted as lost.
async fn settle(target: Target, replies: &Replies, count: u64) {
    if let Some(unit) = target.ack_unit() {
        // NATS acknowledges whole batches only; the last partial one never.
        let expected = count - count % u64::from(unit);
        let deadline = Instant::now() + STEP_TIMEOUT;
        while replies.answered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Reads a publisher's replies: returns acknowledged permits to `window`
/// and counts answers and refusals, until the connection closes or `stop`.
async fn read_acks(
    target: Target,
    mut lines: net::Lines,
    window: Option<Arc<Semaphore>>,
    replies: Arc<Replies>,
    stop: CancellationToken,
) {
    loop {
        while let Some(range) = lines.next_range() {
            match net::classify(target, lines.get(range)) {
                Reply::Ack(n) => {
                    replies.answered.fetch_add(u64::from(n), Ordering::Relaxed);
                    if let Some(w) = &window {
                        w.add_permits(n as usize);
                    }
                }
                Reply::Refused => {
                    replies.answered.fetch_add(1, Ordering::Relaxed);
                    replies.refused.fetch_add(1, Ordering::Relaxed);
                    if let Some(w) = &window {
                        w.add_permits(1);
                    }
                }
                Reply::Other => {}
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            more = lines.fill() => if !matches!(more, Ok(true)) { return },
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish_flat(
    target: Target,
    conn: Conn,
    index: u32,
    size: usize,
    until: Instant,
    max_messages: u64,
    window: u32,
    max_lag: u64,
    flow: Arc<Flow>,
) -> io::Result<Sent> {
    let Conn { lines, mut wr } = conn;
    let permits = target
        .ack_unit()
        .map(|_| Arc::new(Semaphore::new(window as usize)));
    let replies = Arc::new(Replies::default());
    let stop = CancellationToken::new();
    let acks = tokio::spawn(read_acks(
        target,
        lines,
        permits.clone(),
        replies.clone(),
        stop.clone(),
    ));
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut payload = Vec::with_capacity(size + 32);
    let mut count = 0u64;
    while count < max_messages && Instant::now() < until {
        let Some(room) = flow.room_to_publish(max_lag, until).await else {
            break;
        };
        let mut n = room.min(WRITE_BATCH).min(max_messages - count);
        if let Some(p) = &permits {
            let first = tokio::time::timeout(STEP_TIMEOUT, p.acquire())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no acknowledgement"))?
                .map_err(io::Error::other)?;
            first.forget();
            let mut took = 1;
            while took < n {
                match p.try_acquire() {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
                took += 1;
            }
            n = took;
        }
        buf.clear();
        for _ in 0..n {
            payload.clear();
            write_payload(&mut payload, index, count, size);
            net::encode_publish(target, ROOM, &payload, count, &mut buf);
            count += 1;
        }
        flow.published.fetch_add(n, Ordering::Relaxed);
        wr.write_all(&buf).await?;
    }
    settle(target, &replies, count).await;
    stop.cancel();
    let _ = acks.await;
    Ok(Sent {
        count,
        refused: replies.refused.load(Ordering::Relaxed),
    })
}

async fn publish_at_rate(
    target: Target,
    conn: Conn,
    index: u32,
    size: usize,
    until: Instant,
    per_sec: f64,
    flow: Arc<Flow>,
) -> io::Result<Sent> {
    let Conn { lines, mut wr } = conn;
    let replies = Arc::new(Replies::default());
    let stop = CancellationToken::new();
    let acks = tokio::spawn(read_acks(
        target,
        lines,
        None,
        replies.clone(),
        stop.clone(),
    ));
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut payload = Vec::with_capacity(size + 32);
    let start = Instant::now();
    let total = (per_sec * until.saturating_duration_since(start).as_secs_f64()) as u64;
    let mut count = 0u64;
    while count < total && Instant::now() < until + Duration::from_secs(1) {
        let due = ((start.elapsed().as_secs_f64() * per_sec) as u64 + 1).min(total);
        if due > count {
            buf.clear();
            let before = count;
            while count < due {
                payload.clear();
                write_payload(&mut payload, index, count, size);
                net::encode_publish(target, ROOM, &payload, count, &mut buf);
                count += 1;
            }
            wr.write_all(&buf).await?;
            flow.published.fetch_add(due - before, Ordering::Relaxed);
        }
        let next = start + Duration::from_secs_f64(count as f64 / per_sec);
        tokio::time::sleep_until(next.into()).await;
    }
    settle(target, &replies, count).await;
    stop.cancel();
    let _ = acks.await;
    Ok(Sent {
        count,
        refused: replies.refused.load(Ordering::Relaxed),
    })
}

/// Idle: `conns` connections, each subscribed to a room of `room_size`,
/// then left silent; reports the server's RSS per connection.
pub(crate) async fn idle(
    common: &Common,
    conns: usize,
    room_size: usize,
    settle: Duration,
) -> io::Result<Report> {
    let pid = common
        .rss_pid()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "idle needs --server-pid"))?;
    let base = rss_kib(pid).unwrap_or(0);
    let target = common.target;
    let started = Instant::now();
    let (open, setup) = open_many(common, conns, 0, |i, mut conn| async move {
        let room = format!("idle-{}", i / room_size.max(1));
        net::subscribe(target, &mut conn, &format!("i{i}"), &room).await?;
        Ok(conn)
    })
    .await?;
    let opened_in = started.elapsed();
    tokio::time::sleep(settle).await;
    let loaded = rss_kib(pid).unwrap_or(0);
    drop(open);
    tokio::time::sleep(settle).await;
    let after = rss_kib(pid).unwrap_or(0);

    let mut report = Report::new("idle", common);
    report.set("conns", conns);
    report.set("room_size", room_size);
    report.set("rss_base_kib", base);
    report.set("rss_kib", loaded);
    report.set("rss_after_close_kib", after);
    report.set(
        "rss_per_conn_bytes",
        (loaded.saturating_sub(base) * 1024) as f64 / conns.max(1) as f64,
    );
    report.set("conns_per_sec", (conns as f64 / secs(opened_in)).round());
    report.latency("setup", &setup);
    Ok(report)
}

/// Churn: a connection every `1/rate` seconds for `duration`; each one
/// gets ready, publishes one line, waits for its acknowledgement where the
/// target gives one, and closes.
pub(crate) async fn churn(
    common: &Common,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> io::Result<Report> {
    check::start_clock();
    let target = match common.target {
        Target::ChatroomText => Target::Chatroom,
        t => t,
    };
    let total = (rate * duration.as_secs_f64()) as u64;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut setup = histogram();
    let mut cycle = histogram();
    let (mut ok, mut failed, mut skipped) = (0u64, 0u64, 0u64);
    let mut record = |r: Result<io::Result<(u64, u64)>, tokio::task::JoinError>| match r {
        Ok(Ok((s, c))) => {
            setup.saturating_record(s.max(1));
            cycle.saturating_record(c.max(1));
            ok += 1;
        }
        _ => failed += 1,
    };
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        while let Some(r) = tasks.try_join_next() {
            record(r);
        }
        if tasks.len() >= max_in_flight {
            skipped += 1;
            continue;
        }
        let addr = common.addrs[0];
        let (sources, size) = (common.sources, common.size);
        tasks.spawn(async move {
            tokio::time::timeout(STEP_TIMEOUT, one_chat(target, addr, k, sources, size))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "churn cycle timed out"))?
        });
    }
    while let Some(r) = tasks.join_next().await {
        record(r);
    }
    let took = start.elapsed();
    let mut report = Report::new("churn", common);
    report.set("rate", rate);
    report.set("secs", duration.as_secs_f64());
    report.set("attempted", total);
    report.set("completed", ok);
    report.set("failed", failed);
    report.set("skipped", skipped);
    report.set("conns_per_sec", (ok as f64 / secs(took)).round());
    report.latency("setup", &setup);
    report.latency("cycle", &cycle);
    if let Some(kib) = common.rss_pid().and_then(rss_kib) {
        report.set("rss_kib", kib);
    }
    Ok(report)
}

/// One churn connection; returns (setup, whole cycle) in microseconds.
async fn one_chat(
    target: Target,
    addr: SocketAddr,
    k: u64,
    sources: u8,
    size: usize,
) -> io::Result<(u64, u64)> {
    let t0 = Instant::now();
    let mut conn = net::connect(addr, k as usize, sources).await?;
    net::prepare_publisher(target, &mut conn, &format!("c{k}"), ROOM).await?;
    let setup = t0.elapsed().as_micros() as u64;
    let mut payload = Vec::new();
    write_payload(&mut payload, 0, k, size);
    let mut buf = Vec::new();
    // NATS acknowledges a batch with its PONG; ask for one after this line.
    let count = match target {
        Target::Nats => u64::from(net::NATS_BATCH) - 1,
        _ => 0,
    };
    net::encode_publish(target, ROOM, &payload, count, &mut buf);
    conn.wr.write_all(&buf).await?;
    if target.ack_unit().is_some() {
        let mut refused = false;
        conn.lines
            .until(|l| match net::classify(target, l) {
                Reply::Ack(_) => true,
                Reply::Refused => {
                    refused = true;
                    true
                }
                Reply::Other => false,
            })
            .await?;
        if refused {
            return Err(io::Error::other("publish refused"));
        }
    }
    conn.wr.shutdown().await?;
    Ok((setup, t0.elapsed().as_micros() as u64))
}
