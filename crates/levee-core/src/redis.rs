//! Redis connection setup shared by levee's crates (feature `redis`).
