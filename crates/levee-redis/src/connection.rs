//! The connection under a [`RedisClient`](crate::RedisClient): one that the
//! client opens and reopens itself (standalone or Cluster), or one the user
//! hands in (a `ConnectionManager` or a Cluster connection).
//!
//! Rules (issue 11 of the project's tracker):
//! - One connect at a time, on a spawned task bounded by `connect_timeout`:
//!   callers wait on it under their own command timeout, and one that gives
//!   up leaves the connect running for the next.
//! - A failed connect stores nothing: the next command starts a new one, so
//!   a command after a recovery never gets an error from the outage.
//! - A command that fails because its connection is gone (dropped, reset,
//!   refused) drops that connection and is sent once more on a fresh one,
//!   within the same timeout: the first command after Redis restarts
//!   succeeds. If the connection broke after Redis ran the command (the
//!   reply was lost), it runs twice: levee's own commands are idempotent
//!   (GET, SET, DEL, PUBLISH of an invalidation) or err on the safe side (a
//!   limiter decision counted twice).
//! - Timeouts do not drop the connection: replies on a multiplexed
//!   connection are matched to their requests, so a late one is discarded
//!   and the connection stays in step; a latency spike causes no churn.
//!   One exception: a half-open probe that times out (Redis has failed
//!   long enough to open the breaker, and still does not answer) drops the
//!   connection, so that one that died silently (blackholed by a failover
//!   or a NAT, with no reset) is replaced at the next probe: at most one
//!   reconnect per open period.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{Cmd, Value};

use crate::error::{Cause, is_noscript, is_stale};
use crate::script::ScriptCall;
use crate::stats::Counters;
use crate::{RedisError, endpoint::Endpoints};

/// A driver connection levee sends commands on.
#[derive(Clone)]
pub(crate) enum Conn {
    /// A multiplexed connection the client opened.
    Single(MultiplexedConnection),
    /// A user's connection manager (it reconnects by itself).
    Manager(ConnectionManager),
    /// A Cluster connection (the client's or the user's).
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    /// Sends `cmd`; an error reply comes back as an `Err` (the driver
    /// returns it as a value).
    async fn req(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        server_error(self.send_cmd(cmd).await)
    }

    /// The driver's own future for `cmd` (no future of ours around it: one
    /// state machine less to poll per command).
    fn send_cmd<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Manager(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    /// Sends the commands of `pipe` in one write; their replies come back
    /// as one array, error replies among them as values.
    async fn req_pipe(&mut self, pipe: &redis::Pipeline) -> redis::RedisResult<Value> {
        let n = pipe.len();
        let replies = match self {
            Conn::Single(c) => c.req_packed_commands(pipe, 0, n).await,
            Conn::Manager(c) => c.req_packed_commands(pipe, 0, n).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_commands(pipe, 0, n).await,
        };
        replies.map(Value::Array)
    }
}

/// An error reply as an `Err` (the driver returns it as a value).
fn server_error(reply: redis::RedisResult<Value>) -> redis::RedisResult<Value> {
    match reply {
        Ok(Value::ServerError(e)) => Err(e.into()),
        r => r,
    }
}

/// What one call sends: a command, or a script by its SHA with the full
/// script to send when the server does not have it (`NOSCRIPT`).
pub(crate) enum Request<'a> {
    Cmd(&'a Cmd),
    /// Commands sent together (on a Cluster, all of one slot).
    Pipe(&'a redis::Pipeline),
    Script {
        evalsha: &'a Cmd,
        call: &'a ScriptCall<'a>,
    },
}

impl Request<'_> {
    async fn run(&self, conn: &mut Conn) -> redis::RedisResult<Value> {
        match self {
            Request::Cmd(cmd) => server_error(conn.send_cmd(cmd).await),
            Request::Pipe(pipe) => conn.req_pipe(pipe).await,
            Request::Script { evalsha, call } => match conn.req(evalsha).await {
                // EVAL (not SCRIPT LOAD): routed by key on a Cluster, and it
                // caches the script on the node that runs it.
                Err(e) if is_noscript(&e) => conn.req(&call.eval()).await,
                r => r,
            },
        }
    }
}

/// The client's way to Redis.
pub(crate) enum Link {
    /// Opened and reopened by the client.
    Own(Arc<Own>),
    /// Handed in by the user, who owns its reconnects.
    User(Conn),
}

impl Link {
    /// Sends `req` (at most twice: once more on a fresh connection when the
    /// first attempt found its connection gone).
    pub(crate) async fn send(
        &self,
        req: &Request<'_>,
        stats: &Counters,
    ) -> Result<Value, RedisError> {
        let driver = |e| RedisError::from_driver(e, "connection");
        match self {
            Link::Own(own) => own.send(req).await,
            Link::User(conn) => {
                // A user's ConnectionManager answers the first command after
                // an outage with the error its failed reconnect stored, and
                // starts a new reconnect: the retry waits for that one.
                match req.run(&mut conn.clone()).await {
                    Err(e) if is_stale(&e) => {
                        stats.retry();
                        req.run(&mut conn.clone()).await.map_err(driver)
                    }
                    r => r.map_err(driver),
                }
            }
        }
    }

