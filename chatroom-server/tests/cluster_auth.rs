//! A chat node's credentials and TLS towards NATS, against a real
//! `nats-server` that asks for them: user and password, token, a `.creds`
//! file in operator mode, TLS with a private CA, mutual TLS; and the
//! refusals, which must be readable and must not show the secret.
//!
//! Every node logs at debug level here, so that a secret leaking into any
//! log line (the client library's included) fails the test.

mod common;

use chatroom_core::testing::TestPki;
use common::cluster_auth::{assert_never_logged, assert_nodes_chat, auth_node};
use common::nats::Nats;
use common::operator::Operator;
use common::temp::TempDir;

#[test]
fn nodes_log_in_with_a_user_and_password() {
    let dir = TempDir::new("auth-user");
    let nats = Nats::start(
        &dir.join("nats"),
        &["--user", "chat", "--pass", "pw-Secret-1"],
    );
    let password_file = dir.join("password");
    std::fs::write(&password_file, "pw-Secret-1\n").unwrap();
    let a = auth_node(
        &dir,
        &nats.url("nats", ""),
        &[
            ("cluster_user", "chat"),
            ("cluster_password_file", password_file.to_str().unwrap()),
        ],
    )
    .start();
    // The same credentials written into the URL instead.
    let b = auth_node(&dir, &nats.url("nats", "chat:pw-Secret-1"), &[]).start();
    assert_nodes_chat(&a, &b);
    assert_never_logged(&a, "pw-Secret-1");
    assert_never_logged(&b, "pw-Secret-1");
}

#[test]
fn a_wrong_password_stops_the_node_without_showing_it() {
    let dir = TempDir::new("auth-wrong");
    let nats = Nats::start(
        &dir.join("nats"),
        &["--user", "chat", "--pass", "pw-Right-2"],
    );
    let node = auth_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_user", "chat"), ("cluster_password", "pw-Wrong-2")],
    );
    let (code, stderr) = node.expect_exit();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot join the cluster"), "{stderr}");
    assert!(stderr.contains("authorization"), "{stderr}");
    assert!(!stderr.contains("pw-Wrong-2"), "{stderr}");
    // No credentials at all: refused the same way.
    let (code, stderr) = auth_node(&dir, &nats.url("nats", ""), &[]).expect_exit();
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn nodes_log_in_with_a_token() {
    let dir = TempDir::new("auth-token");
    let nats = Nats::start(&dir.join("nats"), &["--auth", "tok-Secret-3"]);
    let a = auth_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_token", "tok-Secret-3")],
    )
    .start();
    let b = auth_node(&dir, &nats.url("nats", "tok-Secret-3"), &[]).start();
    assert_nodes_chat(&a, &b);
    assert_never_logged(&a, "tok-Secret-3");
    assert_never_logged(&b, "tok-Secret-3");
    let (code, stderr) = auth_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_token", "tok-Wrong-3")],
    )
    .expect_exit();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("tok-Wrong-3"), "{stderr}");
}

#[test]
fn nodes_trust_a_private_ca() {
    let dir = TempDir::new("auth-tls");
    let pki = TestPki::new("nats-tls");
    let (cert, key, ca) = (
        pki.path("cert.pem"),
        pki.path("key.pem"),
        pki.path("ca.pem"),
    );
    let nats = Nats::start(
        &dir.join("nats"),
        &[
            "--tls",
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ],
    );
    let ca = ca.to_str().unwrap();
    let a = auth_node(&dir, &nats.url("tls", ""), &[("cluster_tls_ca", ca)]).start();
    let b = auth_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_tls_ca", ca), ("cluster_tls_required", "true")],
    )
    .start();
    assert_nodes_chat(&a, &b);
    // The system's roots do not know the private CA.
    let (code, stderr) = auth_node(&dir, &nats.url("nats", ""), &[]).expect_exit();
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn nodes_show_a_client_certificate_to_a_verifying_nats() {
    let dir = TempDir::new("auth-mtls");
    let pki = TestPki::new("nats-mtls");
    let path = |file: &str| pki.path(file).to_str().unwrap().to_owned();
    let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    let nats = Nats::start(
        &dir.join("nats"),
        &[
            "--tlsverify",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--tlscacert",
            &ca,
        ],
    );
    // The test PKI has one certificate; it serves as the client's too.
    let with_cert = [
        ("cluster_tls_ca", ca.as_str()),
        ("cluster_tls_cert", cert.as_str()),
        ("cluster_tls_key", key.as_str()),
    ];
    let a = auth_node(&dir, &nats.url("nats", ""), &with_cert).start();
    let b = auth_node(&dir, &nats.url("nats", ""), &with_cert).start();
    assert_nodes_chat(&a, &b);
    drop(a);
    let (code, stderr) = auth_node(
        &dir,
        &nats.url("nats", ""),
        &[("cluster_tls_ca", ca.as_str())],
    )
    .expect_exit();
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn a_certificate_without_its_key_is_a_configuration_error() {
    let dir = TempDir::new("auth-nokey");
    let (code, stderr) = auth_node(
        &dir,
        "nats://127.0.0.1:1",
        &[("cluster_tls_cert", "/nonexistent/cert.pem")],
    )
    .expect_exit();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cluster_tls_key"), "{stderr}");
}

#[test]
fn nodes_log_in_with_a_creds_file_in_operator_mode() {
    let dir = TempDir::new("auth-creds");
    let setup = Operator::write(dir.path());
    let nats = Nats::start(&dir.join("nats"), &["-c", setup.config.to_str().unwrap()]);
    let creds = [("cluster_creds", setup.creds.to_str().unwrap())];
    let a = auth_node(&dir, &nats.url("nats", ""), &creds).start();
    let b = auth_node(&dir, &nats.url("nats", ""), &creds).start();
    assert_nodes_chat(&a, &b);
    let seed = std::fs::read_to_string(&setup.creds).unwrap();
    let seed = seed
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a user seed");
    assert_never_logged(&a, seed);
    assert_never_logged(&b, seed);
    // Operator mode lets nobody in without a creds file.
    let (code, stderr) = auth_node(&dir, &nats.url("nats", ""), &[]).expect_exit();
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn unreadable_credential_files_are_named() {
    let dir = TempDir::new("auth-files");
    // NATS need not run: the files are read before any connection.
    let url = "nats://127.0.0.1:1";
    let missing = dir.join("missing.creds");
    let missing = missing.to_str().unwrap();
    let (code, stderr) = auth_node(&dir, url, &[("cluster_creds", missing)]).expect_exit();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("credentials file") && stderr.contains(missing),
        "{stderr}"
    );

    let bad = dir.join("bad.creds");
    std::fs::write(&bad, "SUANOTASEED-secret-4\n").unwrap();
    let (code, stderr) =
        auth_node(&dir, url, &[("cluster_creds", bad.to_str().unwrap())]).expect_exit();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is not a .creds file"), "{stderr}");
    assert!(!stderr.contains("secret-4"), "{stderr}");

    let (code, stderr) = auth_node(
        &dir,
        url,
        &[("cluster_user", "chat"), ("cluster_password_file", missing)],
    )
    .expect_exit();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cluster_password_file") && stderr.contains(missing),
        "{stderr}"
    );
}
