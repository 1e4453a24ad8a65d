//! levee's caches.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;

pub use error::ConfigError;
