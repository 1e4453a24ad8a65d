//! levee's circuit breaker.
#![cfg_attr(docsrs, feature(doc_cfg))]
