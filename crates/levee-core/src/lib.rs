//! Shared foundations of levee: time and key encoding.
//!
//! Every levee component reads time from a [`Clock`] held as `Arc<dyn Clock>`,
//! so tests drive it with a [`ManualClock`] (or a [`TokioClock`] under paused
//! tokio time) instead of sleeping.
//!
//! ```
//! use std::time::Duration;
//! use levee_core::{Clock, KeyHasher, ManualClock, RedisKey};
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.now() - start, Duration::from_secs(90));
//!
//! // Bearer tokens never reach Redis or logs: only a keyed hash does.
//! let hasher = KeyHasher::new(b"deployment secret from your vault".as_slice());
//! let key = hasher.key("eyJhbGciOi...");
//! assert_eq!(format!("{key}"), "SensitiveKey(<redacted>)");
//! assert_eq!(key.redis_key_string().len(), 64);
//! ```
//!
//! Main types:
//! - [`Clock`], [`SystemClock`], [`ManualClock`], [`TokioClock`]: time sources.
//! - [`sleep`]: waiting on a clock ([`Clock::sleep`], [`sleep::timeout`]).
//! - [`duration`]: durations as integers, saturating instead of wrapping.
//! - [`RedisKey`]: how a key becomes bytes in a Redis key.
//! - [`KeyHasher`] and [`SensitiveKey`]: keyed hashing of secrets used as keys.
//!
//! Redis connections live in `levee-redis`, the one guarded client every
//! Redis user in levee goes through.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
pub mod duration;
mod error;
mod key;
pub mod sleep;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock, TokioClock};
pub use error::CoreError;
pub use key::{KeyHasher, RedisKey, SensitiveKey};
