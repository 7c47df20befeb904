//! The effective settings: the defaults, then a TOML file, then
//! `CHATROOM_*` environment variables, then the command line, each layer
//! overriding the one before.
//!
//! This module knows nothing of how the command line is parsed: `cli`
//! hands it a [`CommandLine`] of values already taken apart.
//!
//! Layers are merged as TOML tables. The defaults, serialized, name every
//! known key and the type its value takes, so each field of
//! [`ServerConfig`] is covered without being listed here a second time.
//! Every value is checked as it is applied, so an error names its key and
//! where it came from; the ranges are checked afterwards by
//! [`chatroom_core::server::Server::new`].

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chatroom_core::broker::Secret;
use chatroom_core::server::ServerConfig;
use toml::{Table, Value};

/// Where the server listens when nothing says otherwise.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// What environment variables for settings start with.
pub(crate) const ENV_PREFIX: &str = "CHATROOM_";
/// A key that is not a [`ServerConfig`] setting: the chat addresses.
pub(crate) const LISTEN: &str = "listen";
/// A key that is not a [`ServerConfig`] setting: the IRC addresses (none
/// by default, which leaves IRC off).
pub(crate) const IRC_LISTEN: &str = "irc_listen";

/// What the command line says, already taken apart by `cli`.
#[derive(Debug, Default)]
pub(crate) struct CommandLine {
    /// The `--config` file.
    pub(crate) config: Option<PathBuf>,
    /// The `--set KEY=VALUE` pairs, in order.
    pub(crate) set: Vec<(String, String)>,
    /// The flags that each stand for one setting (`--tls-cert FILE` for
    /// `tls_cert`, `--listen` for `listen`), typed; they win over `set`.
    pub(crate) flags: Vec<(&'static str, Value)>,
}

/// Everything the binary needs to start a server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// Addresses to bind, in order.
    pub(crate) listen: Vec<String>,
    /// Addresses to bind for IRC, in order; empty when IRC is off.
    pub(crate) irc_listen: Vec<String>,
    /// The engine's settings, not yet validated.
    pub(crate) server: ServerConfig,
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// The `--config` file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// `--set`, `--listen` or the `IP PORT` arguments.
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "config file {}", path.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::CommandLine => f.write_str("the command line"),
        }
    }
}

/// A setting that could not be read. Every one is a configuration error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("config file {} is not valid TOML at line {line}, column {column}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped, counted from 1.
        line: usize,
        /// Where on that line, counted from 1.
        column: usize,
        /// The parser's complaint.
        message: String,
    },
    /// A key that is not a setting (often a typo).
    #[error("unknown setting `{key}` in {origin}; --help lists the settings")]
    Unknown {
        /// The key as written.
        key: String,
        /// Where it was written.
        origin: Origin,
    },
    /// A value of the wrong type for its key.
    #[error("bad value for setting `{key}` in {origin}: {reason}")]
    Value {
        /// The setting.
        key: String,
        /// Where the value was written.
        origin: Origin,
        /// What is wrong with it.
        reason: String,
    },
    /// An environment variable with a setting's name holds bytes that are
    /// not UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        name: String,
    },
}

/// Reads every layer: the file named by `cli`, the `CHATROOM_*` variables
/// among `env`, then the command line's values.
///
/// # Errors
/// The first value that cannot be used, naming its key and its origin.
pub(crate) fn load(
    cli: &CommandLine,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Settings, SettingsError> {
    let mut layers = Layers::new();
    if let Some(path) = &cli.config {
        let origin = Origin::File(path.clone());
        for (key, value) in read_file(path)? {
            layers.set(&key, value, &origin)?;
        }
    }
    let mut vars: Vec<(String, OsString)> = env
        .into_iter()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        let Ok(value) = value.into_string() else {
            return Err(SettingsError::NotUnicode { name });
        };
        layers.set_raw(&key, &value, &Origin::Env(name))?;
    }
    for (key, value) in &cli.set {
        layers.set_raw(key, value, &Origin::CommandLine)?;
    }
    for (key, value) in &cli.flags {
        layers.set(key, value.clone(), &Origin::CommandLine)?;
    }
    layers.finish()
}

impl Settings {
    /// The settings as a TOML file that [`load`] reads back unchanged,
    /// except for secrets (`cluster_password`, `cluster_token`), which are
    /// shown as `<redacted>`: printed settings end up in bug reports.
    pub(crate) fn to_toml(&self) -> String {
        let mut listen = Table::new();
        listen.insert(
            LISTEN.to_owned(),
            Value::Array(self.listen.iter().cloned().map(Value::String).collect()),
        );
        // Both serialize: the table holds strings, and every field of the
        // config is a TOML scalar.
        listen.insert(
            IRC_LISTEN.to_owned(),
            Value::Array(self.irc_listen.iter().cloned().map(Value::String).collect()),
        );
        let listen = toml::to_string(&listen).unwrap_or_default();
        let mut server = self.server.clone();
        for secret in [&mut server.cluster.password, &mut server.cluster.token] {
            if !secret.is_empty() {
                *secret = Secret::new("<redacted>");
            }
        }
        let server = toml::to_string(&server).unwrap_or_default();
        format!("{listen}{server}")
    }
}