    /// After a probe timed out: drops the open connection (if the client
    /// owns it), so that the next probe opens a new one.
    pub(crate) fn probe_timed_out(&self) {
        if let Link::Own(own) = self {
            let mut state = own.state.lock();
            if matches!(*state, State::Up { .. }) {
                *state = State::Idle;
                drop(state);
                own.stats.replaced(&own.name);
            }
        }
    }

    /// Whether a connection is open (always true for a user's connection).
    pub(crate) fn is_connected(&self) -> bool {
        match self {
            Link::Own(own) => matches!(*own.state.lock(), State::Up { .. }),
            Link::User(_) => true,
        }
    }
}

type Connecting = Shared<BoxFuture<'static, Result<(Conn, u64), RedisError>>>;

enum State {
    /// No connection; the next command opens one.
    Idle,
    /// A connect is running; commands wait on it.
    Connecting(Connecting),
    /// Open, with its generation (so a failure on an older connection does
    /// not drop a newer one).
    Up { conn: Conn, generation: u64 },
}

/// A connection the client opens itself.
pub(crate) struct Own {
    endpoints: Endpoints,
    connect_timeout: Duration,
    name: Arc<str>,
    state: parking_lot::Mutex<State>,
    generation: AtomicU64,
    /// The running connect task; aborted when the client is dropped.
    task: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
    stats: Arc<Counters>,
}

impl Own {
    pub(crate) fn new(
        endpoints: Endpoints,
        connect_timeout: Duration,
        name: Arc<str>,
        stats: Arc<Counters>,
    ) -> Arc<Own> {
        Arc::new(Own {
            endpoints,
            connect_timeout,
            name,
            state: parking_lot::Mutex::new(State::Idle),
            generation: AtomicU64::new(0),
            task: parking_lot::Mutex::new(None),
            stats,
        })
    }

    async fn send(self: &Arc<Self>, req: &Request<'_>) -> Result<Value, RedisError> {
        let driver = |e| RedisError::from_driver(e, "connection");
        let (mut conn, generation, fresh) = match self.up() {
            Some((conn, generation)) => (conn, generation, false),
            None => self.current().await?,
        };
        match req.run(&mut conn).await {
            Err(e) if is_stale(&e) => {
                self.lost(generation, &e);
                if fresh {
                    return Err(driver(e));
                }
                self.stats.retry();
                let (mut conn, generation, _) = self.current().await?;
                let again = req.run(&mut conn).await;
                if let Err(e) = &again
                    && is_stale(e)
                {
                    self.lost(generation, e);
                }
                again.map_err(driver)
            }
            r => r.map_err(driver),
        }
    }

    /// The open connection, if there is one (no future to poll: the
    /// common case).
    fn up(&self) -> Option<(Conn, u64)> {
        match &*self.state.lock() {
            State::Up { conn, generation } => Some((conn.clone(), *generation)),
            _ => None,
        }
    }

    /// The open connection, or the running connect's result (starting one
    /// if none runs). `true`: the connection was opened for this call.
    async fn current(self: &Arc<Self>) -> Result<(Conn, u64, bool), RedisError> {
        let connecting = {
            let mut state = self.state.lock();
            match &*state {
                State::Up { conn, generation } => return Ok((conn.clone(), *generation, false)),
                State::Connecting(f) => f.clone(),
                State::Idle => {
                    let f = self.start_connect();
                    *state = State::Connecting(f.clone());
                    f
                }
            }
        };
        let (conn, generation) = connecting.await?;
        Ok((conn, generation, true))
    }

    /// Spawns the connect; its task records the result itself, so progress
    /// survives every waiting caller giving up.
    fn start_connect(self: &Arc<Self>) -> Connecting {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let weak: Weak<Own> = Arc::downgrade(self);
        let (endpoints, limit) = (self.endpoints.clone(), self.connect_timeout);
        let task = tokio::spawn(async move {
            let opened = match tokio::time::timeout(limit, endpoints.open(limit)).await {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(e)) => Err(RedisError::from_driver(e, "connect")),
                Err(_) => Err(RedisError::Unreachable {
                    what: "connect",
                    source: Cause::message(format!(
                        "no connection within the connect timeout ({limit:?})"
                    )),
                }),
            };
            if let Some(own) = weak.upgrade() {
                own.connected(generation, &opened);
            }
            opened.map(|conn| (conn, generation))
        });
        *self.task.lock() = Some(task.abort_handle());
        async move {
            task.await.unwrap_or_else(|_| {
                Err(RedisError::Unreachable {
                    what: "connect",
                    source: Cause::message("the connect was cancelled (client dropped)"),
                })
            })
        }
        .boxed()
        .shared()
    }

    fn connected(&self, generation: u64, opened: &Result<Conn, RedisError>) {
        let mut state = self.state.lock();
        if !matches!(*state, State::Connecting(_)) {
            return;
        }
        match opened {
            Ok(conn) => {
                *state = State::Up {
                    conn: conn.clone(),
                    generation,
                };
                drop(state);
                self.stats.connected(&self.name);
            }
            Err(e) => {
                *state = State::Idle;
                drop(state);
                self.stats.connect_failed(&self.name, e);
            }
        }
    }

    /// The connection of `generation` is gone: the next command opens a
    /// new one.
    fn lost(&self, generation: u64, err: &redis::RedisError) {
        let mut state = self.state.lock();
        if matches!(*state, State::Up { generation: g, .. } if g == generation) {
            *state = State::Idle;
            drop(state);
            self.stats.connection_lost(&self.name, err);
        }
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}
