//! Placeholder until this example is written.
fn main() {}
