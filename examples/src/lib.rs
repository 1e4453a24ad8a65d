//! Runnable examples of levee live beside this file: `cargo run --example NAME`.
