//! How a node proves who it is to NATS, and over what: the credentials and
//! TLS of a `NatsConfig`, turned into `async_nats::ConnectOptions`.
//!
//! Credentials written into a server URL (`nats://user:pass@host:4222`, or
//! `nats://token@host:4222`) are taken out of it and sent as if they had
//! been configured: async-nats parses them but never sends them, and it
//! logs the URLs it dials as they were given.

use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;

use crate::broker::{BrokerError, Outage, Secret};

/// What a node shows NATS to be let in: at most one of the ways
/// nats-server authenticates clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsAuth {
    /// No credentials (or those written into the server URLs).
    #[default]
    None,
    /// A user and password, as in nats-server's `authorization { users }`.
    UserPassword {
        /// The user name.
        user: String,
        /// Its password.
        password: Secret,
    },
    /// A token, as in nats-server's `authorization { token }`.
    Token(Secret),
    /// A `.creds` file: a user JWT and the NKey seed that signs for it, as
    /// nats-server's operator mode hands out. Read when connecting.
    CredsFile(PathBuf),
}

/// TLS towards NATS. A server that offers TLS gets it in any case; these
/// say whose certificates to trust, which to show, and whether plain TCP
/// is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// PEM file of the CA certificates NATS's certificate must chain to,
    /// instead of the system's roots. Implies `required`.
    pub ca: Option<PathBuf>,
    /// A certificate to show NATS, for servers that verify clients (mutual
    /// TLS). Implies `required`.
    pub client_cert: Option<ClientCert>,
    /// Refuse a server that does not speak TLS. `tls://` URLs require TLS
    /// too.
    pub required: bool,
}

/// A client certificate and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// `url` as it may be shown: without the credentials it may hold.
pub fn redact_url(url: &str) -> String {
    split_url(url).0
}

/// Adds the credentials and TLS of a node's settings to `options`: those
/// in `auth` or else those written into the `servers` URLs, and `tls`.
/// Returns them with the server URLs to dial, which no longer hold
/// credentials.
///
/// # Errors
/// [`BrokerError::Unavailable`] naming the file that cannot be read or
/// used, or saying which credentials conflict.
pub(super) fn secure(
    options: ConnectOptions,
    servers: &[String],
    auth: &NatsAuth,
    tls: &NatsTls,
) -> Result<(ConnectOptions, Vec<String>), BrokerError> {
    let (servers, in_urls) = split_urls(servers)?;
    let auth = match (in_urls, auth) {
        (None, auth) => auth.clone(),
        (Some(in_urls), NatsAuth::None) => in_urls,
        (Some(_), _) => {
            return Err(Outage::CredentialsTwice.into());
        }
    };
    let options = with_auth(options, &auth)?;
    let options = with_tls(options, tls)?;
    Ok((options, servers))
}

fn with_auth(options: ConnectOptions, auth: &NatsAuth) -> Result<ConnectOptions, BrokerError> {
    Ok(match auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        NatsAuth::Token(token) => options.token(token.expose().to_owned()),
        NatsAuth::CredsFile(path) => {
            // Read here, not by async-nats, so that the error names the
            // setting's file. A small file, read once at startup.
            let creds = std::fs::read_to_string(path)
                .map_err(|e| unreadable("credentials file", path, e))?;
            // The parser's reasons never quote the file's contents.
            options
                .credentials(&creds)
                .map_err(|source| Outage::NotCreds {
                    path: path.clone(),
                    source,
                })?
        }
    })
}

