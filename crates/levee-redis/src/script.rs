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
            keys: redis::Cmd::new(),
            args: redis::Cmd::new(),
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
    // The driver's argument lists (one buffer and the ends of its parts
    // each): an argument is written once, where it is added, and copied
    // once more into the command.
    keys: redis::Cmd,
    args: redis::Cmd,
}

impl std::fmt::Debug for ScriptCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptCall")
            .field("sha", &self.script.sha)
            .field("keys", &self.key_count())
            .field("args", &self.args.args_iter().len())
            .finish()
    }
}

impl ScriptCall<'_> {
    /// Appends a key (on a Cluster, every key of one call must share a
    /// slot: build them with [`Keyspace::tagged`](crate::Keyspace::tagged)).
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.keys.arg(key.as_ref());
        self
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Arg) -> Self {
        arg.append(&mut self.args);
        self
    }

    /// The call's first key, which routes it on a Cluster.
    pub(crate) fn first_key(&self) -> Option<&[u8]> {
        parts(&self.keys).next()
    }

    /// How many keys the call has.
    pub fn key_count(&self) -> usize {
        self.keys.args_iter().len()
    }

    /// `name first numkeys keys... args...`, allocated once at its size.
    fn command(&self, name: &str, first: &str) -> redis::Cmd {
        let count = 3 + self.key_count() + self.args.args_iter().len();
        let bytes: usize = parts(&self.keys)
            .chain(parts(&self.args))
            .map(<[u8]>::len)
            .sum();
        // 20: the most digits `numkeys` can take.
        let mut cmd = redis::Cmd::with_capacity(count, name.len() + first.len() + 20 + bytes);
        cmd.arg(name).arg(first).arg(self.key_count());
        for part in parts(&self.keys).chain(parts(&self.args)) {
            cmd.arg(part);
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

/// The parts of a driver argument list (all plain: no scan cursor).
fn parts(list: &redis::Cmd) -> impl Iterator<Item = &[u8]> {
    list.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_sends_numkeys_then_its_keys_then_its_args_in_any_order_added() {
        let script = Script::new("return 1");
        let call = script
            .call()
            .key(b"k1".as_slice())
            .arg(7u64)
            .key("k2")
            .arg("x");
        assert_eq!((call.key_count(), call.first_key()), (2, Some(&b"k1"[..])));
        for (cmd, name, first) in [
            (call.evalsha(), "EVALSHA", script.sha()),
            (call.eval(), "EVAL", "return 1"),
        ] {
            let mut expected = redis::cmd(name);
            expected
                .arg(first)
                .arg(2)
                .arg("k1")
                .arg("k2")
                .arg("7")
                .arg("x");
            assert_eq!(cmd.get_packed_command(), expected.get_packed_command());
        }
        let bare = script.call();
        assert_eq!((bare.key_count(), bare.first_key()), (0, None));
        let expected = redis::cmd("EVALSHA")
            .arg(script.sha())
            .arg(0)
            .get_packed_command();
        assert_eq!(bare.evalsha().get_packed_command(), expected);
    }
}
