//! [`RateLimitLayerBuilder`]: classes, classifier, and the settings for
//! the cases where no normal decision is possible.

use std::hash::Hash;
use std::sync::Arc;

use levee_limit::{LimitError, Quota, RateLimiter, SlidingWindow};

use super::class::{FirstClass, QuotaClass};
use super::headers::policy_value;
use super::layer::RateLimitLayer;
use super::service::{MissingPlan, Shared};
use super::{MissingKey, OnLimiterError};

/// Builds a [`RateLimitLayer`]; made by [`RateLimitLayer::builder`].
///
/// At least one class is required; the first class added is the one used
/// when no classifier is set.
#[must_use]
pub struct RateLimitLayerBuilder<K, X, C = FirstClass> {
    extractor: X,
    classify: C,
    classes: Vec<QuotaClass<K>>,
    missing: MissingKey<K>,
    on_error: OnLimiterError,
    legacy: bool,
    /// The first bad `class(..)` call, reported by `build`.
    error: Option<LimitError>,
}

impl<K, X: std::fmt::Debug, C: std::fmt::Debug> std::fmt::Debug for RateLimitLayerBuilder<K, X, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("extractor", &self.extractor)
            .field("classify", &self.classify)
            .field("classes", &self.classes)
            .field("on_error", &self.on_error)
            .field("legacy", &self.legacy)
            .finish_non_exhaustive()
    }
}

impl<K, X> RateLimitLayerBuilder<K, X, FirstClass> {
    pub(crate) fn new(extractor: X) -> Self {
        RateLimitLayerBuilder {
            extractor,
            classify: FirstClass,
            classes: Vec::new(),
            missing: MissingKey::Reject,
            on_error: OnLimiterError::FailOpen,
            legacy: false,
            error: None,
        }
    }
}

impl<K: Send + Sync + 'static, X, C> RateLimitLayerBuilder<K, X, C> {
    /// Adds the class `name` with `quota`, enforced by `limiter`.
    ///
    /// `quota` is what `RateLimit-Policy` announces (`q` and `w`); it should
    /// be the limiter's own quota. Any [`RateLimiter`] works: a local
    /// `SlidingWindow` or `Gcra`, or a `RedisSlidingWindow` so that every
    /// replica shares the limit. The name is the policy name in the headers
    /// (printable ASCII, unique).
    pub fn class(
        mut self,
        name: impl Into<String>,
        quota: Quota,
        limiter: impl RateLimiter<K> + 'static,
    ) -> Self {
        let name = name.into();
        match policy_value(&name, quota) {
            Ok(policy) => {
                self.classes.push(QuotaClass {
                    name: name.into_boxed_str(),
                    quota,
                    limiter: Arc::new(limiter),
                    policy,
                });
                self
            }
            Err(e) => self.failed(e),
        }
    }

    /// Adds the class `name` with `quota`, enforced by a new local
    /// [`SlidingWindow`] (counter mode, default idle eviction).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use levee::limit::Quota;
    /// use levee::rate_limit::{ClientIp, PeerIp, RateLimitLayer};
    ///
    /// let per_minute = |n| Quota::per_minute(NonZeroU32::new(n).unwrap());
    /// // The key type is inferred where the layer wraps a service; alone,
    /// // it is named.
    /// let layer: RateLimitLayer<ClientIp, _> = RateLimitLayer::builder(PeerIp::new())
    ///     .local_class("anonymous", per_minute(100))
    ///     .build()?;
    /// # Ok::<(), levee::limit::LimitError>(())
    /// ```
    pub fn local_class(self, name: impl Into<String>, quota: Quota) -> Self
    where
        K: Hash + Eq + Clone,
    {
        match SlidingWindow::<K>::builder(quota).build() {
            Ok(limiter) => self.class(name, quota, limiter),
            Err(e) => self.failed(e),
        }
    }

    fn failed(mut self, e: LimitError) -> Self {
        self.error.get_or_insert(e);
        self
    }

    /// Chooses each request's class by name, e.g. `"authenticated"` when
    /// an auth middleware left a user in the extensions. Default: every
    /// request in the first class.
    pub fn classify<C2>(self, classify: C2) -> RateLimitLayerBuilder<K, X, C2> {
        RateLimitLayerBuilder {
            extractor: self.extractor,
            classify,
            classes: self.classes,
            missing: self.missing,
            on_error: self.on_error,
            legacy: self.legacy,
            error: self.error,
        }
    }

    /// What to do with a request that has no key. Default:
    /// [`MissingKey::Reject`] (401).
    pub fn on_missing_key(mut self, missing: MissingKey<K>) -> Self {
        self.missing = missing;
        self
    }

    /// What to do when a limiter fails. Default:
    /// [`OnLimiterError::FailOpen`].
    pub fn on_limiter_error(mut self, on_error: OnLimiterError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Also write `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset` (seconds from now). Default: off.
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.legacy = on;
        self
    }

    /// Checks the settings and builds the layer. Errors name the setting:
    /// `class` (none configured, a name used twice or not printable ASCII)
    /// or `on_missing_key` (a class that is not configured).
    pub fn build(self) -> Result<RateLimitLayer<K, X, C>, LimitError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.classes.is_empty() {
            return Err(LimitError::InvalidSetting {
                setting: "class",
                reason: "no class is configured; add one with `class(..)` or `local_class(..)`"
                    .into(),
            });
        }
        for (i, class) in self.classes.iter().enumerate() {
            if self.classes[..i].iter().any(|c| c.name == class.name) {
                return Err(LimitError::InvalidSetting {
                    setting: "class",
                    reason: format!("class {:?} is configured twice", class.name),
                });
            }
        }
        let missing = match self.missing {
            MissingKey::Reject => MissingPlan::Reject,
            MissingKey::Shared { class, key } => MissingPlan::Shared {
                class: self
                    .classes
                    .iter()
                    .position(|c| &*c.name == class)
                    .ok_or_else(|| LimitError::InvalidSetting {
                        setting: "on_missing_key",
                        reason: format!("class {class:?} is not configured"),
                    })?,
                key,
            },
        };
        Ok(RateLimitLayer::from_shared(Shared {
            extractor: self.extractor,
            classify: self.classify,
            classes: self.classes.into_boxed_slice(),
            missing,
            on_error: self.on_error,
            legacy: self.legacy,
        }))
    }
}
