//! [`Script`]: a Lua script run by its SHA (`EVALSHA`), sent in full
//! (`EVAL`) only when the server does not have it (`NOSCRIPT`, e.g. after a
//! restart or on a Cluster node it has not run on yet). The `NOSCRIPT`
//! answer is a server reply: it never counts against the breaker.

use std::sync::Arc;

use crate::command::Arg;
use crate::connection::Request;
use crate::{RedisClient, RedisError, Reply};

/// A Lua script and its SHA1. Cheap to clone.
#[derive(Clone)]
pub struct Script {
    code: Arc<str>,
    sha: Arc<str>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("sha", &self.sha).finish()
    }
}

impl Script {
    /// The script with source `code`.
    pub fn new(code: &str) -> Self {
        let sha = redis::Script::new(code).get_hash().to_string();
        Script {
            code: Arc::from(code),
            sha: Arc::from(sha),
        }
    }

    /// The script's SHA1, as `EVALSHA` takes it.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// A call of this script; add its keys, then its arguments.
    pub fn call(&self) -> ScriptCall<'_> {
        ScriptCall {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// One call of a [`Script`]: its keys (`KEYS`) and arguments (`ARGV`).
///
/// ```
/// use levee_redis::Script;
///
/// let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
/// let call = script.call().key(b"counter".as_slice()).arg(5u64);
/// assert_eq!(call.key_count(), 1);
/// ```
#[must_use]
pub struct ScriptCall<'a> {
    script: &'a Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ScriptCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptCall")
            .field("sha", &self.script.sha)
            .field("keys", &self.keys.len())
            .field("args", &self.args.len())
            .finish()
    }
}

impl ScriptCall<'_> {
    /// Appends a key (on a Cluster, every key of one call must share a
    /// slot: build them with [`Keyspace::tagged`](crate::Keyspace::tagged)).
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Arg) -> Self {
        self.args.push(arg.into_bytes());
        self
    }

    /// The call's first key, which routes it on a Cluster.
    pub(crate) fn first_key(&self) -> Option<&[u8]> {
        self.keys.first().map(Vec::as_slice)
    }

    /// How many keys the call has.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn command(&self, name: &str, first: &str) -> redis::Cmd {
        let mut cmd = redis::cmd(name);
        cmd.arg(first).arg(self.keys.len());
        for k in &self.keys {
            cmd.arg(k.as_slice());
        }
        for a in &self.args {
            cmd.arg(a.as_slice());
        }
        cmd
    }

    pub(crate) fn evalsha(&self) -> redis::Cmd {
        self.command("EVALSHA", &self.script.sha)
    }

    /// Built only after a `NOSCRIPT`: it carries the whole script.
    pub(crate) fn eval(&self) -> redis::Cmd {
        self.command("EVAL", &self.script.code)
    }
}

impl RedisClient {
    /// Runs a script call: `EVALSHA`, then `EVAL` if the server does not
    /// have the script; both under one timeout and one breaker permit.
    pub async fn eval(&self, call: &ScriptCall<'_>) -> Result<Reply, RedisError> {
        let evalsha = call.evalsha();
        let value = self
            .exec(Request::Script {
                evalsha: &evalsha,
                call,
            })
            .await?;
        Reply::from_value(value)
    }
}