fn with_tls(mut options: ConnectOptions, tls: &NatsTls) -> Result<ConnectOptions, BrokerError> {
    // async-nats reads these files only when it connects, and then says
    // which went wrong only vaguely: each is opened here first.
    if let Some(ca) = &tls.ca {
        readable(ca, "TLS CA file")?;
        options = options.add_root_certificates(ca.clone());
    }
    if let Some(ClientCert { cert, key }) = &tls.client_cert {
        readable(cert, "TLS client certificate")?;
        readable(key, "TLS client key")?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    // A private CA or a client certificate means TLS is expected: falling
    // back to plain TCP would send the credentials in the clear.
    let required = tls.required || tls.ca.is_some() || tls.client_cert.is_some();
    Ok(options.require_tls(required))
}

fn readable(path: &Path, what: &'static str) -> Result<(), Outage> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| unreadable(what, path, e))
}

fn unreadable(what: &'static str, path: &Path, source: std::io::Error) -> Outage {
    Outage::Unreadable {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The URLs without credentials, and the credentials they held: the same
/// in every URL that holds any, since one client sends one set.
fn split_urls(servers: &[String]) -> Result<(Vec<String>, Option<NatsAuth>), BrokerError> {
    let mut bare = Vec::with_capacity(servers.len());
    let mut found: Option<NatsAuth> = None;
    for url in servers {
        let (url, auth) = split_url(url);
        bare.push(url);
        match (auth, &found) {
            (None, _) => {}
            (Some(auth), None) => found = Some(auth),
            (Some(auth), Some(first)) if auth == *first => {}
            (Some(_), Some(_)) => {
                return Err(Outage::CredentialsDiffer.into());
            }
        }
    }
    Ok((bare, found))
}

/// `url` without its user information, and that information read as a
/// user and password (`user:pass@`) or a token (`token@`).
fn split_url(url: &str) -> (String, Option<NatsAuth>) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    // The last `@`: a password may hold one that was not percent-encoded.
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let bare = format!("{}{}", &url[..start], &rest[userinfo.len() + 1..]);
    let auth = match userinfo.split_once(':') {
        Some((user, password)) => NatsAuth::UserPassword {
            user: percent_decode(user),
            password: Secret::new(percent_decode(password)),
        },
        None if userinfo.is_empty() => return (bare, None),
        None => NatsAuth::Token(Secret::new(percent_decode(userinfo))),
    };
    (bare, Some(auth))
}

/// Decodes `%XX` escapes; anything else, malformed escapes included, is
/// kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a node's settings that `secure` reads.
    struct Settings {
        servers: Vec<String>,
        auth: NatsAuth,
        tls: NatsTls,
    }

    fn config(servers: &[&str]) -> Settings {
        Settings {
            servers: servers.iter().map(|s| (*s).to_owned()).collect(),
            auth: NatsAuth::None,
            tls: NatsTls::default(),
        }
    }

    fn secured(c: &Settings) -> Result<(ConnectOptions, Vec<String>), BrokerError> {
        secure(ConnectOptions::new(), &c.servers, &c.auth, &c.tls)
    }

    fn error(result: Result<(ConnectOptions, Vec<String>), BrokerError>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "chatroom-nats-connect-{}-{name}",
            std::process::id()
        ))
    }

    #[test]
    fn credentials_are_taken_out_of_urls() {
        let user = |u: &str, p: &str| {
            Some(NatsAuth::UserPassword {
                user: u.to_owned(),
                password: Secret::new(p),
            })
        };
        let cases = [
            (
                "nats://a:b@127.0.0.1:4222",
                "nats://127.0.0.1:4222",
                user("a", "b"),
            ),
            ("tls://a:p%40ss@h:1/x", "tls://h:1/x", user("a", "p@ss")),
            ("a:p@ss@h:1", "h:1", user("a", "p@ss")),
            (
                "nats://t0ken@[::1]:4222",
                "nats://[::1]:4222",
                Some(NatsAuth::Token(Secret::new("t0ken"))),
            ),
            ("nats://h:4222", "nats://h:4222", None),
            ("nats://h:4222/a@b", "nats://h:4222/a@b", None),
            ("nats://@h:4222", "nats://h:4222", None),
            ("nats://u:%zz%4@h", "nats://h", user("u", "%zz%4")),
        ];
        for (url, bare, auth) in cases {
            assert_eq!(split_url(url), (bare.to_owned(), auth), "{url}");
        }
    }

    #[test]
    fn credentials_are_given_once() {
        let mut c = config(&["nats://u:p@h:1"]);
        c.auth = NatsAuth::Token(Secret::new("t"));
        assert!(error(secured(&c)).contains("once"));
        let c = config(&["nats://u:p@h:1", "nats://u:q@h:2"]);
        assert!(error(secured(&c)).contains("different credentials"));
        let c = config(&["nats://u:p@h:1", "nats://h:2", "nats://u:p@h:3"]);
        let (_, servers) = secured(&c).unwrap();
        assert_eq!(servers, ["nats://h:1", "nats://h:2", "nats://h:3"]);
    }

    #[test]
    fn unreadable_files_are_named() {
        let missing = temp_path("missing.pem");
        let mut c = config(&["nats://h:1"]);
        c.tls.ca = Some(missing.clone());
        let shown = error(secured(&c));
        assert!(
            shown.contains("TLS CA file") && shown.contains("missing.pem"),
            "{shown}"
        );
        let mut c = config(&["nats://h:1"]);
        c.tls.client_cert = Some(ClientCert {
            cert: missing.clone(),
            key: missing.clone(),
        });
        assert!(error(secured(&c)).contains("client certificate"));
        let mut c = config(&["nats://h:1"]);
        c.auth = NatsAuth::CredsFile(missing);
        let shown = error(secured(&c));
        assert!(
            shown.contains("credentials file") && shown.contains("missing.pem"),
            "{shown}"
        );
    }

    #[test]
    fn a_creds_file_is_checked_without_quoting_it() {
        let path = temp_path("bad.creds");
        std::fs::write(&path, "not a creds file: seed-like-secret").unwrap();
        let mut c = config(&["nats://h:1"]);
        c.auth = NatsAuth::CredsFile(path.clone());
        let shown = error(secured(&c));
        assert!(shown.contains("is not a .creds file"), "{shown}");
        assert!(!shown.contains("seed-like-secret"), "{shown}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_well_formed_creds_file_is_accepted() {
        // The JWT is only forwarded, so any text will do here; the seed
        // must be a real user NKey seed (the one async-nats documents).
        let creds = "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.sig\n------END NATS USER JWT------\n\n\
            -----BEGIN USER NKEY SEED-----\nSUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM\n------END USER NKEY SEED------\n";
        let path = temp_path("good.creds");
        std::fs::write(&path, creds).unwrap();
        let mut c = config(&["nats://h:1"]);
        c.auth = NatsAuth::CredsFile(path.clone());
        let result = secured(&c);
        std::fs::remove_file(&path).unwrap();
        assert!(result.is_ok(), "{:?}", result.err());
    }
}
