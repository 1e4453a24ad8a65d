//! What one reading of each candidate hit-path clock costs: the coarse
//! monotonic clock MemoryCache reads (`CLOCK_MONOTONIC_COARSE` through the
//! vDSO) against quanta's TSC clock (`now()`, scaled, and `raw()`),
//! interleaved in one run.
//!
//! Run: `cargo run --release -p levee-benches --example clock_cost`
#![allow(unsafe_code)] // the very call MemoryCache makes, measured as is

use std::hint::black_box;
use std::time::Instant;

#[cfg(target_os = "linux")]
fn coarse() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE is
    // a valid clock id on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn coarse() -> u64 {
    0
}

fn main() {
    let q = quanta::Clock::new();
    let n = 20_000_000u64;
    let (mut tc, mut tq, mut tr) = (0f64, 0f64, 0f64);
    for _ in 0..5 {
        let s = Instant::now();
        for _ in 0..n {
            black_box(coarse());
        }
        tc += s.elapsed().as_secs_f64();
        let s = Instant::now();
        for _ in 0..n {
            black_box(q.now());
        }
        tq += s.elapsed().as_secs_f64();
        let s = Instant::now();
        for _ in 0..n {
            black_box(q.raw());
        }
        tr += s.elapsed().as_secs_f64();
    }
    let per = |t: f64| t * 1e9 / (5.0 * n as f64);
    println!(
        "clock_gettime(COARSE): {:.2} ns, quanta now(): {:.2} ns, quanta raw(): {:.2} ns",
        per(tc),
        per(tq),
        per(tr)
    );
}
