//! levee's caches.
#![cfg_attr(docsrs, feature(doc_cfg))]
