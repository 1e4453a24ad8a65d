//! levee's rate limiters.
//!
//! One [`Decision`] type and one [`RateLimiter`] trait for every limiter.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod decision;
mod error;
mod limiter;
mod quota;

pub use decision::Decision;
pub use error::LimitError;
pub use limiter::RateLimiter;
pub use quota::Quota;
