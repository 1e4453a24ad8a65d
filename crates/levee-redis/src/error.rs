//! [`RedisError`]: the error type of `levee-redis`, and how a driver error
//! is sorted into transport failures (which count against the breaker) and
//! server replies (which do not).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::ErrorKind;
use redis::ServerErrorKind;

/// Why a Redis call gave no answer.
///
/// [`is_transport`](Self::is_transport) errors (timeouts, refused or lost
/// connections, a Cluster that is down) are what the client's circuit
/// breaker counts; a server's error reply (`WRONGTYPE`, a script error) is
/// an answer, and never opens the breaker.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// A builder setting has a value that cannot work.
    #[error("invalid Redis setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The setting, as its builder method is named.
        setting: &'static str,
        /// What is wrong and what to do instead.
        reason: String,
    },
    /// The client's circuit breaker is open: Redis was not called.
    #[error("{}", open_message(*retry_after))]
    BreakerOpen {
        /// Time left until the breaker lets a probe through (`None` while
        /// a probe is in flight, or when forced open).
        retry_after: Option<Duration>,
    },
    /// No reply within the command timeout (the connection is kept).
    #[error(
        "Redis did not answer within {after:?}; raise the command timeout if Redis is only slow"
    )]
    Timeout {
        /// The timeout that ran out.
        after: Duration,
    },
    /// Redis cannot be reached: refused, reset, closed, a failed handshake
    /// or AUTH, or a Cluster reporting `CLUSTERDOWN`/`MASTERDOWN`.
    #[error("Redis is unreachable ({what}): {source}")]
    Unreachable {
        /// What failed: `connect`, `connection`, `cluster`.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: Cause,
    },
    /// Redis answered with an error reply (`WRONGTYPE`, `NOSCRIPT`, a
    /// script error, ...): Redis is up; the command is wrong.
    #[error("Redis refused the command: {source}")]
    Server {
        /// The reply's code (`WRONGTYPE`, `ERR`, ...), when it has one.
        code: Option<String>,
        /// The driver's error.
        #[source]
        source: Cause,
    },
    /// The reply does not have the shape the caller expected.
    #[error("unexpected reply from Redis: {0}")]
    UnexpectedReply(String),
}

fn open_message(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(
            "Redis is skipped: its circuit breaker is open (a probe in {d:?}); serve a fallback"
        ),
        None => "Redis is skipped: its circuit breaker is not admitting calls now".to_string(),
    }
}

impl RedisError {
    /// Whether the breaker refused the call (Redis was not called).
    pub fn is_breaker_open(&self) -> bool {
        matches!(self, RedisError::BreakerOpen { .. })
    }

    /// Whether the command timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RedisError::Timeout { .. })
    }

    /// Whether Redis could not be reached (not a timeout).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RedisError::Unreachable { .. })
    }

    /// Whether this is a transport failure, the kind the breaker counts:
    /// a timeout or an unreachable Redis.
    pub fn is_transport(&self) -> bool {
        self.is_timeout() || self.is_unreachable()
    }

    /// Whether Redis answered with an error reply.
    pub fn is_server(&self) -> bool {
        matches!(self, RedisError::Server { .. })
    }

    /// The error reply's code (`WRONGTYPE`, `NOSCRIPT`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            RedisError::Server { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// A short label for metrics and stats: `breaker_open`, `timeout`,
    /// `unreachable`, `server`, `reply`, `setting`.
    pub fn kind_label(&self) -> &'static str {
        match self {
            RedisError::InvalidSetting { .. } => "setting",
            RedisError::BreakerOpen { .. } => "breaker_open",
            RedisError::Timeout { .. } => "timeout",
            RedisError::Unreachable { .. } => "unreachable",
            RedisError::Server { .. } => "server",
            RedisError::UnexpectedReply(_) => "reply",
        }
    }

    pub(crate) fn setting(setting: &'static str, reason: impl Into<String>) -> Self {
        RedisError::InvalidSetting {
            setting,
            reason: reason.into(),
        }
    }

    /// Sorts a driver error. `what` names the step for unreachable errors.
    pub(crate) fn from_driver(err: redis::RedisError, what: &'static str) -> Self {
        if err.is_timeout() {
            // The driver's own timer (a connect timeout): no reply came.
            return RedisError::Unreachable {
                what,
                source: Cause::new(err),
            };
        }
        if is_transport(&err) {
            let what = if err.is_io_error() { what } else { "cluster" };
            return RedisError::Unreachable {
                what,
                source: Cause::new(err),
            };
        }
        match err.kind() {
            ErrorKind::UnexpectedReturnType | ErrorKind::Parse => {
                RedisError::UnexpectedReply(err.to_string())
            }
            _ => RedisError::Server {
                code: err.code().map(str::to_string),
                source: Cause::new(err),
            },
        }
    }
}

