//! The core's one error type: variants a caller can act on, each naming the
//! file, key or database it is about.

use std::io;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors returned by the replication engine.
///
/// Every variant names what it is about (a local path, a replica key or a
/// database), so an operator can act on the message alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or object that was asked for does not exist.
    #[error("{what}: not found")]
    NotFound { what: String },

    /// Bytes that do not follow the LTX or WAL format, or a replica whose
    /// files do not fit together.
    #[error("{file}: corrupt: {reason}")]
    Corrupt { file: String, reason: String },

    /// A local I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// SQLite refused an operation on the database.
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },

    /// A conditional write found the object in another state.
    #[error("{what}: precondition failed")]
    PreconditionFailed { what: String },

    /// A lease is held by someone else.
    #[error("{what}: held by another ({holder}, until {until})")]
    HeldByAnother {
        what: String,
        holder: String,
        until: String,
    },

    /// The caller asked for something that cannot be done (bad flags,
    /// output already exists, ...).
    #[error("{0}")]
    InvalidInput(String),

    /// The replica does not hold the transaction that was asked for.
    #[error("{what}: transaction not available in replica")]
    TxNotAvailable { what: String },

    /// A remote backend failed. `transient` errors may succeed if retried.
    #[error("{context}: {message}")]
    Backend {
        context: String,
        message: String,
        transient: bool,
    },

    /// The operation was cancelled (shutdown).
    #[error("cancelled")]
    Cancelled,
}

/// The messages of `e`'s causes (its `source` chain, not `e` itself),
/// outermost first: what a one-line error message appends to its own.
#[cfg_attr(not(any(feature = "s3", feature = "opendal")), allow(dead_code))]
pub(crate) fn causes(e: &dyn std::error::Error) -> Vec<String> {
    std::iter::successors(e.source(), |c| c.source())
        .map(|c| c.to_string())
        .collect()
}

impl Error {
    /// Builds a [`Error::Corrupt`] for `file`.
    pub fn corrupt(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            file: file.into(),
            reason: reason.into(),
        }
    }

    /// Builds a [`Error::Io`] with a context such as `"open /data/x.db"`.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            return Error::NotFound {
                what: context.into(),
            };
        }
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds a [`Error::Sqlite`] with a context.
    pub fn sqlite(context: impl Into<String>, source: rusqlite::Error) -> Self {
        Error::Sqlite {
            context: context.into(),
            source,
        }
    }

    /// True when the error means "the thing does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// True for a corrupt or missing file under `dir` (a database's meta
    /// directory): local state that `auto-recover` may throw away, as
    /// opposed to a fault of the database, the replica or the system.
    pub fn is_local_state_fault(&self, dir: &std::path::Path) -> bool {
        let dir = dir.display().to_string();
        match self {
            Error::Corrupt { file, .. } => file.starts_with(&dir),
            Error::NotFound { what } => what.contains(&dir),
            Error::Io { context, source } => {
                source.kind() == io::ErrorKind::NotFound && context.contains(&dir)
            }
            _ => false,
        }
    }

    /// True when retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend { transient, .. } => *transient,
            Error::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
}

/// Adds a context to `io::Result`s: `file.read(..).ctx(|| format!("read {path}"))`.
pub(crate) trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

/// Adds a context to rusqlite results.
pub(crate) trait SqlContext<T> {
    fn sql_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn sql_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::sqlite(f(), e))
    }
}
