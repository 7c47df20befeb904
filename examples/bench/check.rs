//! What a benchmark message carries, and how a receiver checks what it got.
//!
//! Every published text holds a token `~B<publisher>.<seq>.<sent_us>~`,
//! padded to the requested size. The token survives every wire format the
//! tool reads (chatroom JSON, the chatroom text dialect, the ceiling's raw
//! lines, a RESP bulk string, a NATS payload), so one receiver loop checks
//! them all: it finds the token in a line and never parses the envelope,
//! except the chatroom room id, which it checks too when the line has one.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use memchr::memmem;

/// The clock every timestamp in a run is measured against. Publishers and
/// receivers live in one process, so a monotonic clock is enough.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Microseconds since [`EPOCH`].
pub(crate) fn now_us() -> u64 {
    us_since_epoch(Instant::now())
}

/// Microseconds from [`EPOCH`] to `at`.
pub(crate) fn us_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH).as_micros() as u64
}

/// Starts the run clock; call before the first message.
pub(crate) fn start_clock() {
    LazyLock::force(&EPOCH);
}

const TOKEN: &[u8] = b"~B";
/// Searchers built once: `memmem::find` builds one per call, which cost
/// the receivers more than the search itself.
static TOKEN_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(TOKEN));
static ID_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"id\":"));
/// Gaps wider than this are counted as lost without remembering each id.
const MAX_TRACKED_GAP: u64 = 100_000;

/// Appends the text of message `seq` from `publisher`, padded with `x` to
/// `size` bytes (never shorter than the token itself).
pub(crate) fn write_payload(out: &mut Vec<u8>, publisher: u32, seq: u64, size: usize) {
    let start = out.len();
    out.extend_from_slice(TOKEN);
    push_num(out, u64::from(publisher));
    out.push(b'.');
    push_num(out, seq);
    out.push(b'.');
    push_num(out, now_us());
    out.push(b'~');
    while out.len() - start < size {
        out.push(b'x');
    }
}

fn push_num(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn read_num(bytes: &[u8]) -> Option<(u64, usize)> {
    let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > 19 {
        return None;
    }
    let n = bytes[..len]
        .iter()
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    Some((n, len))
}

/// A token read back out of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) publisher: u32,
    pub(crate) seq: u64,
    pub(crate) sent_us: u64,
}

/// Finds the token in `line`.
pub(crate) fn find_token(line: &[u8]) -> Option<Token> {
    let at = TOKEN_FINDER.find(line)? + TOKEN.len();
    let rest = &line[at..];
    let (publisher, n) = read_num(rest)?;
    let rest = rest[n..].strip_prefix(b".")?;
    let (seq, n) = read_num(rest)?;
    let rest = rest[n..].strip_prefix(b".")?;
    let (sent_us, n) = read_num(rest)?;
    rest[n..].strip_prefix(b"~")?;
    Some(Token {
        publisher: u32::try_from(publisher).ok()?,
        seq,
        sent_us,
    })
}

/// The chatroom room id of a `message` line, if it has one.
pub(crate) fn find_room_id(line: &[u8]) -> Option<u64> {
    let at = ID_FINDER.find(line)? + 5;
    read_num(&line[at..]).map(|(n, _)| n)
}

/// When a batch of lines was read, as an instant and in run microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    pub(crate) instant: Instant,
    pub(crate) us: u64,
}

impl Arrival {
    pub(crate) fn now() -> Self {
        let instant = Instant::now();
        Self {
            instant,
            us: us_since_epoch(instant),
        }
    }
}

/// What one receiver saw, checked message by message.
#[derive(Debug)]
pub(crate) struct Receipts {
    /// Per publisher: the next sequence number expected.
    next: Vec<u64>,
    /// Per publisher: numbers skipped over and not (yet) seen.
    missing: Vec<BTreeSet<u64>>,
    /// Skipped numbers too many to remember, counted as lost.
    untracked: u64,
    pub(crate) received: u64,
    /// Bytes of the lines that carried a message, with their line ends
    /// (`\n`; a text line's `\r` is not counted): what a delivery costs on
    /// the wire.
    pub(crate) bytes: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    /// Chatroom only: room ids that did not follow the previous one by 1.
    pub(crate) id_breaks: u64,
    last_id: Option<u64>,
    pub(crate) latency: Histogram<u64>,
    pub(crate) last_at: Option<Instant>,
    /// The server closed the connection before the run ended.
    pub(crate) closed_early: bool,
    /// chatroom `lagged` notices: the receiver fell behind the server's
    /// queue and was caught up from history (lossless, but the server's
    /// slow-consumer path was in the picture).
    pub(crate) lag_notices: u64,
}

pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s at three significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

impl Receipts {
    pub(crate) fn new(publishers: usize) -> Self {
        Self {
            next: vec![0; publishers],
            missing: vec![BTreeSet::new(); publishers],
            untracked: 0,
            received: 0,
            bytes: 0,
            duplicated: 0,
            reordered: 0,
            id_breaks: 0,
            last_id: None,
            latency: histogram(),
            last_at: None,
            closed_early: false,
            lag_notices: 0,
        }
    }

    /// Checks one line that arrived at `at` (the end of the read that
    /// brought it: one clock reading per read, not per line, keeps the
    /// receivers cheap); lines without a token (presence, replies,
    /// protocol chatter) are ignored. Returns true when the line was a
    /// message.
    pub(crate) fn on_line(&mut self, line: &[u8], at: Arrival) -> bool {
        let Some(token) = find_token(line) else {
            if line.starts_with(br#"{"type":"lagged""#) {
                self.lag_notices += 1;
            }
            return false;
        };
        self.bytes += line.len() as u64 + 1;
        self.latency
            .saturating_record(at.us.saturating_sub(token.sent_us).max(1));
        self.last_at = Some(at.instant);
        if let Some(id) = find_room_id(line) {
            if self.last_id.is_some_and(|last| id != last + 1) {
                self.id_breaks += 1;
            }
            self.last_id = Some(id);
        }
        let p = token.publisher as usize;
        if p >= self.next.len() {
            self.next.resize(p + 1, 0);
            self.missing.resize(p + 1, BTreeSet::new());
        }
        let next = self.next[p];
        if token.seq == next {
            self.next[p] += 1;
            self.received += 1;
        } else if token.seq > next {
            let gap = token.seq - next;
            if gap > MAX_TRACKED_GAP {
                self.untracked += gap;
            } else {
                self.missing[p].extend(next..token.seq);
            }
            self.next[p] = token.seq + 1;
            self.received += 1;
        } else if self.missing[p].remove(&token.seq) {
            self.reordered += 1;
            self.received += 1;
        } else {
            self.duplicated += 1;
        }
        true
    }

    /// Messages never received, given how many each publisher sent.
    pub(crate) fn lost(&self, sent: &[u64]) -> u64 {
        let mut lost = self.untracked;
        for (p, &sent) in sent.iter().enumerate() {
            let next = self.next.get(p).copied().unwrap_or(0);
            lost += sent.saturating_sub(next);
            lost += self.missing.get(p).map_or(0, |m| m.len() as u64);
        }
        lost
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Percentiles {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Seconds as a float, for rates.
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_every_envelope() {
        let mut text = Vec::new();
        write_payload(&mut text, 3, 42, 64);
        assert_eq!(text.len(), 64);
        let text = String::from_utf8(text).unwrap();
        let lines = [
            format!(
                r#"{{"type":"message","room":"lobby","id":7,"from":"p3","text":"{text}","ts":1}}"#
            ),
            format!("<p3> {text}"),
            text.clone(),
        ];
        for line in lines {
            let token = find_token(line.as_bytes()).unwrap();
            assert_eq!((token.publisher, token.seq), (3, 42));
        }
    }

    #[test]
    fn receipts_count_loss_duplicates_and_reordering() {
        let mut r = Receipts::new(1);
        let line = |seq: u64| {
            let mut v = Vec::new();
            write_payload(&mut v, 0, seq, 16);
            v
        };
        for seq in [0, 1, 3, 2, 2, 5] {
            r.on_line(&line(seq), Arrival::now());
        }
        assert_eq!(r.received, 5);
        assert_eq!(r.reordered, 1);
        assert_eq!(r.duplicated, 1);
        assert_eq!(r.lost(&[7]), 2); // 4 skipped, 6 never came
    }

    #[test]
    fn lag_notices_are_counted_and_are_not_messages() {
        let mut r = Receipts::new(1);
        let notice = br#"{"type":"lagged","room":"bench","first":3,"last":9}"#;
        assert!(!r.on_line(notice, Arrival::now()));
        assert!(!r.on_line(br#"{"type":"presence","room":"bench"}"#, Arrival::now()));
        assert_eq!((r.lag_notices, r.received), (1, 0));
    }
}
