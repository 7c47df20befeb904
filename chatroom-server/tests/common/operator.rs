//! nats-server's operator mode, made without `nsc`: an operator, a system
//! account, an account with JetStream and a user, each a JWT signed with
//! its issuer's NKey, and the user's `.creds` file.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// The files of one operator-mode setup, in a directory the caller owns.
pub(crate) struct Operator {
    /// The nats-server config file (pass it with `-c`).
    pub(crate) config: PathBuf,
    /// The user's `.creds` file.
    pub(crate) creds: PathBuf,
}

impl Operator {
    /// Writes `nats.conf`, `operator.jwt` and `user.creds` into `dir`.
    pub(crate) fn write(dir: &Path) -> Self {
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        let operator_jwt = sign(&operator, &operator, "op", json!({"type": "operator"}));
        let system_jwt = sign(&operator, &system, "SYS", json!({"type": "account"}));
        let unlimited = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        });
        let account_jwt = sign(
            &operator,
            &account,
            "chat",
            json!({"type": "account", "limits": unlimited}),
        );
        let user_jwt = sign(
            &account,
            &user,
            "node",
            json!({"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
        );
        let operator_file = dir.join("operator.jwt");
        std::fs::write(&operator_file, &operator_jwt).expect("write the operator JWT");
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "operator: \"{}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
                 resolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {acc}: \"{account_jwt}\"\n}}\n",
                operator_file.display(),
                sys = system.public_key(),
                acc = account.public_key(),
            ),
        )
        .expect("write the nats-server config");
        let creds = dir.join("user.creds");
        let seed = user.seed().expect("a user seed");
        std::fs::write(
            &creds,
            format!(
                "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ),
        )
        .expect("write the creds file");
        Self { config, creds }
    }
}

/// A NATS JWT (version 2) about `subject`, signed by `issuer`.
fn sign(issuer: &KeyPair, subject: &KeyPair, name: &str, mut nats: Value) -> String {
    nats["version"] = json!(2);
    let subject_key = subject.public_key();
    let claims = json!({
        "jti": format!("{name}-{subject_key}"),
        "iat": 1_700_000_000,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject_key,
        "nats": nats,
    });
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let signature = issuer.sign(signed.as_bytes()).expect("sign the JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}
