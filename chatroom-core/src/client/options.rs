//! How to connect: [`ClientOptions`] and its [`Reconnect`] policy.

use std::time::Duration;

use crate::protocol::Nickname;

/// How long a request waits for its reply by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting (TCP plus `hello`/`welcome`) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default capacity of the event channel, in events.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default capacity of the request channel, in requests.
pub const DEFAULT_COMMAND_CAPACITY: usize = 64;

/// How to connect: the nickname, timeouts, channel sizes and whether to
/// reconnect. Build it with [`ClientOptions::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The nickname to ask for; the server picks one when `None`.
    pub nick: Option<Nickname>,
    /// How long each request waits for its reply.
    pub request_timeout: Duration,
    /// How long connecting, and each reconnect attempt, may take.
    pub connect_timeout: Duration,
    /// How many events may wait unread before new ones are dropped and
    /// counted (see the module docs).
    pub event_capacity: usize,
    /// How many requests may wait for the connection task before callers wait.
    pub command_capacity: usize,
    /// Whether and how to reconnect after the connection ends; `None` (the
    /// default) ends the event stream at the first disconnect.
    pub reconnect: Option<Reconnect>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            nick: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            command_capacity: DEFAULT_COMMAND_CAPACITY,
            reconnect: None,
        }
    }
}

impl ClientOptions {
    /// The defaults: no nickname, no reconnecting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for `nick` in `hello`.
    pub fn with_nick(mut self, nick: Nickname) -> Self {
        self.nick = Some(nick);
        self
    }

    /// Reconnects with `policy` after the connection ends.
    pub fn with_reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Sets the per-request reply timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the event channel's capacity (at least 1).
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }
}

/// A reconnect policy: exponential backoff from `initial_delay`, doubling
/// up to `max_delay`, for at most `max_attempts` attempts in a row.
///
/// The client does not reconnect after [`Client::quit`](super::Client::quit), nor once every
/// [`Client`](super::Client) handle has been dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// The wait before the first attempt.
    pub initial_delay: Duration,
    /// The longest wait between attempts.
    pub max_delay: Duration,
    /// Attempts in a row before giving up; `None` tries forever. With
    /// several servers, one attempt tries each of them once.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// The default policy: 250 ms doubling up to 30 s, forever.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the first and the longest delay.
    pub fn with_delays(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_delay = initial;
        self.max_delay = max.max(initial);
        self
    }

    /// Gives up after `attempts` failed attempts in a row.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }
}
