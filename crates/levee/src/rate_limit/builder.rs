//! [`RateLimitLayerBuilder`]: classes, classifier, and the settings for
//! the cases where no normal decision is possible.

use std::sync::Arc;

use levee_limit::{LimitError, Quota, RateLimiter};

use super::class::{ClassLimiter, FirstClass, LocalLimiter, QuotaClass};
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
    /// Adds the class `name` with `quota`, enforced by `limiter`, whose
    /// decision the request's future awaits.
    ///
    /// `quota` is what `RateLimit-Policy` announces (`q` and `w`); it should
    /// be the limiter's own quota. Any [`RateLimiter`] works, a
    /// `RedisSlidingWindow` in particular, so that every replica shares the
    /// limit; for a local `SlidingWindow` or `Gcra` prefer
    /// [`local_class`](Self::local_class), which decides without awaiting.
    /// The name is the policy name in the headers (printable ASCII,
    /// unique).
    pub fn class(
        self,
        name: impl Into<String>,
        quota: Quota,
        limiter: impl RateLimiter<K> + 'static,
    ) -> Self {
        self.push(name.into(), quota, ClassLimiter::Awaited(Arc::new(limiter)))
    }

    /// Adds the class `name` with `quota`, enforced by a local limiter
    /// ([`SlidingWindow`](levee_limit::SlidingWindow), [`Gcra`](levee_limit::Gcra)) that the layer asks
    /// inside `call`, calling the inner service at once when it admits: the
    /// fast path. `quota` and `name` as for [`class`](Self::class).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use levee::limit::{Quota, SlidingWindow};
    /// use levee::rate_limit::{ClientIp, PeerIp, RateLimitLayer};
    ///
    /// let quota = Quota::per_minute(NonZeroU32::new(100).unwrap());
    /// // The key type is inferred where the layer wraps a service; alone,
    /// // it is named.
    /// let layer: RateLimitLayer<ClientIp, _> = RateLimitLayer::builder(PeerIp::new())
    ///     .local_class("anonymous", quota, SlidingWindow::builder(quota).build()?)
    ///     .build()?;
    /// # Ok::<(), levee::limit::LimitError>(())
    /// ```
    pub fn local_class(
        self,
        name: impl Into<String>,
        quota: Quota,
        limiter: impl LocalLimiter<K>,
    ) -> Self {
        self.push(name.into(), quota, ClassLimiter::Local(Box::new(limiter)))
    }

    fn push(mut self, name: String, quota: Quota, limiter: ClassLimiter<K>) -> Self {
        match policy_value(&name, quota) {
            Ok(policy) => {
                self.classes.push(QuotaClass {
                    name: name.into_boxed_str(),
                    quota,
                    limiter,
                    policy,
                });
                self
            }
            Err(e) => {
                self.error.get_or_insert(e);
                self
            }
        }
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
                reason: "no class is configured; add one with `local_class(..)` or `class(..)`"
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
