//! Password hashing: argon2id with parameters the operator sets, the
//! encoded (PHC) string as the only thing stored, and a comparison that
//! takes the same time however much of a guess was right.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest password accepted, in bytes.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted, in bytes: argon2 takes any length, but a
/// line-sized one would only make each guess cost the server more.
pub const MAX_PASSWORD_LEN: usize = 256;

/// argon2id's costs. The default is the commonly recommended minimum for
/// interactive logins (19 MiB, 2 passes, 1 lane): about 50 ms of one core
/// on the small servers this one is meant for, so a 2-core machine that
/// hashes at most two at a time checks some 40 logins a second and a
/// stolen hash costs a guesser the same per guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory per hash, in KiB (at least 8 × `parallelism`).
    pub memory_kib: u32,
    /// Passes over the memory (at least 1).
    pub iterations: u32,
    /// Lanes (at least 1).
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password is shorter than [`MIN_PASSWORD_LEN`] or longer than
    /// [`MAX_PASSWORD_LEN`] bytes, or holds a control character.
    #[error(
        "a password is {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} bytes without control characters"
    )]
    Unacceptable,
    /// The parameters are out of argon2's range.
    #[error("argon2 parameters out of range: {0}")]
    Params(String),
    /// A stored hash is not a PHC string this crate can read.
    #[error("a stored password hash is damaged")]
    Damaged,
}

impl HashParams {
    /// Checks the parameters against argon2's rules.
    ///
    /// # Errors
    /// [`PasswordError::Params`] naming what is wrong.
    pub fn check(&self) -> Result<(), PasswordError> {
        self.hasher().map(drop)
    }

    fn hasher(&self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Checks that `password` may be used: its length and characters.
///
/// # Errors
/// [`PasswordError::Unacceptable`].
pub fn acceptable(password: &str) -> Result<(), PasswordError> {
    let len = password.len();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len)
        || password.chars().any(char::is_control)
    {
        return Err(PasswordError::Unacceptable);
    }
    Ok(())
}

/// Hashes `password` with a fresh random salt. Slow on purpose: call it
/// from a blocking-friendly thread.
///
/// # Errors
/// [`PasswordError::Unacceptable`] for a password [`acceptable`] refuses,
/// [`PasswordError::Params`] for parameters out of range.
pub fn hash(password: &str, params: HashParams) -> Result<String, PasswordError> {
    acceptable(password)?;
    let salt = SaltString::generate(&mut OsRng);
    params
        .hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Params(e.to_string()))
}

/// Whether `password` is the one `encoded` was made from, with the costs
/// recorded in `encoded` (so raising the defaults keeps old hashes valid).
/// The hash outputs are compared in constant time. Slow on purpose.
///
/// # Errors
/// [`PasswordError::Damaged`] when `encoded` cannot be read.
pub fn verify(password: &str, encoded: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(encoded).map_err(|_| PasswordError::Damaged)?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn a_hash_verifies_its_password_only() {
        let encoded = hash("correct horse", SMALL).unwrap();
        assert!(
            encoded.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{encoded}"
        );
        assert!(verify("correct horse", &encoded).unwrap());
        assert!(!verify("correct horsf", &encoded).unwrap());
        // A fresh salt each time.
        assert_ne!(encoded, hash("correct horse", SMALL).unwrap());
    }

    #[test]
    fn bad_passwords_and_hashes_are_refused() {
        assert!(matches!(
            hash("short", SMALL),
            Err(PasswordError::Unacceptable)
        ));
        assert!(matches!(
            hash("tab\tis\nnot ok", SMALL),
            Err(PasswordError::Unacceptable)
        ));
        assert!(matches!(
            verify("whatever1", "not a hash"),
            Err(PasswordError::Damaged)
        ));
        assert!(HashParams::default().check().is_ok());
        assert!(
            HashParams {
                memory_kib: 1,
                ..SMALL
            }
            .check()
            .is_err()
        );
    }
}
