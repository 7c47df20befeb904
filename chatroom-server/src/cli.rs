//! The command line: flags, the seed tutorial's `IP PORT` form, and the help
//! text that documents settings, logging, signals and exit codes.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};
use toml::Value;

use crate::settings::{self, CommandLine};

const LONG_ABOUT: &str = "\
Runs a chatroom server. Point `nc HOST PORT` (plain text) or chatroom-client
(the native JSON protocol) at it, and chat.

With no arguments it listens on 127.0.0.1:7878. `chatroom-server IP PORT`
(the seed tutorial's form) or one or more --listen flags pick other addresses.";

const SHORT_FOOTER: &str =
    "Run with --help for the list of settings, their environment variables, and exit codes.";

/// Parsed command-line arguments.
#[derive(Debug, Parser)]
#[command(name = "chatroom-server", version, about, long_about = LONG_ABOUT)]
pub(crate) struct Cli {
    /// IP address to listen on, as in the seed tutorial's `server IP PORT`.
    #[arg(value_name = "IP", requires = "port", conflicts_with = "listen")]
    pub(crate) ip: Option<IpAddr>,

    /// Port to listen on, together with IP.
    #[arg(value_name = "PORT")]
    pub(crate) port: Option<u16>,

    /// Address to listen on, as HOST:PORT (`[::1]:7878` for IPv6). Repeat
    /// for several addresses served as one server. Port 0 picks a free port;
    /// the log line `listening addr=...` shows which [default: 127.0.0.1:7878]
    #[arg(short, long = "listen", value_name = "ADDR", value_parser = settings::parse_listen_addr)]
    pub(crate) listen: Vec<String>,

    /// TOML file with settings (any of those listed below, plus `listen`).
    #[arg(short, long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Sets one setting, overriding the file and the environment. Repeatable.
    #[arg(short, long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) set: Vec<(String, String)>,

    /// PEM certificate chain: serve TLS on every listen address (with
    /// --tls-key). Same as `--set tls_cert=FILE`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<String>,

    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<String>,

    /// NATS server of a cluster of chat nodes sharing one room space, as
    /// nats://HOST:PORT. Repeat, or separate with commas, to name several
    /// seeds. Same as `--set cluster=URL,URL`.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub(crate) cluster: Vec<String>,

    /// This node's name in a cluster. Same as `--set node_name=NAME`.
    #[arg(long, value_name = "NAME")]
    pub(crate) node_name: Option<String>,

    /// Prints the effective settings as TOML on stdout and exits: 0 when
    /// they are valid, 2 when not. Nothing is bound.
    #[arg(long)]
    pub(crate) print_config: bool,
}

impl Cli {
    /// Parses `args` (the program name first), with the generated help.
    ///
    /// # Errors
    /// clap's error for usage mistakes, and for `--help` and `--version`,
    /// which the caller prints and exits with.
    pub(crate) fn parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Self::command()
            .after_help(SHORT_FOOTER)
            .after_long_help(long_footer())
            .try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }

    /// The addresses named on the command line, if any: the seed's `IP PORT`
    /// or the `--listen` flags.
    pub(crate) fn listen_addrs(&self) -> Vec<String> {
        match (self.ip, self.port) {
            (Some(ip), Some(port)) => vec![std::net::SocketAddr::new(ip, port).to_string()],
            _ => self.listen.clone(),
        }
    }

    /// What the settings take from the command line: the file, the
    /// `--set` pairs, and each flag that stands for one setting under that
    /// setting's key.
    pub(crate) fn command_line(&self) -> CommandLine {
        let text = |s: &String| Value::String(s.clone());
        let list =
            |items: Vec<String>| Value::Array(items.into_iter().map(Value::String).collect());
        let mut flags = Vec::new();
        flags.extend(self.tls_cert.as_ref().map(|v| ("tls_cert", text(v))));
        flags.extend(self.tls_key.as_ref().map(|v| ("tls_key", text(v))));
        if !self.cluster.is_empty() {
            flags.push(("cluster", list(self.cluster.clone())));
        }
        flags.extend(self.node_name.as_ref().map(|v| ("node_name", text(v))));
        let listen = self.listen_addrs();
        if !listen.is_empty() {
            flags.push((settings::LISTEN, list(listen)));
        }
        CommandLine {
            config: self.config.clone(),
            set: self.set.clone(),
            flags,
        }
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{s}` is not KEY=VALUE, like max_connections=500")),
    }
}

/// Everything `--help` says after the flags.
fn long_footer() -> String {
    format!(
        "\
SETTINGS:
Every setting can come from a TOML file (--config), an environment variable,
or --set KEY=VALUE. Later sources win: defaults < file < environment < command
line (--listen and IP PORT are command-line values for `listen`). Unknown keys
and unknown {prefix}* variables are errors. docs/operations.md explains each one.

{table}
LOGGING:
Logs go to stderr, one line per event (listening, connected, disconnected,
shutdown). RUST_LOG filters them; the default is `info`. Examples:
RUST_LOG=debug, RUST_LOG=chatroom_core=debug,warn. Message bodies are never logged.
log_format = \"json\" writes one JSON object per line instead.

SIGNALS:
SIGINT (Ctrl-C) or SIGTERM: stop accepting, send every client `bye`, let their
queues drain for up to shutdown_timeout_secs, then exit 0.
SIGHUP: read the settings again; rate_per_sec, rate_burst, max_errors and
error_refill_secs apply to live connections, the TLS certificate and key are
read again for new connections, other changes wait for a restart.

EXIT CODES:
  0  clean shutdown after a signal (also --help, --version, --print-config)
  1  runtime failure: the history store could not be opened, a listener failed
     while serving, or the runtime or the signal handlers could not be set up
  2  usage error, or bad configuration: unreadable or invalid file, unknown
     key or {prefix}* variable, value of the wrong type or out of range,
     malformed listen address
  3  cannot listen: address in use, not local to this machine, not permitted,
     or a host name that does not resolve",
        prefix = settings::ENV_PREFIX,
        table = settings::help_table(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seed_form_names_one_address() {
        let cli = Cli::parse_from(["chatroom-server", "0.0.0.0", "7878"]).unwrap();
        assert_eq!(cli.listen_addrs(), ["0.0.0.0:7878"]);
        let cli = Cli::parse_from(["chatroom-server", "::1", "7000"]).unwrap();
        assert_eq!(cli.listen_addrs(), ["[::1]:7000"]);
    }

    #[test]
    fn listen_flags_repeat() {
        let cli = Cli::parse_from([
            "chatroom-server",
            "--listen",
            "127.0.0.1:7000",
            "-l",
            "[::1]:7000",
        ])
        .unwrap();
        assert_eq!(cli.listen_addrs(), ["127.0.0.1:7000", "[::1]:7000"]);
        let none = Cli::parse_from(["chatroom-server"]).unwrap();
        assert!(none.listen_addrs().is_empty());
    }

    #[test]
    fn flags_become_the_settings_they_stand_for() {
        let cli = Cli::parse_from([
            "chatroom-server",
            "--set",
            "web=false",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--cluster",
            "nats://a:1,nats://b:2",
            "--node-name",
            "n1",
            "127.0.0.1",
            "7000",
        ])
        .unwrap();
        let line = cli.command_line();
        assert_eq!(line.set, [("web".to_owned(), "false".to_owned())]);
        let flags: Vec<String> = line
            .flags
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        assert_eq!(
            flags,
            [
                "tls_cert=\"c.pem\"",
                "tls_key=\"k.pem\"",
                "cluster=[\"nats://a:1\", \"nats://b:2\"]",
                "node_name=\"n1\"",
                "listen=[\"127.0.0.1:7000\"]",
            ]
        );
    }

    #[test]
    fn usage_mistakes_are_clap_errors() {
        for args in [
            &["chatroom-server", "127.0.0.1"][..],
            &["chatroom-server", "127.0.0.1", "99999"],
            &["chatroom-server", "not-an-ip", "7878"],
            &[
                "chatroom-server",
                "127.0.0.1",
                "1",
                "--listen",
                "127.0.0.1:2",
            ],
            &["chatroom-server", "--listen", "7878"],
            &["chatroom-server", "--set", "max_connections"],
        ] {
            let e = Cli::parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }
}
