//! Many keys in one round trip: [`RedisClient::mget`] and [`Pipeline`]s.
//!
//! On a Cluster, `MGET` is split by slot by the driver (one request per
//! node it touches, sent together, replies put back in key order); a
//! pipeline cannot cross slots, so [`RedisClient::pipeline`] sends one
//! pipeline per slot, all at once.

use std::time::Duration;

use crate::client::{px, sized};
use crate::connection::Request;
use crate::script::ScriptCall;
use crate::{RedisClient, RedisError, Reply};

/// Commands sent together in one round trip (per slot on a Cluster): not a
/// transaction, each command succeeds or fails on its own.
///
/// ```
/// use std::time::Duration;
/// use levee_redis::Pipeline;
///
/// let mut pipe = Pipeline::new();
/// pipe.set_px(b"a", b"1", Duration::from_secs(60)).set_nx_px(b"lock:a", b"7", Duration::from_secs(5));
/// assert_eq!(pipe.len(), 2);
/// ```
#[derive(Default, Clone)]
pub struct Pipeline {
    /// Each command with the key that routes it.
    cmds: Vec<(Vec<u8>, redis::Cmd)>,
}

impl std::fmt::Debug for Pipeline {
    // Arguments may be values or keys of secrets: only the count is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("commands", &self.cmds.len())
            .finish()
    }
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Pipeline::default()
    }

    /// How many commands it holds.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// Whether it holds no command.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// `SET key value PX ttl` (the TTL in whole milliseconds, at least 1);
    /// replies `OK`.
    pub fn set_px(&mut self, key: &[u8], value: &[u8], ttl: Duration) -> &mut Self {
        let mut cmd = sized("SET", 5, key.len() + value.len() + 2 + 20);
        cmd.arg(key).arg(value).arg("PX").arg(px(ttl));
        self.cmds.push((key.to_vec(), cmd));
        self
    }

    /// `SET key value NX PX ttl`; replies `OK` when the key was set, `nil`
    /// when it existed.
    pub fn set_nx_px(&mut self, key: &[u8], value: &[u8], ttl: Duration) -> &mut Self {
        let mut cmd = sized("SET", 6, key.len() + value.len() + 4 + 20);
        cmd.arg(key).arg(value).arg("NX").arg("PX").arg(px(ttl));
        self.cmds.push((key.to_vec(), cmd));
        self
    }

    /// A script call sent in full (`EVAL`: a pipeline cannot fall back from
    /// `EVALSHA` command by command). Routed by its first key; a call
    /// without keys goes with the first slot's commands.
    pub fn eval(&mut self, call: &ScriptCall<'_>) -> &mut Self {
        let key = call.first_key().map(<[u8]>::to_vec).unwrap_or_default();
        self.cmds.push((key, call.eval()));
        self
    }
}

impl RedisClient {
    /// `MGET keys...`: each key's value (`None`: absent), in the order of
    /// `keys`; one command under one timeout and breaker permit (on a
    /// Cluster the driver sends one request per node, together). No keys:
    /// nothing is sent.
    pub async fn mget(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = sized("MGET", 1 + keys.len(), keys.iter().map(Vec::len).sum());
        for k in keys {
            cmd.arg(k.as_slice());
        }
        let reply = Reply::from_value(self.exec(Request::Cmd(&cmd)).await?)?;
        let values = reply
            .into_array()?
            .into_iter()
            .map(Reply::into_bytes)
            .collect::<Result<Vec<_>, _>>()?;
        if values.len() != keys.len() {
            return Err(RedisError::UnexpectedReply(format!(
                "MGET of {} keys answered {} values",
                keys.len(),
                values.len()
            )));
        }
        Ok(values)
    }

    /// Sends `pipe` and gives each command's reply, in order. Standalone:
    /// one round trip. Cluster: one pipeline per slot, sent concurrently,
    /// each under its own timeout and breaker permit; a pipeline that fails
    /// fails each of its commands with the same error.
    pub async fn pipeline(&self, pipe: &Pipeline) -> Vec<Result<Reply, RedisError>> {
        if pipe.is_empty() {
            return Vec::new();
        }
        let groups = self.groups(pipe);
        let sent = groups.iter().map(|(_, p)| self.send_pipe(p));
        let replies = futures_util::future::join_all(sent).await;
        let mut out: Vec<Option<Result<Reply, RedisError>>> = vec![None; pipe.len()];
        for ((indexes, _), replies) in groups.iter().zip(replies) {
            for (i, r) in indexes.iter().zip(replies) {
                out[*i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(RedisError::UnexpectedReply(
                        "a pipeline answered fewer replies than it had commands".into(),
                    ))
                })
            })
            .collect()
    }

    /// The commands of `pipe` grouped by the slot of their keys (one group
    /// when not on a Cluster), with their indexes in `pipe`.
    fn groups(&self, pipe: &Pipeline) -> Vec<(Vec<usize>, redis::Pipeline)> {
        #[cfg(feature = "cluster")]
        if self.is_cluster() {
            use redis::cluster_routing::Slot;
            let mut group_of = std::collections::HashMap::<Slot, usize>::new();
            let mut groups: Vec<(Vec<usize>, redis::Pipeline)> = Vec::new();
            for (i, (key, cmd)) in pipe.cmds.iter().enumerate() {
                let g = *group_of.entry(Slot::for_key(key)).or_insert_with(|| {
                    groups.push((Vec::new(), redis::pipe()));
                    groups.len() - 1
                });
                groups[g].0.push(i);
                groups[g].1.add_command(cmd.clone());
            }
            return groups;
        }
        let mut p = redis::pipe();
        for (_, cmd) in &pipe.cmds {
            p.add_command(cmd.clone());
        }
        vec![((0..pipe.cmds.len()).collect(), p)]
    }

    async fn send_pipe(&self, pipe: &redis::Pipeline) -> Vec<Result<Reply, RedisError>> {
        let n = pipe.len();
        let values = match self.exec(Request::Pipe(pipe)).await {
            Ok(redis::Value::Array(values)) if values.len() == n => values,
            Ok(_) => {
                let e = RedisError::UnexpectedReply(format!(
                    "a pipeline of {n} commands answered another number of replies"
                ));
                return vec![Err(e); n];
            }
            Err(e) => return vec![Err(e); n],
        };
        values.into_iter().map(Reply::from_value).collect()
    }
}