/// The settings table for `--help`: key, default and environment variable,
/// in the order `ServerConfig` serializes its keys.
pub(crate) fn help_table() -> String {
    let mut rows = vec![(
        LISTEN.to_owned(),
        format!("[\"{DEFAULT_LISTEN}\"]"),
        format!("{ENV_PREFIX}LISTEN (comma-separated)"),
    )];
    rows.push((
        IRC_LISTEN.to_owned(),
        "[] (IRC off)".to_owned(),
        format!("{ENV_PREFIX}IRC_LISTEN (comma-separated)"),
    ));
    let defaults = toml::to_string(&ServerConfig::default()).unwrap_or_default();
    for (key, value) in defaults.lines().filter_map(|l| l.split_once(" = ")) {
        rows.push((
            key.to_owned(),
            value.to_owned(),
            format!("{ENV_PREFIX}{}", key.to_ascii_uppercase()),
        ));
    }
    let key_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = format!(
        "  {:key_width$}  {:value_width$}  ENVIRONMENT\n",
        "SETTING", "DEFAULT"
    );
    for (key, value, env) in rows {
        out.push_str(&format!(
            "  {key:key_width$}  {value:value_width$}  {env}\n"
        ));
    }
    out
}

/// Checks a listen address's shape: `IP:PORT`, `[IPv6]:PORT` or
/// `HOST:PORT`. Whether it can be bound is only known when binding.
///
/// # Errors
/// A message saying what was expected.
pub(crate) fn parse_listen_addr(s: &str) -> Result<String, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr.to_string());
    }
    match s.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.contains([':', '[', ']', ' '])
                && port.parse::<u16>().is_ok() =>
        {
            Ok(s.to_owned())
        }
        _ => Err(format!(
            "`{s}` is not an address: expected HOST:PORT, like 127.0.0.1:7878 or [::1]:7878"
        )),
    }
}

/// The merged table, and the defaults it started from.
struct Layers {
    defaults: Table,
    merged: Table,
}

impl Layers {
    fn new() -> Self {
        // The default config serializes as a flat table of scalars and
        // lists; it always fits.
        let mut defaults = Table::try_from(ServerConfig::default()).unwrap_or_default();
        defaults.insert(
            LISTEN.to_owned(),
            Value::Array(vec![Value::String(DEFAULT_LISTEN.to_owned())]),
        );
        defaults.insert(IRC_LISTEN.to_owned(), Value::Array(Vec::new()));
        Self {
            merged: defaults.clone(),
            defaults,
        }
    }

    /// Sets `key` to a typed value (from a file or the command line).
    fn set(&mut self, key: &str, value: Value, origin: &Origin) -> Result<(), SettingsError> {
        if !self.defaults.contains_key(key) {
            return Err(SettingsError::Unknown {
                key: key.to_owned(),
                origin: origin.clone(),
            });
        }
        check(key, &value).map_err(|reason| SettingsError::Value {
            key: key.to_owned(),
            origin: origin.clone(),
            reason,
        })?;
        self.merged.insert(key.to_owned(), value);
        Ok(())
    }

    /// Sets `key` from text (an environment variable or `--set`), read as
    /// the type the key's default has.
    fn set_raw(&mut self, key: &str, raw: &str, origin: &Origin) -> Result<(), SettingsError> {
        let Some(default) = self.defaults.get(key) else {
            return Err(SettingsError::Unknown {
                key: key.to_owned(),
                origin: origin.clone(),
            });
        };
        let value = typed(default, raw).map_err(|reason| SettingsError::Value {
            key: key.to_owned(),
            origin: origin.clone(),
            reason,
        })?;
        self.set(key, value, origin)
    }

    fn finish(mut self) -> Result<Settings, SettingsError> {
        let invalid = |key: &str, reason: String| SettingsError::Value {
            key: key.to_owned(),
            origin: Origin::CommandLine,
            reason,
        };
        let listen = self
            .merged
            .remove(LISTEN)
            .unwrap_or(Value::Array(Vec::new()));
        let listen = listen_list(&listen).map_err(|r| invalid(LISTEN, r))?;
        let irc_listen = self
            .merged
            .remove(IRC_LISTEN)
            .unwrap_or(Value::Array(Vec::new()));
        let irc_listen = address_list(&irc_listen).map_err(|r| invalid(IRC_LISTEN, r))?;
        // Each value was checked on its own as it was set, so the whole
        // table deserializes; this only guards against that changing.
        let server = self
            .merged
            .try_into::<ServerConfig>()
            .map_err(|e| invalid("*", e.message().to_owned()))?;
        Ok(Settings {
            listen,
            irc_listen,
            server,
        })
    }
}