/// Whether a driver error says Redis is not reachable (rather than that it
/// answered): I/O errors, a failed AUTH or handshake, no connection to a
/// Cluster node, `CLUSTERDOWN`, `MASTERDOWN` and `LOADING`.
pub(crate) fn is_transport(err: &redis::RedisError) -> bool {
    match err.kind() {
        ErrorKind::Io
        | ErrorKind::AuthenticationFailed
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::RESP3NotSupported => true,
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::BusyLoading
        ),
        _ => false,
    }
}

/// Whether a command's error says the connection it used is gone (so the
/// next command needs a fresh one): a dropped, reset, refused or closed
/// connection, or no connection to a Cluster node. Timeouts are not: a late
/// reply on a multiplexed connection is matched to its (cancelled) request
/// and dropped, so the connection stays in step.
pub(crate) fn is_stale(err: &redis::RedisError) -> bool {
    (err.is_io_error() && !err.is_timeout()) || err.kind() == ErrorKind::ClusterConnectionNotFound
}

pub(crate) fn is_noscript(err: &redis::RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// The underlying error of a [`RedisError`], kept as its source. Cheap to
/// clone (shared).
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub(crate) fn new(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(err))
    }

    pub(crate) fn message(msg: impl Into<String>) -> Self {
        Cause(Arc::new(std::io::Error::other(msg.into())))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> redis::RedisError {
        redis::RedisError::from(std::io::Error::new(kind, "x"))
    }

    #[test]
    fn refused_and_reset_are_transport_and_stale() {
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
        ] {
            let e = io(kind);
            assert!(is_transport(&e) && is_stale(&e), "{kind:?}");
            assert!(RedisError::from_driver(e, "connection").is_unreachable());
        }
    }

    #[test]
    fn a_driver_timeout_is_transport_but_not_stale() {
        let e = io(std::io::ErrorKind::TimedOut);
        assert!(is_transport(&e));
        assert!(!is_stale(&e));
    }

    #[test]
    fn server_replies_are_not_transport() {
        let wrongtype = redis::RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "WRONGTYPE",
        ));
        assert!(!is_transport(&wrongtype));
        let noscript =
            redis::RedisError::from((ErrorKind::Server(ServerErrorKind::NoScript), "NOSCRIPT"));
        assert!(is_noscript(&noscript) && !is_transport(&noscript));
        assert!(RedisError::from_driver(noscript, "connection").is_server());
        let down =
            redis::RedisError::from((ErrorKind::Server(ServerErrorKind::ClusterDown), "down"));
        assert!(is_transport(&down));
        assert!(RedisError::from_driver(down, "connection").is_transport());
    }

    #[test]
    fn breaker_open_says_when_to_retry() {
        let e = RedisError::BreakerOpen {
            retry_after: Some(Duration::from_secs(5)),
        };
        assert!(e.is_breaker_open() && !e.is_transport());
        assert!(e.to_string().contains("5s"), "{e}");
    }
}
