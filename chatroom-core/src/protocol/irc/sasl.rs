//! IRCv3 SASL's wire side: the base64 the `AUTHENTICATE` payload travels
//! in, split into chunks, and the PLAIN mechanism's three fields
//! (RFC 4616). Pure functions; the server checks the credentials.

/// Longest chunk of an `AUTHENTICATE` payload; a chunk this long means
/// another follows (IRCv3 SASL 3.1).
pub(crate) const CHUNK_LEN: usize = 400;

/// Longest decoded PLAIN payload accepted: two names and a password with
/// room to spare, and three chunks at most on the wire.
pub(crate) const MAX_PAYLOAD: usize = 900;

/// Why a PLAIN payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SaslError {
    #[error("the payload is not base64")]
    NotBase64,
    #[error("the payload is not authzid NUL authcid NUL password")]
    Malformed,
}

/// The three fields of a PLAIN payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plain {
    /// Whom to act as; empty means the same as `authcid`.
    pub(crate) authzid: String,
    /// The account name.
    pub(crate) authcid: String,
    pub(crate) password: String,
}

/// Decodes standard base64 (padding required, no line breaks).
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, SaslError> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(SaslError::NotBase64);
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (i, quad) in bytes.chunks_exact(4).enumerate() {
        let last = i + 1 == quads;
        let pad = quad.iter().rev().take_while(|&&b| b == b'=').count();
        // Padding only ends the text, and at most two of it.
        if pad > 2 || (pad > 0 && !last) {
            return Err(SaslError::NotBase64);
        }
        let mut n: u32 = 0;
        for &b in &quad[..4 - pad] {
            n = (n << 6) | u32::from(sextet(b).ok_or(SaslError::NotBase64)?);
        }
        n <<= 6 * pad as u32;
        let [_, a, b, c] = n.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..3 - pad]);
    }
    Ok(out)
}

fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Reads a decoded PLAIN payload: `authzid NUL authcid NUL password`, in
/// UTF-8.
pub(crate) fn plain(payload: &[u8]) -> Result<Plain, SaslError> {
    let text = std::str::from_utf8(payload).map_err(|_| SaslError::Malformed)?;
    let mut fields = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(Plain {
        authzid: authzid.to_owned(),
        authcid: authcid.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_vectors() {
        // RFC 4648 section 10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(decode_base64(coded).unwrap(), plain.as_bytes(), "{coded}");
        }
        for bad in ["Zg", "Zg=a", "Z===", "Zg==Zg==", "Zm9v!A==", "Zm 9"] {
            assert_eq!(decode_base64(bad), Err(SaslError::NotBase64), "{bad}");
        }
    }

    /// The encoder clients use, written the plain way, to check the
    /// decoder against.
    fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let mut n = 0u32;
            for (i, &b) in chunk.iter().enumerate() {
                n |= u32::from(b) << (16 - 8 * i);
            }
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_round_trip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            proptest::prop_assert_eq!(decode_base64(&encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn any_text_decodes_or_is_refused(text in "[A-Za-z0-9+/=!* ]{0,64}") {
            // Never a panic; whatever decodes is three bytes per four.
            if let Ok(raw) = decode_base64(&text) {
                proptest::prop_assert!(raw.len() <= text.len() / 4 * 3);
                let _ = plain(&raw);
            }
        }
    }

    #[test]
    fn plain_has_three_fields() {
        // "\0alice\0secret-pw"
        let decoded = decode_base64("AGFsaWNlAHNlY3JldC1wdw==").unwrap();
        let got = plain(&decoded).unwrap();
        assert_eq!(got.authzid, "");
        assert_eq!(got.authcid, "alice");
        assert_eq!(got.password, "secret-pw");
        assert_eq!(plain(b"alice\0pw"), Err(SaslError::Malformed));
        assert_eq!(plain(b"\0\0pw"), Err(SaslError::Malformed));
        assert_eq!(plain(b"a\0b\0c\0d"), Err(SaslError::Malformed));
        assert_eq!(plain(b"\0a\0\xff"), Err(SaslError::Malformed));
    }
}
