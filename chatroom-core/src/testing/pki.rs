//! A private CA and a certificate it signed, as PEM files, for tests of
//! TLS listeners and connectors.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A private CA and a certificate it signed for `localhost` and
/// `127.0.0.1`, written as PEM files (`ca.pem`, `cert.pem`, `key.pem`, and
/// an unrelated `other-key.pem`) in a fresh directory removed on drop.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Makes the files; `name` keeps directories of concurrent tests apart.
    ///
    /// # Panics
    /// When the files cannot be made.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("chatroom-pki-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(names)
            .expect("certificate parameters")
            .signed_by(&key, &issuer)
            .expect("a certificate");
        let other = KeyPair::generate().expect("another key");
        for (file, pem) in [
            ("ca.pem", ca.pem()),
            ("cert.pem", cert.pem()),
            ("key.pem", key.serialize_pem()),
            ("other-key.pem", other.serialize_pem()),
        ] {
            std::fs::write(dir.join(file), pem).expect("a PEM file");
        }
        Self { dir }
    }

    /// The path of one of the files.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
