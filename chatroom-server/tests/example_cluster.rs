//! Runs `examples/cluster.rs`, the two-node cluster built from the library,
//! against a `nats-server -js` started on a free loopback port. It fails if
//! the line one client says does not reach the client on the other node.
//!
//! `nats-server` is Debian's package (`apt-get install nats-server`); the
//! test fails, never skips, when it cannot be found.

// The example's own `main` and argument parsing are not called here.
#[allow(dead_code)]
#[path = "../../examples/cluster.rs"]
mod example;

mod common;

use common::nats::Nats;
use common::temp::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_example_carries_a_line_between_its_two_nodes() {
    let dir = TempDir::new("example-cluster");
    let nats = Nats::start(dir.path(), &[]);
    let heard = example::run(&nats.url("nats", ""))
        .await
        .unwrap_or_else(|e| panic!("the example failed: {e}"));
    assert!(heard.contains("heard ann"), "{heard}");
    assert!(heard.contains("hello from node n1"), "{heard}");
}
