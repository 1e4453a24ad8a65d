//! [`Levee::get_many`]: a batch of keys through the pipeline, with one
//! batch loader call per attempt, the cache's batch reads in front
//! ([`TieredCache::get_or_load_many`]), and the limiter spending a permit
//! per key loaded or one per batch ([`BatchCost`]).

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use levee_cache::{BatchLoaded, Cached, Freshness, Source};
use levee_core::sleep::{timeout, timeout_from};
use levee_limit::QuotaState;

use super::{Error, Inner, Levee, PipelineKey, Verdict, loaded_value};

/// How a batch spends the pipeline's rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BatchCost {
    /// One permit per key loaded, each on its own key's limit (an upstream
    /// that counts every item of a batch call). Keys refused are
    /// `RateLimited`; the others are loaded. The default.
    #[default]
    PerKey,
    /// One permit per batch call, on the limit of the batch's first key
    /// (an upstream that counts one call per batch: key the limiter by
    /// upstream, not by user, for this).
    PerBatch,
}

type Answer<K, V, E> = Result<BatchLoaded<K, V, Error<E>>, Error<E>>;

impl<K: PipelineKey, V, E, T> Levee<K, V, E, T>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    T: Send + 'static,
{
    /// The values of `keys`, in order: fresh ones from the cache (one
    /// `MGET` for what L1 misses), the rest from one call of `loader` per
    /// attempt through the parts below the cache. `loader` gets the keys to
    /// load and returns per key a value, an absence or an error
    /// ([`BatchLoaded`]); it is not mapped by the builder's `map`. A
    /// failure below the cache (a refused or failed batch, a key's own
    /// error) is answered per key with a stale value that fits a tier,
    /// else the fallback's value, else the [`Error`].
    ///
    /// Admission: the upstream quota is asked per key (held keys are
    /// `RateLimited`, the others go on); the rate limiter spends as
    /// [`LeveeBuilder::batch_cost`](super::LeveeBuilder::batch_cost) says;
    /// the bulkhead gives the batch one slot; the breaker (of the first
    /// key, with `breaker_per_key`) and the retry policy count the batch
    /// call as one call, classified by the classifier when it fails
    /// (a batch error is handed to it as the call's error).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use levee::Levee;
    /// use levee::cache::{BatchLoaded, Loaded, Source, TieredCache};
    ///
    /// let users = Levee::<u32, String, std::io::Error>::builder("users")
    ///     .cache(TieredCache::builder("users").ttl(Duration::from_secs(60)).build()?)
    ///     .build()?;
    /// let load = |ids: Vec<u32>| async move {
    ///     Ok(ids.into_iter().map(|i| (i, Ok(Loaded::Value(format!("user {i}"))))).collect::<BatchLoaded<_, _, _>>())
    /// };
    /// let got = users.get_many(vec![1, 2], load).await;
    /// assert_eq!(got[1].as_ref().unwrap().as_ref().unwrap().value, "user 2");
    /// let again = users.get_many(vec![2], load).await;
    /// assert_eq!(again[0].as_ref().unwrap().as_ref().unwrap().source, Source::L1);
    /// # Ok(()) }
    /// ```
    pub async fn get_many<F, Fut>(
        &self,
        keys: Vec<K>,
        loader: F,
    ) -> Vec<Result<Option<Cached<V>>, Error<E>>>
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<BatchLoaded<K, V, E>, E>> + Send + 'static,
    {
        let inner = &self.inner;
        let Some(cache) = &inner.cache else {
            // No cache to coalesce duplicates: the loader gets each key once.
            let mut distinct = Vec::with_capacity(keys.len());
            let mut seen = std::collections::HashSet::with_capacity(keys.len());
            for k in &keys {
                if seen.insert(k) {
                    distinct.push(k.clone());
                }
            }
            let answer = inner.load_batch(distinct, &loader).await;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let got = match &answer {
                    Ok(found) => found
                        .get(&key)
                        .cloned()
                        .unwrap_or(Err(Error::Cache(levee_cache::CacheError::MissingFromBatch))),
                    Err(e) => Err(e.clone()),
                };
                out.push(match got {
                    Ok(loaded) => Ok(loaded_value(loaded).map(|value| Cached {
                        value,
                        freshness: Freshness::Fresh,
                        source: Source::Loader,
                    })),
                    Err(e) => inner.fall_back(key, e).await,
                });
            }
            return out;
        };
        let (shared, loader) = (inner.clone(), Arc::new(loader));
        let results = cache
            .get_or_load_many(keys.clone(), move |ks: Vec<K>| {
                let (inner, loader) = (shared.clone(), loader.clone());
                async move { inner.load_batch(ks, &*loader).await }
            })
            .await;
        let mut out = Vec::with_capacity(results.len());
        for (key, r) in keys.into_iter().zip(results) {
            out.push(match r {
                Ok(v) => Ok(v),
                Err(e) => inner.fall_back(key, Error::from_cache(e)).await,
            });
        }
        out
    }
}