/// Reads the config file into a table.
fn read_file(path: &Path) -> Result<Table, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<Table>().map_err(|e| {
        let at = e.span().map_or(0, |s| s.start).min(text.len());
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        SettingsError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })
}

/// Checks one value against its key's type, alone, so the error is about
/// that key only.
fn check(key: &str, value: &Value) -> Result<(), String> {
    if key == LISTEN {
        return listen_list(value).map(drop);
    }
    if key == IRC_LISTEN {
        return address_list(value).map(drop);
    }
    let mut one = Table::new();
    one.insert(key.to_owned(), value.clone());
    one.try_into::<ServerConfig>()
        .map(drop)
        .map_err(|e| e.message().trim().to_owned())
}

/// Reads `raw` as a value of the same TOML type as `default`. Lists are
/// comma-separated.
fn typed(default: &Value, raw: &str) -> Result<Value, String> {
    let raw_trimmed = raw.trim();
    match default {
        Value::Integer(_) => raw_trimmed
            .parse()
            .map(Value::Integer)
            .map_err(|_| format!("expected a whole number, got `{raw}`")),
        Value::Float(_) => raw_trimmed
            .parse()
            .map(Value::Float)
            .map_err(|_| format!("expected a number, got `{raw}`")),
        Value::Boolean(_) => raw_trimmed
            .parse()
            .map(Value::Boolean)
            .map_err(|_| format!("expected true or false, got `{raw}`")),
        Value::Array(_) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        // Strings, and anything a future field may be: TOML syntax first,
        // the text as it is otherwise.
        Value::String(_) => Ok(Value::String(raw.to_owned())),
        _ => Ok(format!("v = {raw}")
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(raw.to_owned()))),
    }
}

/// The listen addresses in a value: a non-empty list of well-formed
/// addresses.
fn listen_list(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err("expected a list of addresses, like [\"127.0.0.1:7878\"]".to_owned());
    };
    if items.is_empty() {
        return Err("needs at least one address".to_owned());
    }
    address_list(value)
}

