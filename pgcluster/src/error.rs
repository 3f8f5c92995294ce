//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while finding, initialising, starting or
/// stopping a cluster. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The PostgreSQL server binaries (`initdb` and `postgres`) were not
    /// found anywhere; `searched` lists the places looked at.
    #[error(
        "PostgreSQL server binaries (initdb and postgres) not found; searched: {searched}. \
         Install the PostgreSQL server packages, e.g. `apt-get install -y postgresql`"
    )]
    NoBinaries {
        /// Human-readable list of the places that were searched.
        searched: String,
    },

    /// Running as root (PostgreSQL refuses to), and there is no `postgres`
    /// system user to run the server as instead.
    #[error(
        "running as root, but PostgreSQL refuses to run as root and there is no `postgres` \
         user in /etc/passwd to run it as; create one (e.g. `useradd --system --user-group \
         --home-dir /var/lib/postgresql postgres`) or install the PostgreSQL server packages \
         (`apt-get install -y postgresql`), which create it"
    )]
    NoPostgresUser,

    /// Running as root, and this ancestor of the data directory cannot be
    /// traversed by the `postgres` user the server runs as.
    #[error(
        "directory {} is not traversable by the `postgres` user the server runs as; \
         allow it with `chmod o+x {}` or put the data directory somewhere else",
        .0.display(),
        .0.display()
    )]
    NotTraversable(PathBuf),

    /// An I/O operation failed; `context` says which one.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, including the path involved.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// `initdb` exited unsuccessfully; `output` holds its stdout and stderr.
    #[error("initdb failed:\n{output}")]
    InitdbFailed {
        /// What initdb printed, plus its exit status.
        output: String,
    },

    /// The server could not be started: it exited during startup (the tail
    /// of its log says why), or another server already uses the data
    /// directory.
    #[error("PostgreSQL failed to start:\n{log_tail}")]
    StartFailed {
        /// The reason, followed by the last lines of the server log.
        log_tail: String,
    },

    /// The server did not become ready within 60 s of starting, or did not
    /// shut down within 30 s of being asked to (it was then killed).
    #[error("timed out waiting for PostgreSQL:\n{log_tail}")]
    Timeout {
        /// What was being waited for, followed by the last lines of the
        /// server log.
        log_tail: String,
    },
}

impl ClusterError {
    /// Builds a `map_err` adapter that wraps an [`io::Error`] with context.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
        let context = context.into();
        move |source| ClusterError::Io { context, source }
    }
}
