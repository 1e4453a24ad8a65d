//! Test kit for levee.
