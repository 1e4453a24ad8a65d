//! Workload generators shared by levee's benches and measurement examples.
