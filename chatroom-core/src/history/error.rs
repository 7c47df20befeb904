//! History errors.

/// Why the history store could not serve a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The store's database failed.
    #[cfg(feature = "sqlite")]
    #[error("history database failed")]
    Database(#[from] rusqlite::Error),
    /// The store's files could not be created or opened.
    #[error("cannot open the history store at {path}")]
    Open {
        /// The path that was tried.
        path: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The store's writer stopped; nothing more can be stored.
    #[error("history writer has stopped")]
    WriterGone,
    /// A store kept by another service (a cluster's log) cannot be reached.
    #[error("history is unavailable: {0}")]
    Unavailable(String),
}
