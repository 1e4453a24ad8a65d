//! One load below the cache: upstream quota -> rate limit -> bulkhead ->
//! total timeout -> retry -> breaker -> attempt timeout -> the call.

use std::future::Future;

use levee_cache::Loaded;
use std::time::Instant;

use levee_core::sleep::{timeout, timeout_from};
use levee_limit::{ConcurrencyPermit, QuotaState};

use super::{Error, Inner, PipelineKey, Verdict};

/// What one attempt came to.
enum Attempt<T, E> {
    /// The breaker refused: the upstream was not called.
    Refused(Error<E>),
    /// The call answered within its time, and how that counts.
    Answered(Result<T, E>, Verdict),
    /// The attempt timed out (a breaker failure).
    TimedOut(std::time::Duration),
}

impl<K: PipelineKey, V, E, T> Inner<K, V, E, T>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    T: Send + 'static,
{
    /// Loads `key` through every part below the cache.
    pub(super) async fn load<F, Fut>(&self, key: &K, loader: &F) -> Result<Loaded<V>, Error<E>>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        let attempts = |start| self.attempts(key, loader, start);
        self.admitted(key, attempts, Result::is_ok)
            .await
            .map(|t| (self.map)(t))
    }

    /// One call of `call` below the cache, never retried: the upstream's
    /// own result whatever its verdict (which still teaches the breaker and
    /// the quota), or why it was not called or did not answer in time.
    pub(super) async fn once<F, Fut>(&self, key: &K, call: &F) -> Result<Result<T, E>, Error<E>>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        let attempt = |start| async move {
            self.stats.attempt();
            match self.attempt(key, call, start).await {
                Attempt::Refused(e) => Err(e),
                Attempt::Answered(result, _) => Ok(result),
                Attempt::TimedOut(d) => Err(Error::Timeout(d)),
            }
        };
        self.admitted(key, attempt, |r| matches!(r, Ok(Ok(_))))
            .await
    }

    /// Admission ([`admit`](Self::admit)), then `work` from one clock
    /// reading (for the budget, the timeouts and the metrics) under the
    /// total timeout; `ok` says whether the result counts as a success.
    async fn admitted<O, W, WFut>(
        &self,
        key: &K,
        work: W,
        ok: fn(&Result<O, Error<E>>) -> bool,
    ) -> Result<O, Error<E>>
    where
        W: FnOnce(Instant) -> WFut,
        WFut: Future<Output = Result<O, Error<E>>>,
    {
        self.stats.load();
        let _slot = self.admit(key).await?;
        let start = self.clock.now();
        let result = self.within_total(start, work(start)).await;
        self.metrics.load_finished(&*self.clock, start, ok(&result));
        result
    }

    /// The upstream quota, the rate limiter and the bulkhead: a slot in
    /// the bulkhead (when there is one) if the call may go out.
    async fn admit(&self, key: &K) -> Result<Option<ConcurrencyPermit>, Error<E>> {
        if let Some(quota) = &self.quota
            && let QuotaState::HoldBack { retry_after } = quota.check(key).await
        {
            self.stats.rate_limited();
            return Err(Error::RateLimited {
                retry_after: Some(retry_after),
            });
        }
        if let Some(limiter) = &self.limiter {
            let decision = match limiter.check_n_now(key, std::num::NonZeroU32::MIN) {
                Some(now) => now,
                None => limiter.check(key).await,
            };
            if let Ok(d) = &decision {
                self.metrics.limit_decision(d.allowed);
            }
            match decision {
                Ok(d) if d.allowed => {}
                Ok(d) => {
                    self.stats.rate_limited();
                    return Err(Error::RateLimited {
                        retry_after: d.retry_after,
                    });
                }
                Err(e) => return Err(Error::Limiter(std::sync::Arc::new(e))),
            }
        }
        match &self.bulkhead {
            Some(b) => match timeout(&*self.clock, self.queue_timeout, b.acquire()).await {
                Ok(Ok(slot)) => Ok(Some(slot)),
                Ok(Err(_)) | Err(_) => {
                    self.stats.bulkhead_full();
                    Err(Error::BulkheadFull)
                }
            },
            None => Ok(None),
        }
    }

    /// `work` under the total timeout, when one is set.
    async fn within_total<O>(
        &self,
        start: Instant,
        work: impl Future<Output = Result<O, Error<E>>>,
    ) -> Result<O, Error<E>> {
        match self.timeout {
            Some(total) => timeout_from(&*self.clock, start, total, work)
                .await
                .unwrap_or(Err(Error::Timeout(total))),
            None => work.await,
        }
    }

    /// The retry loop: attempts until one succeeds, the verdict says stop,
    /// or the policy or budget allows no more.
    async fn attempts<F, Fut>(&self, key: &K, loader: &F, start: Instant) -> Result<T, Error<E>>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        if let Some(b) = &self.budget {
            b.deposit(start);
        }
        let mut n = 0;
        loop {
            n += 1;
            self.stats.attempt();
            // The first attempt starts with the load; a retry reads the clock.
            let began = if n == 1 { start } else { self.clock.now() };
            let (err, verdict) = match self.attempt(key, loader, began).await {
                Attempt::Refused(e) => return Err(e),
                Attempt::Answered(Ok(t), Verdict::Success) => return Ok(t),
                Attempt::Answered(Err(e), v) => (Error::Upstream(std::sync::Arc::new(e)), v),
                Attempt::Answered(Ok(_), v) => (
                    Error::Unsuccessful {
                        verdict: v,
                        attempts: n,
                    },
                    v,
                ),
                Attempt::TimedOut(d) => (Error::Timeout(d), Verdict::Failure),
            };
            match self.next_wait(verdict, n) {
                Some(wait) => self.clock.sleep(wait).await,
                None => return Err(rate_limited_or(err, verdict)),
            }
        }
    }

    /// After attempt `n` ended with `verdict`: how long to wait before the
    /// next one (a retry is counted and its budget withdrawn), or `None`
    /// to give up (a verdict not to retry, no retry policy, attempts spent,
    /// a `Retry-After` past `max_retry_after`, the retry budget spent).
    pub(super) fn next_wait(&self, verdict: Verdict, n: u32) -> Option<std::time::Duration> {
        let p = self.retry.as_ref()?;
        let wait = match verdict {
            Verdict::DoNotRetry | Verdict::Success => return None,
            _ if n >= p.max_attempts => return None,
            Verdict::RateLimited {
                retry_after: Some(ra),
            } if ra > p.max_retry_after => return None,
            Verdict::RateLimited {
                retry_after: Some(ra),
            } => ra.max(p.backoff(n)),
            _ => p.backoff(n),
        };
        if let Some(b) = &self.budget
            && !b.withdraw(self.clock.now())
        {
            self.stats.budget_exhausted();
            return None;
        }
        self.stats.retry();
        Some(wait)
    }

    /// One attempt under the breaker and the attempt timeout.
    async fn attempt<F, Fut>(&self, key: &K, loader: &F, began: Instant) -> Attempt<T, E>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        let breaker = self.breakers.as_ref().map(|b| b.for_key(key));
        let permit = match &breaker {
            Some(b) => match b.try_acquire() {
                Ok(p) => Some(p),
                Err(r) => {
                    self.stats.circuit_open();
                    return Attempt::Refused(Error::CircuitOpen {
                        retry_after: r.retry_after,
                    });
                }
            },
            None => None,
        };
        let result = match self.attempt_timeout {
            Some(d) => match timeout_from(&*self.clock, began, d, loader()).await {
                Ok(r) => r,
                Err(_) => {
                    if let Some(p) = permit {
                        p.failure();
                    }
                    return Attempt::TimedOut(d);
                }
            },
            None => loader().await,
        };
        let verdict = (self.classify)(&result);
        if let Some(p) = permit {
            match verdict {
                Verdict::Success => p.success(),
                Verdict::Failure => p.failure(),
                // One key's 429 says nothing of the upstream's health, and
                // a request that cannot succeed says nothing either.
                Verdict::RateLimited { .. } | Verdict::DoNotRetry => p.ignore(),
            }
        }
        if let Some(quota) = &self.quota {
            match self.headers_of.as_ref().and_then(|h| h(&result)) {
                Some((status, headers)) => quota.observe(key, status, headers).await,
                None => {
                    if let Verdict::RateLimited { retry_after } = verdict {
                        quota.hold(key, retry_after).await;
                    }
                }
            }
        }
        Attempt::Answered(result, verdict)
    }
}

/// The error to return when no more attempts are made: a 429 is reported
/// as `RateLimited`, anything else as it is.
fn rate_limited_or<E>(err: Error<E>, verdict: Verdict) -> Error<E> {
    match verdict {
        Verdict::RateLimited { retry_after } => Error::RateLimited { retry_after },
        _ => err,
    }
}
