//! [`TestkitError`].

/// Why a test fixture could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// `redis-server` (or `redis-cli`) is not on the PATH.
    #[error(
        "`{0}` was not found on the PATH; install Redis (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`) or run `scripts/test`, which installs it"
    )]
    NotInstalled(&'static str),
    /// A process or socket could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A command to a test server failed.
    #[error("{what}: {detail}")]
    Command {
        /// The command and the node.
        what: String,
        /// What the server or the connection said.
        detail: String,
    },
    /// A server did not become ready in time.
    #[error("{0} (see its log: {1})")]
    NotReady(String, String),
}

impl TestkitError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestkitError {
        let what = what.into();
        move |source| TestkitError::Io { what, source }
    }
}
