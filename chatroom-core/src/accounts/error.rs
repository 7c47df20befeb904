//! Account store errors.

/// Why an account store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The store's database failed.
    #[cfg(feature = "sqlite")]
    #[error("account database failed")]
    Database(#[from] rusqlite::Error),
    /// The store's directory could not be created.
    #[error("cannot open the account store at {path}")]
    Open {
        /// The path that was tried.
        path: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A stored value is not what this version wrote.
    #[error("a stored account or rule is damaged: {0}")]
    Damaged(String),
    /// An account with this name exists already.
    #[error("the account exists already")]
    Exists,
    /// The shared store could not be reached or refused the change.
    #[error("the account store is unavailable: {0}")]
    Unavailable(String),
}