/// The addresses in a value: a list, maybe empty, of well-formed
/// addresses.
fn address_list(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err("expected a list of addresses, like [\"127.0.0.1:6667\"]".to_owned());
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => parse_listen_addr(s),
            other => Err(format!("expected an address string, got `{other}`")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line with a `--config` file, `--set` pairs and
    /// `--listen` addresses.
    fn line(config: Option<&Path>, set: &[(&str, &str)], listen: &[&str]) -> CommandLine {
        let mut flags = Vec::new();
        if !listen.is_empty() {
            let addrs = listen.iter().map(|a| Value::String((*a).to_owned()));
            flags.push((LISTEN, Value::Array(addrs.collect())));
        }
        CommandLine {
            config: config.map(Path::to_owned),
            set: set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            flags,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "chatroom-server-unit-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn irc_is_off_unless_irc_listen_names_addresses() {
        let s = load(&CommandLine::default(), env(&[])).unwrap();
        assert!(s.irc_listen.is_empty());
        let vars = env(&[("CHATROOM_IRC_LISTEN", "127.0.0.1:6667, [::1]:6667")]);
        let s = load(&CommandLine::default(), vars).unwrap();
        assert_eq!(s.irc_listen, ["127.0.0.1:6667", "[::1]:6667"]);
        let file = temp_file("irc", "irc_listen = [\"0.0.0.0:6697\"]\n");
        let s = load(&line(Some(&file), &[], &[]), env(&[])).unwrap();
        assert_eq!(s.irc_listen, ["0.0.0.0:6697"]);
        let s = load(&line(None, &[("irc_listen", "127.0.0.1:7")], &[]), env(&[])).unwrap();
        assert_eq!(s.irc_listen, ["127.0.0.1:7"]);
        let printed = load(
            &CommandLine::default(),
            env(&[("CHATROOM_IRC_LISTEN", "127.0.0.1:1")]),
        )
        .unwrap()
        .to_toml();
        assert!(
            printed.contains("irc_listen = [\"127.0.0.1:1\"]"),
            "{printed}"
        );
        let bad = load(&line(None, &[("irc_listen", "nowhere")], &[]), env(&[]));
        assert!(matches!(bad, Err(SettingsError::Value { key, .. }) if key == IRC_LISTEN));
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn defaults_listen_on_loopback_7878() {
        let s = load(&CommandLine::default(), env(&[("PATH", "/bin")])).unwrap();
        assert_eq!(s.listen, [DEFAULT_LISTEN]);
        assert_eq!(s.server, ServerConfig::default());
    }

    #[test]
    fn later_layers_win() {
        let path = temp_file(
            "layers",
            "server_name = \"file\"\nmax_connections = 7\nrate_burst = 9\nlisten = [\"127.0.0.1:1\"]\n",
        );
        let vars = env(&[
            ("CHATROOM_SERVER_NAME", "env"),
            ("CHATROOM_RATE_BURST", "11"),
            ("CHATROOM_RATE_PER_SEC", "2"),
            ("CHATROOM_LISTEN", "127.0.0.1:2, [::1]:3"),
        ]);
        let s = load(
            &line(Some(&path), &[("rate_burst", "12")], &[]),
            vars.clone(),
        )
        .unwrap();
        assert_eq!(s.server.server_name, "env");
        assert_eq!(s.server.limits.max_connections, 7);
        assert_eq!(s.server.limits.rate_burst, 12);
        assert!((s.server.limits.rate_per_sec - 2.0).abs() < f64::EPSILON);
        assert_eq!(s.listen, ["127.0.0.1:2", "[::1]:3"]);
        let s = load(&line(Some(&path), &[], &["127.0.0.1:4"]), vars).unwrap();
        assert_eq!(s.listen, ["127.0.0.1:4"]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn printed_settings_read_back_unchanged() {
        let set = [("server_name", "a \"quoted\" name")];
        let s = load(&line(None, &set, &["[::1]:0"]), env(&[])).unwrap();
        let path = temp_file("roundtrip", &s.to_toml());
        let again = load(&line(Some(&path), &[], &[]), env(&[])).unwrap();
        assert_eq!(again, s);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn cluster_secrets_come_from_the_environment_and_are_not_printed() {
        let vars = env(&[
            ("CHATROOM_CLUSTER_USER", "chat"),
            ("CHATROOM_CLUSTER_PASSWORD", "env-secret"),
            ("CHATROOM_CLUSTER_TLS_REQUIRED", "true"),
        ]);
        let s = load(&line(None, &[("cluster_tls_ca", "/etc/ca.pem")], &[]), vars).unwrap();
        assert_eq!(s.server.cluster.user, "chat");
        assert_eq!(s.server.cluster.password.expose(), "env-secret");
        assert!(s.server.cluster.tls_required);
        assert_eq!(s.server.cluster.tls_ca, "/etc/ca.pem");
        let printed = s.to_toml();
        assert!(!printed.contains("env-secret"), "{printed}");
        assert!(
            printed.contains("cluster_password = \"<redacted>\""),
            "{printed}"
        );
        assert!(!format!("{s:?}").contains("env-secret"));
    }

    #[test]
    fn errors_name_the_key_and_origin() {
        /// `--set` pairs, environment, and what the error must mention.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 5] = [
            (
                &[],
                &[("CHATROOM_MAX_CONECTIONS", "5")],
                "CHATROOM_MAX_CONECTIONS",
            ),
            (
                &[],
                &[("CHATROOM_MAX_CONNECTIONS", "many")],
                "max_connections",
            ),
            (
                &[],
                &[("CHATROOM_MAX_CONNECTIONS", "-1")],
                "max_connections",
            ),
            (&[], &[("CHATROOM_LISTEN", "")], "listen"),
            (&[("nope", "1")], &[], "nope"),
        ];
        for (set, vars, needle) in cases {
            let e = load(&line(None, set, &[]), env(vars)).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn file_errors_are_one_line_with_a_position() {
        let path = temp_file("syntax", "server_name = \"a\"\nmax_connections = = 3\n");
        let e = load(&line(Some(&path), &[], &[]), env(&[])).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("line 2"), "{shown}");
        assert!(!shown.contains('\n'), "{shown}");
        std::fs::remove_file(path).unwrap();
        let path = temp_file("unknown", "[server]\nmax_connections = 3\n");
        let e = load(&line(Some(&path), &[], &[]), env(&[])).unwrap_err();
        assert!(e.to_string().contains("unknown setting `server`"), "{e}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn listen_addresses_need_a_port() {
        for good in [
            "127.0.0.1:0",
            "[::1]:7878",
            "localhost:7878",
            "0.0.0.0:65535",
        ] {
            assert!(parse_listen_addr(good).is_ok(), "{good}");
        }
        for bad in [
            "7878",
            "127.0.0.1",
            "::1:7878",
            "host:99999",
            ":7878",
            "a b:1",
        ] {
            assert!(parse_listen_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn help_lists_every_field_with_its_variable() {
        let table = help_table();
        let defaults = Table::try_from(ServerConfig::default()).unwrap();
        for key in defaults.keys() {
            assert!(table.contains(key.as_str()), "{key}");
            assert!(table.contains(&format!("CHATROOM_{}", key.to_ascii_uppercase())));
        }
    }
}
