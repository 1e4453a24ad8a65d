//! Concurrent decisions of one counter-mode [`RedisSlidingWindow`] sent as
//! one script call ([`RedisSlidingWindowBuilder::batch_concurrent`]).
//!
//! A check that finds fewer than [`MAX_OUT`] calls out calls Redis itself,
//! as without batching; checks that arrive while that many are out wait in
//! a queue, and when a call ends, a task sends the queue (up to
//! [`MAX_BATCH`] keys) as one call of the batch script, and again until
//! the queue is empty. Nothing waits for a batch to fill: a lone caller
//! pays two uncontended lock operations. Redis runs each script to the end
//! before the next, so a batch decides its keys one after the other, as
//! single calls would.
//!
//! [`RedisSlidingWindow`]: super::RedisSlidingWindow
//! [`RedisSlidingWindowBuilder::batch_concurrent`]: super::RedisSlidingWindowBuilder::batch_concurrent

use std::sync::Arc;

use levee_core::SharedClock;
use levee_redis::{RedisClient, RedisError, Reply, Script};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::scripts::Packing;
use super::{TimeSource, script_decision, wall_micros};
use crate::Decision;

/// The most keys one batch call carries.
pub(crate) const MAX_BATCH: usize = 64;

/// Calls out at once (lone checks' and batches') before checks queue: a
/// few, so that Redis has the next call while the client reads the last
/// one's answers.
pub(crate) const MAX_OUT: usize = 2;

/// What a queued check gets: its decision, or the batch call's error.
type Answer = Result<Decision, RedisError>;

pub(crate) struct Batcher {
    state: Mutex<State>,
    client: RedisClient,
    script: Script,
    time: TimeSource,
    clock: SharedClock,
    packing: Packing,
    limit: u32,
}

#[derive(Default)]
struct State {
    /// Calls (lone checks' and batches') out now.
    out: usize,
    queue: Vec<Waiting>,
}

struct Waiting {
    key: Vec<u8>,
    n: u32,
    tx: oneshot::Sender<Answer>,
}

/// A check's turn: call Redis itself (holding the guard until its call
/// ends), or wait for a batch's answer.
pub(crate) enum Turn {
    Alone(Busy),
    Queued(oneshot::Receiver<Answer>),
}

/// Held while a lone check's call is out; its drop sends what queued
/// meanwhile (also when the check is cancelled mid-call).
pub(crate) struct Busy(Arc<Batcher>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

impl Batcher {
    pub(crate) fn new(
        client: RedisClient,
        script: Script,
        time: TimeSource,
        clock: SharedClock,
        packing: Packing,
        limit: u32,
    ) -> Self {
        Batcher {
            state: Mutex::new(State::default()),
            client,
            script,
            time,
            clock,
            packing,
            limit,
        }
    }

    /// `key`'s turn for a check of cost `n`.
    pub(crate) fn turn(self: &Arc<Self>, key: &[u8], n: u32) -> Turn {
        let mut state = self.state.lock();
        if state.out < MAX_OUT {
            state.out += 1;
            return Turn::Alone(Busy(self.clone()));
        }
        let (tx, rx) = oneshot::channel();
        state.queue.push(Waiting {
            key: key.to_vec(),
            n,
            tx,
        });
        Turn::Queued(rx)
    }

    /// A lone check's call ended: its turn goes to what queued meanwhile,
    /// sent on a task of its own.
    fn call_ended(self: &Arc<Self>) {
        let mut state = self.state.lock();
        if state.queue.is_empty() {
            state.out -= 1;
            return;
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(state);
            tokio::spawn(self.clone().drain());
        } else {
            state.out -= 1;
            if state.out == 0 {
                // No runtime to send on and no call out to send them: the
                // queued checks get an error (their senders are dropped)
                // and take their limiter's fallback.
                state.queue.clear();
            }
        }
    }

    /// Sends the queue, a batch at a time, until it is empty.
    async fn drain(self: Arc<Self>) {
        let mut ended = Ended(Some(&self));
        loop {
            let batch: Vec<Waiting> = {
                let mut state = self.state.lock();
                if state.queue.is_empty() {
                    state.out -= 1;
                    ended.0 = None;
                    return;
                }
                let n = state.queue.len().min(MAX_BATCH);
                state.queue.drain(..n).collect()
            };
            let answers = self.send(&batch).await;
            for (w, answer) in batch.into_iter().zip(answers) {
                // A check cancelled meanwhile has dropped its receiver.
                let _ = w.tx.send(answer);
            }
        }
    }

    /// One call of the batch script for `batch`: an answer per key.
    async fn send(&self, batch: &[Waiting]) -> Vec<Answer> {
        let mut call = self.script.call();
        for w in batch {
            call = call.key(&w.key);
        }
        call = match self.time {
            TimeSource::Server => call.arg("s"),
            TimeSource::Clock => call.arg(wall_micros(&self.clock)),
        };
        for w in batch {
            call = call.arg(w.n);
        }
        let replies = match self.client.eval(&call).await.and_then(Reply::into_array) {
            Ok(replies) if replies.len() == batch.len() => replies,
            Ok(replies) => {
                let err = RedisError::UnexpectedReply(format!(
                    "the batch script answered {} decisions for {} keys",
                    replies.len(),
                    batch.len()
                ));
                return vec![Err(err); batch.len()];
            }
            Err(err) => return vec![Err(err); batch.len()],
        };
        replies
            .into_iter()
            .map(|reply| script_decision(reply, self.packing, self.limit))
            .collect()
    }
}

/// A drain task's exit: when the task is dropped mid-batch (its runtime
/// shut down), its turn ends; if no other call is out, the checks still
/// queued get an error, and later checks call Redis themselves.
struct Ended<'a>(Option<&'a Arc<Batcher>>);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        if let Some(batcher) = self.0.take() {
            let mut state = batcher.state.lock();
            state.out -= 1;
            if state.out == 0 {
                state.queue.clear();
            }
        }
    }
}
