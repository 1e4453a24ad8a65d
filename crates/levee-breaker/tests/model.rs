//! The breaker against a small reference model of its state machine:
//! random outcomes and clock advances, states and admissions must agree.

use std::collections::VecDeque;
use std::time::Duration;

use levee_breaker::{CircuitBreaker, State, Window};
use levee_core::ManualClock;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Call { fail: bool },
    Advance(u64),
}

#[derive(Debug, Clone, Copy)]
struct Cfg {
    window: usize,
    min_calls: usize,
    rate: f64,
    consecutive: u32,
    open_secs: u64,
    permits: u32,
}

#[derive(Debug)]
enum MState {
    Closed,
    Open { until: u64 },
    HalfOpen { successes: u32 },
}

struct Model {
    cfg: Cfg,
    now: u64,
    state: MState,
    window: VecDeque<bool>,
    consecutive: u32,
}

impl Model {
    /// Returns Some(retry_after secs or None) if rejected, None if admitted
    /// (and then applies the outcome).
    fn call(&mut self, fail: bool) -> Option<Option<u64>> {
        if let MState::Open { until } = self.state {
            if self.now < until {
                return Some(Some(until - self.now));
            }
            self.state = MState::HalfOpen { successes: 0 };
        }
        match &mut self.state {
            MState::HalfOpen { successes } => {
                if fail {
                    self.state = MState::Open {
                        until: self.now + self.cfg.open_secs,
                    };
                } else {
                    *successes += 1;
                    if *successes >= self.cfg.permits {
                        self.state = MState::Closed;
                        self.window.clear();
                        self.consecutive = 0;
                    }
                }
                None
            }
            MState::Closed => {
                self.window.push_back(fail);
                if self.window.len() > self.cfg.window {
                    self.window.pop_front();
                }
                self.consecutive = if fail { self.consecutive + 1 } else { 0 };
                let calls = self.window.len();
                let fails = self.window.iter().filter(|f| **f).count();
                let rate_trip = calls >= self.cfg.min_calls.min(self.cfg.window).max(1)
                    && fails as f64 / calls as f64 >= self.cfg.rate;
                if (fail && self.consecutive >= self.cfg.consecutive) || rate_trip {
                    self.state = MState::Open {
                        until: self.now + self.cfg.open_secs,
                    };
                }
                None
            }
            MState::Open { .. } => unreachable!(),
        }
    }

    fn state(&self) -> State {
        match self.state {
            MState::Closed => State::Closed,
            MState::Open { .. } => State::Open,
            MState::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

fn cfg() -> impl Strategy<Value = Cfg> {
    (
        1usize..8,
        1usize..8,
        prop::sample::select(vec![0.25, 0.5, 0.75, 1.0]),
        1u32..6,
        1u64..30,
        1u32..4,
    )
        .prop_map(
            |(window, min_calls, rate, consecutive, open_secs, permits)| Cfg {
                window,
                min_calls,
                rate,
                consecutive,
                open_secs,
                permits,
            },
        )
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<bool>().prop_map(|fail| Op::Call { fail }),
            1 => (0u64..40).prop_map(Op::Advance),
        ],
        1..200,
    )
}

proptest! {
    #[test]
    fn breaker_agrees_with_reference_model(cfg in cfg(), ops in ops()) {
        let clock = ManualClock::new();
        let b = CircuitBreaker::builder()
            .failure_rate_threshold(cfg.rate)
            .sliding_window(Window::Count(cfg.window as u32))
            .minimum_calls(cfg.min_calls as u32)
            .consecutive_failures(cfg.consecutive)
            .open_duration(Duration::from_secs(cfg.open_secs))
            .half_open_permits(cfg.permits)
            .clock(clock.shared())
            .build()
            .unwrap();
        let mut model = Model { cfg, now: 0, state: MState::Closed, window: VecDeque::new(), consecutive: 0 };
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Advance(s) => {
                    clock.advance(Duration::from_secs(s));
                    model.now += s;
                }
                Op::Call { fail } => {
                    let expected = model.call(fail);
                    match b.try_acquire() {
                        Ok(p) => {
                            prop_assert_eq!(expected, None, "op {}: breaker admitted, model rejected", i);
                            if fail { p.failure() } else { p.success() }
                        }
                        Err(r) => {
                            let got = r.retry_after.map(|d| d.as_secs());
                            prop_assert_eq!(expected, Some(got), "op {}: rejection differs", i);
                        }
                    }
                }
            }
            prop_assert_eq!(b.state(), model.state(), "op {}", i);
        }
    }
}