impl<K: PipelineKey, V, E, T> Inner<K, V, E, T>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    T: Send + 'static,
{
    /// Loads `keys` through every part below the cache: refused keys get
    /// their error, the others one batch call per attempt.
    async fn load_batch<F, Fut>(&self, keys: Vec<K>, loader: &F) -> Answer<K, V, E>
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync,
        Fut: Future<Output = Result<BatchLoaded<K, V, E>, E>> + Send,
    {
        self.stats.load();
        let mut found = BatchLoaded::<K, V, Error<E>>::new();
        let mut go = Vec::with_capacity(keys.len());
        for key in keys {
            match self.admit_key(&key).await {
                Ok(()) => go.push(key),
                Err(e) => {
                    found.insert(key, Err(e));
                }
            }
        }
        if go.is_empty() {
            return Ok(found);
        }
        if self.batch_cost == BatchCost::PerBatch {
            self.spend(&go[0]).await?;
        }
        let _slot = match &self.bulkhead {
            Some(b) => match timeout(&*self.clock, self.queue_timeout, b.acquire()).await {
                Ok(Ok(slot)) => Some(slot),
                Ok(Err(_)) | Err(_) => {
                    self.stats.bulkhead_full();
                    return Err(Error::BulkheadFull);
                }
            },
            None => None,
        };
        let start = self.clock.now();
        let attempts = self.batch_attempts(&go, loader, start);
        let result = match self.timeout {
            Some(total) => timeout_from(&*self.clock, start, total, attempts)
                .await
                .unwrap_or(Err(Error::Timeout(total))),
            None => attempts.await,
        };
        self.metrics
            .load_finished(&*self.clock, start, result.is_ok());
        for (k, r) in result? {
            found.insert(k, r.map_err(|e| Error::Upstream(Arc::new(e))));
        }
        Ok(found)
    }

    /// The upstream quota for `key`, and its limiter permit when a batch
    /// costs one per key.
    async fn admit_key(&self, key: &K) -> Result<(), Error<E>> {
        if let Some(quota) = &self.quota
            && let QuotaState::HoldBack { retry_after } = quota.check(key).await
        {
            self.stats.rate_limited();
            return Err(Error::RateLimited {
                retry_after: Some(retry_after),
            });
        }
        if self.batch_cost == BatchCost::PerKey {
            self.spend(key).await?;
        }
        Ok(())
    }

    /// One permit of the rate limiter, on `key`'s limit.
    async fn spend(&self, key: &K) -> Result<(), Error<E>> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let decision = match limiter.check_n_now(key, NonZeroU32::MIN) {
            Some(now) => now,
            None => limiter.check_n(key, NonZeroU32::MIN).await,
        };
        match decision {
            Ok(d) if d.allowed => {
                self.metrics.limit_decision(true);
                Ok(())
            }
            Ok(d) => {
                self.metrics.limit_decision(false);
                self.stats.rate_limited();
                Err(Error::RateLimited {
                    retry_after: d.retry_after,
                })
            }
            Err(e) => Err(Error::Limiter(Arc::new(e))),
        }
    }

    /// The retry loop around one batch call, under the breaker (of the
    /// first key) and the attempt timeout.
    async fn batch_attempts<F, Fut>(
        &self,
        keys: &[K],
        loader: &F,
        start: Instant,
    ) -> Result<BatchLoaded<K, V, E>, Error<E>>
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync,
        Fut: Future<Output = Result<BatchLoaded<K, V, E>, E>> + Send,
    {
        if let Some(b) = &self.budget {
            b.deposit(start);
        }
        let mut n = 0;
        loop {
            n += 1;
            self.stats.attempt();
            let began = if n == 1 { start } else { self.clock.now() };
            let (err, verdict) = match self.batch_attempt(keys, loader, began).await {
                Ok(found) => return Ok(found),
                Err(failed) => failed,
            };
            match self.next_wait(verdict, n) {
                Some(wait) => self.clock.sleep(wait).await,
                None => return Err(err),
            }
        }
    }

    async fn batch_attempt<F, Fut>(
        &self,
        keys: &[K],
        loader: &F,
        began: Instant,
    ) -> Result<BatchLoaded<K, V, E>, (Error<E>, Verdict)>
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync,
        Fut: Future<Output = Result<BatchLoaded<K, V, E>, E>> + Send,
    {
        let breaker = self.breakers.as_ref().map(|b| b.for_key(&keys[0]));
        let permit = match &breaker {
            Some(b) => match b.try_acquire() {
                Ok(p) => Some(p),
                Err(r) => {
                    self.stats.circuit_open();
                    let err = Error::CircuitOpen {
                        retry_after: r.retry_after,
                    };
                    return Err((err, Verdict::DoNotRetry));
                }
            },
            None => None,
        };
        let call = loader(keys.to_vec());
        let result = match self.attempt_timeout {
            Some(d) => match timeout_from(&*self.clock, began, d, call).await {
                Ok(r) => r,
                Err(_) => {
                    if let Some(p) = permit {
                        p.failure();
                    }
                    return Err((Error::Timeout(d), Verdict::Failure));
                }
            },
            None => call.await,
        };
        // The classifier reads a call's result; a failed batch is handed to
        // it as the call's error.
        let (result, verdict) = match result {
            Ok(found) => (Ok(found), Verdict::Success),
            Err(e) => {
                let as_call: Result<T, E> = Err(e);
                let verdict = (self.classify)(&as_call);
                match as_call {
                    Err(e) => (Err(e), verdict),
                    Ok(_) => unreachable!("built as an error just above"),
                }
            }
        };
        if let Some(p) = permit {
            match verdict {
                Verdict::Success => p.success(),
                Verdict::Failure => p.failure(),
                Verdict::RateLimited { .. } | Verdict::DoNotRetry => p.ignore(),
            }
        }
        match result {
            Ok(found) => Ok(found),
            Err(e) => {
                let err = match verdict {
                    Verdict::RateLimited { retry_after } => Error::RateLimited { retry_after },
                    _ => Error::Upstream(Arc::new(e)),
                };
                Err((err, verdict))
            }
        }
    }
}
