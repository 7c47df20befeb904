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
    /// A store kept by another service (a cluster's log) cannot be read.
    #[error("history is unavailable")]
    Unavailable(#[from] StoreOutage),
}

/// What failed when a store kept by another service could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreOutage {
    /// The service did not answer in time.
    #[error("the history service did not answer in time")]
    TimedOut,
    /// The room's log cannot be opened.
    #[error("cannot open the room's log")]
    Open(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A message of the room's log cannot be read.
    #[error("cannot read the room's log")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn an_outage_is_the_source_of_unavailable() {
        let e = HistoryError::from(StoreOutage::TimedOut);
        assert_eq!(e.to_string(), "history is unavailable");
        let cause = e.source().map(ToString::to_string);
        assert_eq!(
            cause.as_deref(),
            Some("the history service did not answer in time")
        );
        assert!(matches!(
            e,
            HistoryError::Unavailable(StoreOutage::TimedOut)
        ));
    }
}
