//! Cluster mode for tests: chat nodes (the real binary) on a `nats-server`
//! with JetStream, each node's history under a directory of the test's.

use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::json_client::JsonClient;
use super::nats::Nats;
use super::server::{NotListening, Server, ServerBuilder};
use super::temp::TempDir;

/// How long a node may take to listen, and a client's read to answer.
pub(crate) const DEADLINE: Duration = Duration::from_secs(15);

/// A chat node on NATS at `url`, named `name`, with its data in `dir` and
/// settings that keep tests about the cluster, not about limits.
pub(crate) fn node(url: &str, name: &str, dir: &Path) -> ServerBuilder {
    Server::builder()
        .listen("127.0.0.1:0")
        .args(["--cluster", url, "--node-name", name])
        .data_dir(dir)
        .env("CHATROOM_RATE_PER_SEC", "100000")
        .env("CHATROOM_RATE_BURST", "100000")
        // Refusals during a NATS outage count as errors; keep the clients.
        .env("CHATROOM_MAX_ERRORS", "100000")
        // A killed node's nicks come free quickly.
        .env("CHATROOM_NICK_LEASE_SECS", "3")
        .wait(DEADLINE)
        .label(name)
}

/// Starts `node`, trying again twice: a loaded machine (every test file
/// runs at once in CI) can make a first connection to a fresh nats-server
/// time out.
pub(crate) fn start_node(node: &ServerBuilder, name: &str) -> Server {
    for _ in 0..2 {
        match node.clone().try_start() {
            Ok(server) => return server,
            Err(NotListening::Exited { .. } | NotListening::Silent { .. }) => {
                eprintln!("node {name} did not start; trying again");
                thread::sleep(Duration::from_millis(500));
            }
        }
    }
    node.clone()
        .try_start()
        .unwrap_or_else(|e| panic!("node {name} did not start: {e:?}"))
}

/// A NATS server with JetStream and three chat nodes on it.
pub(crate) struct Cluster {
    nodes: Vec<Server>,
    nats: Option<Nats>,
    port: u16,
    env: Vec<(String, String)>,
    dir: TempDir,
}

impl Cluster {
    /// Three nodes with the default test settings.
    pub(crate) fn start(name: &str) -> Self {
        Self::start_with(name, &[])
    }

    /// Three nodes with `env` added to each.
    pub(crate) fn start_with(name: &str, env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new(&format!("cluster-{name}"));
        let nats = Nats::start(&dir.join("nats"), &[]);
        let mut cluster = Self {
            nodes: Vec::new(),
            port: nats.port,
            nats: Some(nats),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            dir,
        };
        for n in 1..=3 {
            cluster.add_node(&format!("n{n}"));
        }
        cluster
    }

    /// Starts one more chat node on the same NATS; returns its index.
    pub(crate) fn add_node(&mut self, name: &str) -> usize {
        let url = format!("nats://127.0.0.1:{}", self.port);
        let mut builder = node(&url, name, &self.dir.join(name));
        for (key, value) in &self.env {
            builder = builder.env(key, value);
        }
        self.nodes.push(start_node(&builder, name));
        self.nodes.len() - 1
    }

    /// Where node `node` listens.
    pub(crate) fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr()
    }

    /// A client of node `node` that said hello as `nick`.
    pub(crate) fn hello(&self, node: usize, nick: &str) -> JsonClient {
        JsonClient::hello(self.addr(node), nick, DEADLINE).0
    }

    /// The chat node `node` itself.
    pub(crate) fn node(&mut self, node: usize) -> &mut Server {
        &mut self.nodes[node]
    }

    /// Kills NATS (SIGKILL).
    pub(crate) fn stop_nats(&mut self) {
        self.nats = None;
    }

    /// Starts NATS again on the same port with the same store.
    pub(crate) fn restart_nats(&mut self) {
        let nats = Nats::start_on(self.port, &self.dir.join("nats"), &[]);
        self.nats = Some(nats.expect("nats-server did not start again on its port"));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The nodes go before NATS, and both before their directory.
        self.nodes.clear();
        self.nats = None;
    }
}
